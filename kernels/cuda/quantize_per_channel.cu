// ColumnQuantize: per-channel quantization, one scale per (plane, column)
// where a plane is a tokens x row matrix (row = heads x head_dim values).
//
// A CTA of sw x R threads takes a strip of sw column vectors (16 bytes each)
// and up to R x kColumnItems rows of one plane: thread (r, c) loads rows
// r, r + R, ... of column vector c into registers, the R threads of each
// column combine their maxima in shared memory (a tree, conflict-free:
// entry [e][thread]), and then
//   fused  (tokens <= kColumnMaxTokens, the rows are all on chip): every
//          thread quantizes the values it holds and row 0 writes the
//          scales -- one read of the input;
//   reduce (taller planes): each thread folds several steps of rows into
//          running maxima first (up to kReduceMaxSteps), then row 0
//          atomicMax-es each column's magnitude bits into its scale slot,
//          the first stage of the two-pass scheme (launchers.cuh).

#include <algorithm>

#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {
namespace {

// Threads down each column in the reduce stage.
constexpr uint32_t kReduceRows = 32;
// Steps of kReduceRows x kColumnItems rows a reduce item may take, and the
// fewest items a launch should keep (several per SM, so that loads from
// many CTAs overlap).
constexpr uint64_t kReduceMaxSteps = 16;
constexpr uint64_t kReduceMinItems = 2048;

struct ColumnPlan {
  uint64_t row_values;    // W = heads * head_dim
  uint64_t plane_values;  // tokens * W
  uint64_t elements;
  uint64_t scales_offset;
  uint32_t tokens;
  uint32_t row_vecs;       // W / kVec
  uint32_t sw_shift;       // 1 << sw_shift threads across the strip
  uint32_t rows;           // R threads down each column (a power of two)
  uint32_t rows_per_item;  // R * kColumnItems (x steps when reducing)
  uint32_t total_items;
  FastDivmod row_chunks;   // work item -> (rest, row chunk)
  FastDivmod strips;       // rest -> (rest, strip)
  FastDivmod planes;       // rest -> (block, plane)
};

template <typename T, int kVec, class Addr, bool kFused>
__global__ void __launch_bounds__(kColumnMaxThreads, 2)
    ColumnKernel(ColumnPlan plan, BlockList blocks, Addr addr,
                 QuantizeOutputs out) {
  __shared__ uint32_t red[kColumnMaxThreads * kVec];
  __shared__ uint32_t scratch[32];
  const uint32_t threads = blockDim.x;
  const uint32_t col = threadIdx.x & ((1u << plan.sw_shift) - 1);
  const uint32_t row = threadIdx.x >> plan.sw_shift;

  for (uint32_t w = blockIdx.x; w < plan.total_items; w += gridDim.x) {
    uint32_t rest, row_chunk, strip, b, p;
    plan.row_chunks.DivMod(w, &rest, &row_chunk);
    plan.strips.DivMod(rest, &rest, &strip);
    plan.planes.DivMod(rest, &b, &p);
    const BlockRef<Addr> ref = Resolve(blocks, addr, b);
    // The block's first item writes the padding (the reduce stage leaves it
    // to the elementwise pass).
    if (kFused && threadIdx.x == 0 && row_chunk == 0 && strip == 0 &&
        p == 0) {
      WritePadding(ref.payload, plan.elements, plan.scales_offset);
    }

    const uint32_t cv = (strip << plan.sw_shift) + col;
    const bool col_ok = cv < plan.row_vecs;
    const uint32_t t_begin = row_chunk * plan.rows_per_item;
    const uint64_t plane_base = uint64_t{p} * plan.plane_values;
    const T* src = reinterpret_cast<const T*>(ref.src) + plane_base +
                   uint64_t{cv} * kVec;

    Vec<T, kVec> x[kColumnItems];  // fused: the item's rows, kept on chip
    Magnitudes<T, kVec> magnitudes;
    if constexpr (kFused) {
#pragma unroll
      for (int k = 0; k < kColumnItems; ++k) {
        if (t_begin + k * plan.rows < plan.tokens) {  // uniform
          const uint32_t t = t_begin + row + k * plan.rows;
          x[k] = (col_ok && t < plan.tokens)
                     ? LoadVec<T, kVec>(src + uint64_t{t} * plan.row_values)
                     : ZeroVec<T, kVec>();
          magnitudes.Add(x[k]);
        }
      }
    } else {
      // Steps of R x kColumnItems rows, folded into the running maxima:
      // the barriers and atomics below are paid once per item, not per step.
      const uint32_t t_end = min(t_begin + plan.rows_per_item, plan.tokens);
      for (uint32_t step = t_begin; step < t_end;  // uniform
           step += plan.rows * kColumnItems) {
        Vec<T, kVec> y[kColumnItems];
#pragma unroll
        for (int k = 0; k < kColumnItems; ++k) {
          const uint32_t t = step + row + k * plan.rows;
          y[k] = (col_ok && t < t_end)
                     ? LoadVec<T, kVec>(src + uint64_t{t} * plan.row_values)
                     : ZeroVec<T, kVec>();
        }
#pragma unroll
        for (int k = 0; k < kColumnItems; ++k) magnitudes.Add(y[k]);
      }
    }
    uint32_t bits[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) bits[e] = magnitudes.Element(e);

    if (plan.rows > 1) {  // combine the R threads of each column
      __syncthreads();    // red may still be read from the previous item
#pragma unroll
      for (int e = 0; e < kVec; ++e) red[e * threads + threadIdx.x] = bits[e];
      __syncthreads();
      for (uint32_t s = plan.rows >> 1; s > 0; s >>= 1) {
        if (row < s) {
          const uint32_t other = threadIdx.x + (s << plan.sw_shift);
#pragma unroll
          for (int e = 0; e < kVec; ++e) {
            red[e * threads + threadIdx.x] =
                max(red[e * threads + threadIdx.x], red[e * threads + other]);
          }
        }
        __syncthreads();
      }
#pragma unroll
      for (int e = 0; e < kVec; ++e) bits[e] = red[e * threads + col];
    }
    uint32_t item_bits = 0;
#pragma unroll
    for (int e = 0; e < kVec; ++e) item_bits = max(item_bits, bits[e]);

    const uint64_t g = uint64_t{p} * plan.row_values + uint64_t{cv} * kVec;
    if constexpr (kFused) {
      float scale[kVec];
      float inv_scale[kVec];
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        scale[e] = ScaleFromAbsmax(__uint_as_float(bits[e]));
        inv_scale[e] = InverseScale(scale[e]);
      }
      const uint64_t dst_base = plane_base + uint64_t{cv} * kVec;
#pragma unroll
      for (int k = 0; k < kColumnItems; ++k) {
        const uint32_t t = t_begin + row + k * plan.rows;
        if (t_begin + k * plan.rows < plan.tokens && col_ok &&
            t < plan.tokens) {
          StoreQuantized(reinterpret_cast<int8_t*>(ref.payload.At(
                             dst_base + uint64_t{t} * plan.row_values)),
                         QuantizeVec(x[k], scale, inv_scale));
        }
      }
      if (row == 0 && col_ok) {
        StoreScales<kVec>(ref.payload, plan.scales_offset, g, scale);
      }
    } else {
      if (row == 0 && col_ok) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          atomicMax(reinterpret_cast<unsigned int*>(
                        ref.payload.At(plan.scales_offset + 4 * (g + e))),
                    bits[e]);
        }
      }
    }
    if (out.absmax != nullptr || out.nonfinite != nullptr) {
      item_bits = CtaMax(item_bits, scratch);
      if (threadIdx.x == 0) ReportBlockMax(out, blocks.first + b, item_bits);
    }
  }
}

}  // namespace

