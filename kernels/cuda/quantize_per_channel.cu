// ColumnQuantize: per-channel quantization, one scale per (plane, column)
// where a plane is a tokens x row matrix (row = heads x head_dim values).
//
// A CTA of sw x R threads takes a strip of sw column vectors (16 bytes each)
// and up to R x kColumnItems rows of one plane: thread (r, c) loads rows
// r, r + R, ... of column vector c into registers. By stage (ColumnStage):
//   fused  (tokens <= kColumnMaxTokens, the rows are all on chip): the R
//          threads of each column combine their maxima in shared memory (a
//          tree, conflict-free: entry [e][thread]), every thread quantizes
//          the values it holds and row 0 writes the scales -- one read of
//          the input;
//   reduce (taller planes, first pass): each thread folds several steps of
//          rows into running maxima (TwoPassItemSteps), the column's
//          threads combine them as above, and row 0 combines each
//          column's scale into its slot (CombineScale: the slots hold final
//          scales when the stage ends, with no finalize pass);
//   apply  (second pass): each thread loads its column vector's scales and
//          their reciprocals once, then quantizes the same rows as reduce
//          did, step by step. The generic elementwise pass would map every
//          vector to its kVec scales and divide for each of them again.
#include <algorithm>

#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {
namespace {

// Threads down each column in the reduce stage.
constexpr uint32_t kReduceRows = 32;
// Steps of kReduceRows x kColumnItems rows a two-pass item may take.
constexpr uint64_t kTwoPassMaxSteps = 1024;
// What an item's own work costs, in steps: the reduce stage's barrier tree
// and scale atomics, the apply stage's scale loads. Fitted to the sixth
// session's run 6 (one-step items took both passes 1.7x the time of
// eight-step ones on a 256 MiB FP16 plane): about 1.2 steps.
constexpr double kTwoPassItemCost = 1.2;

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
  // Work item -> (rest, strip) -> (rest, row chunk) -> (block, plane): the
  // strip varies fastest, so that the CTAs running at once take the strips
  // side by side of the same rows. With the row chunk fastest (measured on
  // an H200, FP16 131072 x 1024: 62% of DRAM bandwidth in the reduce), they
  // took 128 bytes from each of thousands of rows at once, one DRAM page
  // opened per 128 bytes.
  FastDivmod strips;
  FastDivmod row_chunks;
  FastDivmod planes;
};

// The rows [t_begin, t_end) of column vector `cv`, R x kColumnItems at a
// time (thread `row` of the column takes rows row, row + R, ...): each
// step's loads are issued together, then fn(y, t, valid) sees each of them.
template <typename T, int kVec, class Fn>
__device__ __forceinline__ void ForEachColumnStep(const T* src, uint64_t stride,
                                                  bool col_ok, uint32_t row,
                                                  uint32_t rows,
                                                  uint32_t t_begin,
                                                  uint32_t t_end, Fn&& fn) {
  for (uint32_t step = t_begin; step < t_end;  // uniform
       step += rows * kColumnItems) {
    Vec<T, kVec> y[kColumnItems];
#pragma unroll
    for (int k = 0; k < kColumnItems; ++k) {
      const uint32_t t = step + row + k * rows;
      y[k] = (col_ok && t < t_end) ? LoadVec<T, kVec>(src + uint64_t{t} * stride)
                                   : ZeroVec<T, kVec>();
    }
#pragma unroll
    for (int k = 0; k < kColumnItems; ++k) {
      const uint32_t t = step + row + k * rows;
      fn(y[k], t, col_ok && t < t_end);
    }
  }
}

