// The elementwise pass shared by dequantize and by the second pass of
// two-pass quantize: every element's scale is already in the payload, so each
// thread maps a vector of kVec elements to its scale(s) and converts it.
//
// Work is split into chunks of kElementwiseChunkVecs vectors of one block;
// CTAs stride over chunks; within a chunk each thread first issues
// kElementwiseUnroll independent loads (with the scales of contiguous
// groups), then converts and stores them, so enough bytes are in flight to
// reach the memory limit.
//
// Scale of element i (i < 2^32: a block holds at most 2^32 values):
//   contiguous groups:  g = i / group_values         (one scale per vector)
//   per-channel:        g = (i / plane) * row + i % row  (kVec scales, one
//                       per column, consecutive in the scale region)

#ifndef KVQ_KERNELS_CUDA_ELEMENTWISE_CUH_
#define KVQ_KERNELS_CUDA_ELEMENTWISE_CUH_

#include <algorithm>

#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {

inline constexpr int kElementwiseThreads = 256;
inline constexpr int kElementwiseUnroll = 4;
inline constexpr uint32_t kElementwiseChunkVecs =
    kElementwiseThreads * kElementwiseUnroll * 4;

struct ElementwisePlan {
  uint64_t vecs_per_block;
  uint64_t elements;
  uint64_t scales_offset;
  uint64_t row_values;         // per-channel: heads * head_dim
  uint32_t total_chunks;
  bool per_channel;
  FastDivmod chunks_per_block;
  FastDivmod group_values;     // contiguous groups
  FastDivmod plane_values;     // per-channel
  FastDivmod row_divisor;      // per-channel
};

// Contiguous groups: the one scale of the elements from i. Loaded together
// with the values, so that its latency overlaps theirs instead of following
// it (a fresh scale line is a second trip to memory).
template <class Payload>
__device__ __forceinline__ float GroupScaleOf(const ElementwisePlan& plan,
                                              const Payload& payload,
                                              uint32_t i) {
  const uint32_t g = plan.group_values.Div(i);
  return *reinterpret_cast<const float*>(
      payload.At(plan.scales_offset + 4 * uint64_t{g}));
}

// Scales (and, for quantize, their inverses) of the kVec elements from i;
// `group_scale` is GroupScaleOf(i) for contiguous groups.
template <int kVec, bool kQuantize, class Payload>
__device__ __forceinline__ void ScalesOf(const ElementwisePlan& plan,
                                         const Payload& payload, uint32_t i,
                                         float group_scale, float* scale,
                                         float* inv_scale) {
  if (plan.per_channel) {
    uint32_t plane, in_plane, row, col;
    plan.plane_values.DivMod(i, &plane, &in_plane);
    plan.row_divisor.DivMod(in_plane, &row, &col);
    LoadScales<kVec>(payload, plan.scales_offset,
                     uint64_t{plane} * plan.row_values + col, scale);
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) scale[e] = group_scale;
  }
  if constexpr (kQuantize) {
    // One division per scale actually distinct: contiguous groups share one.
    if (plan.per_channel) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) inv_scale[e] = InverseScale(scale[e]);
    } else {
      const float inv = InverseScale(scale[0]);
#pragma unroll
      for (int e = 0; e < kVec; ++e) inv_scale[e] = inv;
    }
  }
}