template <typename T, int kVec, class Addr>
absl::Status LaunchColumnQuantize(const BlockLayout& layout, bool fused,
                                  const BlockList& blocks, const Addr& addr,
                                  QuantizeOutputs out, cudaStream_t stream) {
  const BlockShape& shape = layout.shape;
  const uint64_t row_values = uint64_t{shape.heads} * shape.head_dim;
  if (row_values % kVec != 0 || (fused && shape.tokens > kColumnMaxTokens)) {
    return absl::InternalError("kvq cuda: shape does not fit ColumnQuantize");
  }
  const uint32_t row_vecs = static_cast<uint32_t>(row_values / kVec);
  const uint32_t rows =
      fused ? CeilPow2((shape.tokens + kColumnItems - 1) / kColumnItems)
            : kReduceRows;
  // Strip width: 8 vectors (128 bytes) or a warp of scalars per row at
  // least, where the row is that wide; at most kColumnMaxThreads in all.
  uint32_t sw = std::min<uint32_t>(
      CeilPow2(row_vecs), std::max<uint32_t>(kVec > 1 ? 8 : 32, 256 / rows));
  sw = std::min<uint32_t>(sw, kColumnMaxThreads / rows);
  if (sw * rows < 32) sw = 32 / rows;  // whole warps
  const uint32_t threads = sw * rows;

  ColumnPlan plan{};
  plan.row_values = row_values;
  plan.plane_values = row_values * shape.tokens;
  plan.elements = layout.elements;
  plan.scales_offset = layout.scales_offset;
  plan.tokens = shape.tokens;
  plan.row_vecs = row_vecs;
  plan.sw_shift = Log2(sw);
  plan.rows = rows;
  const uint32_t strips = (row_vecs + sw - 1) / sw;
  // A reduce item takes several steps of rows * kColumnItems rows, as many
  // as still leave kReduceMinItems items to spread over the GPU.
  const uint64_t step_rows = uint64_t{rows} * kColumnItems;
  uint64_t steps = 1;
  if (!fused) {
    const uint64_t step_items = (shape.tokens + step_rows - 1) / step_rows *
                                strips * shape.planes * blocks.count;
    steps = std::clamp<uint64_t>(step_items / kReduceMinItems, 1,
                                 kReduceMaxSteps);
  }
  plan.rows_per_item = static_cast<uint32_t>(step_rows * steps);
  const uint32_t row_chunks =
      (shape.tokens + plan.rows_per_item - 1) / plan.rows_per_item;
  plan.row_chunks = FastDivmod(row_chunks);
  plan.strips = FastDivmod(strips);
  plan.planes = FastDivmod(shape.planes);
  const uint64_t items_per_block =
      uint64_t{row_chunks} * strips * shape.planes;
  if (items_per_block > 1) {
    KVQ_RETURN_IF_ERROR(PrepareAtomicAbsmax(blocks, &out, stream));
  }

  return DispatchBool(fused, [&](auto is_fused) {
    return LaunchPersistent<
        &ColumnKernel<T, kVec, Addr, decltype(is_fused)::value>,
        &ColumnPlan::total_items>(
        fused ? "ColumnKernel(fused)" : "ColumnKernel(reduce)", threads, blocks,
        items_per_block, plan, stream, addr, out);
  });
}

#define KVQ_INSTANTIATE(T, V, A)                                            \
  template absl::Status LaunchColumnQuantize<T, V, A>(                      \
      const BlockLayout&, bool, const BlockList&, const A&, QuantizeOutputs, \
      cudaStream_t);
KVQ_FOR_EACH_LAUNCH_CONFIG(KVQ_INSTANTIATE)
#undef KVQ_INSTANTIATE

}  // namespace kvq::cuda::internal