template <typename T, int kVec, class Addr, ColumnStage kStage>
__global__ void __launch_bounds__(kColumnMaxThreads, 2)
    ColumnKernel(ColumnPlan plan, BlockList blocks, Addr addr,
                 QuantizeOutputs out) {
  constexpr bool kFused = kStage == ColumnStage::kFused;
  __shared__ uint32_t red[kStage == ColumnStage::kApply
                              ? 1
                              : kColumnMaxThreads * kVec];
  __shared__ uint32_t scratch[32];
  const uint32_t threads = blockDim.x;
  const uint32_t col = threadIdx.x & ((1u << plan.sw_shift) - 1);
  const uint32_t row = threadIdx.x >> plan.sw_shift;

  for (uint32_t n = blockIdx.x; n < plan.total_items; n += gridDim.x) {
    // The apply stage walks the items backwards (SecondPassItem): the
    // reduce stage's last rows may still be in L2.
    const uint32_t w = kStage == ColumnStage::kApply
                           ? SecondPassItem(n, plan.total_items)
                           : n;
    uint32_t rest, row_chunk, strip, b, p;
    plan.strips.DivMod(w, &rest, &strip);
    plan.row_chunks.DivMod(rest, &rest, &row_chunk);
    plan.planes.DivMod(rest, &b, &p);
    const BlockRef<Addr> ref = Resolve(blocks, addr, b);
    // The block's first item writes the padding in the stages that write
    // values (the reduce stage leaves it to the apply stage).
    if (kStage != ColumnStage::kReduce && threadIdx.x == 0 &&
        row_chunk == 0 && strip == 0 && p == 0) {
      WritePadding(ref.payload, plan.elements, plan.scales_offset);
    }

    const uint32_t cv = (strip << plan.sw_shift) + col;
    const bool col_ok = cv < plan.row_vecs;
    const uint32_t t_begin = row_chunk * plan.rows_per_item;
    const uint32_t t_end = min(t_begin + plan.rows_per_item, plan.tokens);
    const uint64_t plane_base = uint64_t{p} * plan.plane_values;
    const uint64_t column_base = plane_base + uint64_t{cv} * kVec;
    const T* src = reinterpret_cast<const T*>(ref.src) + column_base;
    // Scale index of the column vector's first element.
    const uint64_t g = uint64_t{p} * plan.row_values + uint64_t{cv} * kVec;
    auto payload_row = [&](uint32_t t) {
      return reinterpret_cast<int8_t*>(
          ref.payload.At(column_base + uint64_t{t} * plan.row_values));
    };

    if constexpr (kStage == ColumnStage::kApply) {
      // The scales are final: each thread divides once per column element
      // for all the rows it takes (the elementwise pass divides per value).
      float scale[kVec] = {};
      float inv_scale[kVec] = {};
      if (col_ok) {
        LoadScales<kVec>(ref.payload, plan.scales_offset, g, scale);
#pragma unroll
        for (int e = 0; e < kVec; ++e) inv_scale[e] = InverseScale(scale[e]);
      }
      ForEachColumnStep<T, kVec>(
          src, plan.row_values, col_ok, row, plan.rows, t_begin, t_end,
          [&](const Vec<T, kVec>& y, uint32_t t, bool valid) {
            if (valid) {
              StoreQuantized(payload_row(t), QuantizeVec<ScaleSource::kGiven>(
                                                 y, scale, inv_scale));
            }
          });
      continue;
    }

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
      ForEachColumnStep<T, kVec>(
          src, plan.row_values, col_ok, row, plan.rows, t_begin, t_end,
          [&](const Vec<T, kVec>& y, uint32_t, bool) { magnitudes.Add(y); });
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

    if constexpr (kFused) {
      float scale[kVec];
      float inv_scale[kVec];
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        scale[e] = ScaleFromAbsmax(__uint_as_float(bits[e]));
        inv_scale[e] = InverseScale(scale[e]);
      }
#pragma unroll
      for (int k = 0; k < kColumnItems; ++k) {
        const uint32_t t = t_begin + row + k * plan.rows;
        if (t_begin + k * plan.rows < plan.tokens && col_ok &&
            t < plan.tokens) {
          StoreQuantized(payload_row(t), QuantizeVec<ScaleSource::kOwn>(
                                             x[k], scale, inv_scale));
        }
      }
      if (row == 0 && col_ok) {
        StoreScales<kVec>(ref.payload, plan.scales_offset, g, scale);
      }
    } else {
      if (row == 0 && col_ok) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          CombineScale(reinterpret_cast<uint32_t*>(
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
absl::Status LaunchColumnQuantize(const BlockLayout& layout, ColumnStage stage,
                                  const BlockList& blocks, const Addr& addr,
                                  QuantizeOutputs out, cudaStream_t stream) {
  const BlockShape& shape = layout.shape;
  const bool fused = stage == ColumnStage::kFused;
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
  // A two-pass item takes several steps of rows * kColumnItems rows: as
  // many as leave the busiest CTA of this stage's persistent grid the least
  // work, its items' own work counted (ChunkSteps with kTwoPassItemCost):
  // usually one round of long items. Each stage cuts the plane for its own
  // grid (the reduce stage's scales are final when it ends, so the apply
  // stage need not take the same items); the apply stage loads its scales
  // once per item.
  const uint64_t step_rows = uint64_t{rows} * kColumnItems;
  uint64_t steps = 1;
  if (!fused) {
    auto stage_grid = [&](auto stage_tag) {
      return PersistentGrid<
          &ColumnKernel<T, kVec, Addr, decltype(stage_tag)::value>>(
          static_cast<int>(threads), UINT32_MAX);
    };
    const absl::StatusOr<uint32_t> grid =
        stage == ColumnStage::kReduce
            ? stage_grid(std::integral_constant<ColumnStage,
                                                ColumnStage::kReduce>{})
            : stage_grid(std::integral_constant<ColumnStage,
                                                ColumnStage::kApply>{});
    if (!grid.ok()) return grid.status();
    steps = ChunkSteps((shape.tokens + step_rows - 1) / step_rows,
                       uint64_t{strips} * shape.planes * blocks.count,
                       kTwoPassMaxSteps, *grid, kTwoPassItemCost);
  }
  plan.rows_per_item = static_cast<uint32_t>(step_rows * steps);
  const uint32_t row_chunks =
      (shape.tokens + plan.rows_per_item - 1) / plan.rows_per_item;
  plan.row_chunks = FastDivmod(row_chunks);
  plan.strips = FastDivmod(strips);
  plan.planes = FastDivmod(shape.planes);
  const uint64_t items_per_block =
      uint64_t{row_chunks} * strips * shape.planes;
  if (stage == ColumnStage::kApply) {
    out = QuantizeOutputs{};  // the reduce stage reported the block's max
  } else if (items_per_block > 1) {
    KVQ_RETURN_IF_ERROR(PrepareAtomicAbsmax(blocks, &out, stream));
  }

  auto launch = [&](auto stage_tag, const char* name) {
    return LaunchPersistent<
        &ColumnKernel<T, kVec, Addr, decltype(stage_tag)::value>,
        &ColumnPlan::total_items>(name, threads, blocks, items_per_block, plan,
                                  stream, addr, out);
  };
  using enum ColumnStage;
  switch (stage) {
    case kFused:
      return launch(std::integral_constant<ColumnStage, kFused>{},
                    "ColumnKernel(fused)");
    case kReduce:
      return launch(std::integral_constant<ColumnStage, kReduce>{},
                    "ColumnKernel(reduce)");
    case kApply:
      return launch(std::integral_constant<ColumnStage, kApply>{},
                    "ColumnKernel(apply)");
  }
  return absl::InternalError("kvq cuda: unknown ColumnStage");
}

#define KVQ_INSTANTIATE(T, V, A)                                         \
  template absl::Status LaunchColumnQuantize<T, V, A>(                   \
      const BlockLayout&, ColumnStage, const BlockList&, const A&,       \
      QuantizeOutputs, cudaStream_t);
KVQ_FOR_EACH_LAUNCH_CONFIG(KVQ_INSTANTIATE)
#undef KVQ_INSTANTIATE

}  // namespace kvq::cuda::internal