// kQuantize: block values (T) -> int8 in the payload, scales read from it.
// Otherwise payload int8 -> block values (T).
template <typename T, int kVec, class Addr, bool kQuantize>
__global__ void __launch_bounds__(kElementwiseThreads, 4)
    ElementwiseKernel(ElementwisePlan plan, BlockList blocks, Addr addr) {
  using In = std::conditional_t<kQuantize, T, int8_t>;
  for (uint32_t c = blockIdx.x; c < plan.total_chunks; c += gridDim.x) {
    uint32_t b, chunk;
    plan.chunks_per_block.DivMod(c, &b, &chunk);
    const BlockRef<Addr> ref = Resolve(blocks, addr, b);
    if (kQuantize && chunk == 0 && threadIdx.x == 0) {
      WritePadding(ref.payload, plan.elements, plan.scales_offset);
    }
    const uint64_t v_begin = uint64_t{chunk} * kElementwiseChunkVecs;
    const uint64_t v_end =
        min(v_begin + kElementwiseChunkVecs, plan.vecs_per_block);
    for (uint64_t base = v_begin; base < v_end;
         base += kElementwiseThreads * kElementwiseUnroll) {
      Vec<In, kVec> x[kElementwiseUnroll];
      float group_scale[kElementwiseUnroll];
#pragma unroll
      for (int u = 0; u < kElementwiseUnroll; ++u) {
        const uint64_t v = base + u * kElementwiseThreads + threadIdx.x;
        if (v < v_end) {
          group_scale[u] =
              plan.per_channel
                  ? 0.0f
                  : GroupScaleOf(plan, ref.payload,
                                 static_cast<uint32_t>(v * kVec));
          if constexpr (kQuantize) {
            x[u] = LoadVec<T, kVec>(reinterpret_cast<const T*>(ref.src) +
                                    v * kVec);
          } else {
            x[u] = LoadVec<int8_t, kVec>(
                reinterpret_cast<const int8_t*>(ref.payload.At(v * kVec)));
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kElementwiseUnroll; ++u) {
        const uint64_t v = base + u * kElementwiseThreads + threadIdx.x;
        if (v < v_end) {
          const uint32_t i = static_cast<uint32_t>(v * kVec);
          float scale[kVec];
          float inv_scale[kVec];
          ScalesOf<kVec, kQuantize>(plan, ref.payload, i, group_scale[u],
                                    scale, inv_scale);
          if constexpr (kQuantize) {
            StoreVec<int8_t, kVec>(
                reinterpret_cast<int8_t*>(ref.payload.At(v * kVec)),
                QuantizeVec(x[u], scale, inv_scale));
          } else {
            float y[kVec];
#pragma unroll
            for (int e = 0; e < kVec; ++e) {
              y[e] = DequantizeValue(x[u].v[e], scale[e]);
            }
            StoreVec<T, kVec>(reinterpret_cast<T*>(ref.dst) + v * kVec,
                              Pack<T, kVec>(y));
          }
        }
      }
    }
  }
}

template <typename T, int kVec, class Addr, bool kQuantize>
absl::Status LaunchElementwise(const BlockLayout& layout,
                               const BlockList& blocks, const Addr& addr,
                               cudaStream_t stream) {
  const BlockShape& shape = layout.shape;
  ElementwisePlan plan{};
  plan.per_channel = layout.spec.granularity == Granularity::kPerChannel;
  plan.row_values = uint64_t{shape.heads} * shape.head_dim;
  const uint64_t scale_run =
      plan.per_channel ? plan.row_values : layout.group_values;
  if (layout.elements % kVec != 0 || scale_run % kVec != 0) {
    return absl::InternalError("kvq cuda: shape does not fit the vector width");
  }
  plan.vecs_per_block = layout.elements / kVec;
  plan.elements = layout.elements;
  plan.scales_offset = layout.scales_offset;
  // Divisors up to 2^32 are fine (FastDivmod); a larger group is the whole
  // block, whose indices are all below it.
  plan.group_values = FastDivmod(
      std::min<uint64_t>(layout.group_values, uint64_t{1} << 32));
  plan.plane_values = FastDivmod(
      std::min<uint64_t>(plan.row_values * shape.tokens, uint64_t{1} << 32));
  plan.row_divisor =
      FastDivmod(std::min<uint64_t>(plan.row_values, uint64_t{1} << 32));
  const uint64_t chunks_per_block =
      (plan.vecs_per_block + kElementwiseChunkVecs - 1) / kElementwiseChunkVecs;
  plan.chunks_per_block = FastDivmod(chunks_per_block);

  constexpr auto kKernel = &ElementwiseKernel<T, kVec, Addr, kQuantize>;
  return ForEachSubBatch(
      blocks, chunks_per_block, [&](const BlockList& sub) -> absl::Status {
        ElementwisePlan p = plan;
        p.total_chunks = static_cast<uint32_t>(sub.count * chunks_per_block);
        absl::StatusOr<uint32_t> grid =
            PersistentGrid<kKernel>(kElementwiseThreads, p.total_chunks);
        if (!grid.ok()) return grid.status();
        return Launch(kQuantize ? "ElementwiseKernel(quantize)"
                                : "ElementwiseKernel(dequantize)",
                      kKernel, dim3(*grid), dim3(kElementwiseThreads), stream,
                      p, sub, addr);
      });
}

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_ELEMENTWISE_CUH_
