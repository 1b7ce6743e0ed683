// The elementwise pass shared by dequantize and by the second pass of
// two-pass quantize of contiguous groups (per-channel's is ColumnQuantize's
// apply stage): every element's scale is already in the payload, so each
// thread maps a vector of kVec elements to its scale(s) and converts it.
//
// Work is split into chunks of kElementwiseChunkVecs vectors of one block
// (per-channel dequantize: at most that, chosen per launch, kPerChannelChunk*);
// CTAs stride over chunks; within a chunk each thread first issues
// kElementwiseUnroll independent loads (with the scales of contiguous
// groups), then converts and stores them, so enough bytes are in flight to
// reach the memory limit. Dequantize reads a quarter (FP32) or half (FP16 /
// BF16) of the bytes it writes, so it issues twice as many loads per step.
// It runs at the limit of its traffic mix: on an H200 the simplest kernel
// that reads 1 byte per 4 (or 2) it writes reaches 84% (90%) of the copy's
// bandwidth (kvq-bench-kernels' traffic-mix ceilings), as dequantize does.
// TMA bulk stores from shared memory lift the 1:4 mix to 87% and leave 1:2
// where it is (bench/results/README.md): not worth a shared-memory stage
// here. Big single FP32 blocks go to PhasedDequantize instead
// (dequantize_phased.cuh), which separates the GPU's reads from its writes
// in time and runs the 1:4 mix at 89-94%.
// Loading 16 bytes of int8 per thread instead (two or four vectors) halved
// its speed: each thread's outputs were then 32 or 64 bytes apart, so no
// store was coalesced.
//
// Scale of element i (i < 2^32: a block holds at most 2^32 values):
//   contiguous groups:  g = i / group_values         (one scale per vector)
//   per-channel:        g = (i / plane) * row + i % row  (kVec scales, one
//                       per column, consecutive in the scale region)

#ifndef KVQ_KERNELS_CUDA_ELEMENTWISE_CUH_
#define KVQ_KERNELS_CUDA_ELEMENTWISE_CUH_

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {

inline constexpr int kElementwiseThreads = 256;
// Measured on an H200: with 4 loads of 8 int8 bytes per thread, dequantize
// (FP16, per-token-head) was latency-bound at 78% of copy (0.34 instructions
// issued per scheduler per cycle, 50% occupancy), so it keeps 8 in flight.
template <bool kQuantize>
inline constexpr int kElementwiseUnroll = kQuantize ? 4 : 8;
// A whole number of steps for either unroll.
inline constexpr uint32_t kElementwiseChunkVecs = kElementwiseThreads * 16;

// Per-channel dequantize's chunk, chosen per launch in units of
// kPerChannelChunkUnitVecs vectors (one vector per thread; a chunk's last
// step may be partial) by PerChannelChunkUnits (work_split.h): launches under
// kPerChannelChunkMinBytes of values, or with fewer than
// kPerChannelChunkMinRounds chunks of kElementwiseChunkVecs per CTA, keep
// kElementwiseChunkVecs; bigger ones take ChunkSteps' length of at most that,
// the one that leaves the busiest CTA the fewest units. Why: with fixed
// chunks, FP16 1 x 2048 x 8 x 8192 (4096 chunks on 528 CTAs, 7.76 each)
// leaves 128 CTAs idle for the last eighth (Nsight Compute: achieved
// occupancy 40% against 47% at 8 x 2048 channels). ChunkSteps cuts it into
// 13108 chunks of 5 vectors a thread, 25 rounds, the busiest CTA 125
// vector-steps against 128. Measured on the H200 (kvq-bench-kernels --case,
// two rounds, share of the same run's copy), fixed chunks -> this rule:
// FP16 1 x 2048 x 8 x 8192 84/84% -> 88/88%, 1 x 4096 x 8 x 4096 85/84% ->
// 86/86%, 1 x 8192 x 8 x 2048 89/89% -> 90/90%, FP32 1 x 131072 x 8 x 128
// 87/87% -> 88/88%. Equal chunks of at least two steps measured 86% where
// this rule has 88% (the first case and the last). Only this instantiation,
// and only big launches: cutting every elementwise launch by ChunkSteps
// slowed FP32 per-tensor quantize 101% -> 74% of copy (chunks of 3 vectors a
// thread for a pass that loads 4) and small dequantizes written to host
// memory over PCIe 2-4x (many CTAs each writing small pieces). The
// contiguous-group instantiations keep kElementwiseChunkVecs as a
// compile-time constant (their SASS is unchanged: cuobjdump -sass, sm_90).
inline constexpr uint32_t kPerChannelChunkUnitVecs = kElementwiseThreads;
inline constexpr uint64_t kPerChannelChunkMinBytes = uint64_t{64} << 20;
inline constexpr uint64_t kPerChannelChunkMinRounds = 4;
static_assert(kElementwiseChunkVecs % kPerChannelChunkUnitVecs == 0);
// CTAs per SM for dequantize to T from Addr's payloads (0: as many as fit).
// The sixth session's traffic-mix lab (runs/2026-12-01-f/run1-mix-lab.txt)
// ran the 1:4 mix best at 2: 86.4% of the copy against 83.8% at full
// occupancy, fewer writers at once contending less for DRAM. As a kernel
// (runs/2026-12-01-g, calls 1 and 3), contiguous FP32 dequantize gained
// 0.5-2 points of the copy at 2; paged FP32 dequantize (the server's get
// path, kvq-bench-kernels' batch section) lost 1-4, its page lookups
// needing every warp to hide their latency; FP16 / BF16 moved by -1.5 to
// +1. So only contiguous FP32 runs at 2.
template <typename T, class Addr>
inline constexpr int kDequantizeCtasPerSm =
    sizeof(T) == 4 && std::is_same_v<Addr, ContiguousAddr> ? 2 : 0;

struct ElementwisePlan {
  uint64_t vecs_per_block;
  uint64_t elements;
  uint64_t scales_offset;
  uint64_t row_values;         // per-channel: heads * head_dim
  uint32_t total_chunks;
  // Per-channel dequantize only: vectors per chunk, a multiple of
  // kPerChannelChunkUnitVecs (of kElementwiseThreads). Here, in what was
  // total_chunks' padding, so that the plan's size and every other field's
  // offset stay as they were and the other instantiations compile to the same
  // code.
  uint32_t chunk_vecs;
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
template <int kVec, bool kQuantize, bool kPerChannel, class Payload>
__device__ __forceinline__ void ScalesOf(const ElementwisePlan& plan,
                                         const Payload& payload, uint32_t i,
                                         float group_scale, float* scale,
                                         float* inv_scale) {
  if constexpr (kPerChannel) {
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
    static_assert(!kPerChannel, "per-channel quantize is ColumnQuantize's");
    const float inv = InverseScale(scale[0]);  // the vector's one scale
#pragma unroll
    for (int e = 0; e < kVec; ++e) inv_scale[e] = inv;
  }
}

// kQuantize: block values (T) -> int8 in the payload, scales read from it.
// Otherwise payload int8 -> block values (T). The scale map is a template
// parameter: with both maps in one kernel, the registers of the per-channel
// one made the dequantize of contiguous groups spill at 8 loads in flight.
template <typename T, int kVec, class Addr, bool kQuantize, bool kPerChannel>
__global__ void __launch_bounds__(kElementwiseThreads, 4)
    ElementwiseKernel(ElementwisePlan plan, BlockList blocks, Addr addr) {
  constexpr int kUnroll = kElementwiseUnroll<kQuantize>;
  using In = std::conditional_t<kQuantize, Vec<T, kVec>, QuantizedVec<kVec>>;
  for (uint32_t n = blockIdx.x; n < plan.total_chunks; n += gridDim.x) {
    // Quantize here is a second pass (after SegmentReduce): it walks the
    // chunks backwards, from the ones whose input may still be in L2.
    const uint32_t c = kQuantize ? SecondPassItem(n, plan.total_chunks) : n;
    uint32_t b, chunk;
    plan.chunks_per_block.DivMod(c, &b, &chunk);
    const BlockRef<Addr> ref = Resolve(blocks, addr, b);
    if (kQuantize && chunk == 0 && threadIdx.x == 0) {
      WritePadding(ref.payload, plan.elements, plan.scales_offset);
    }
    // Vector v of the chunk starts at element i_begin + v * kVec. The
    // offsets of a step's vectors from its first are constants: in 64 bits
    // (no wrap-around to rule out), contiguous addressing folds them into the
    // loads' and stores' immediate offsets instead of a register pair each.
    // Contiguous groups: the compile-time chunk (the code they always ran).
    const uint32_t chunk_vecs =
        kPerChannel ? plan.chunk_vecs : kElementwiseChunkVecs;
    const uint64_t v_begin = uint64_t{chunk} * chunk_vecs;
    const uint32_t vecs = static_cast<uint32_t>(
        min(uint64_t{chunk_vecs}, plan.vecs_per_block - v_begin));
    const uint64_t i_begin = v_begin * kVec;
    // A step of kUnroll vectors per thread; only a chunk's last step can be
    // partial, so full steps run without a bounds check per vector.
    auto step = [&](uint32_t base, auto partial) {
      constexpr bool kPartial = decltype(partial)::value;
      const uint64_t i_step = i_begin + uint64_t{base} * kVec;
      In x[kUnroll];
      float group_scale[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (!kPartial || base + u * kElementwiseThreads < vecs) {
          const uint64_t i = i_step + u * kElementwiseThreads * kVec;
          // Indices within a block fit in 32 bits (at most 2^32 values).
          group_scale[u] = kPerChannel ? 0.0f
                                       : GroupScaleOf(plan, ref.payload,
                                                      static_cast<uint32_t>(i));
          if constexpr (kQuantize) {
            x[u] = LoadVec<T, kVec>(reinterpret_cast<const T*>(ref.src) + i);
          } else {
            x[u] = LoadQuantized<kVec>(
                reinterpret_cast<const int8_t*>(ref.payload.At(i)));
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (!kPartial || base + u * kElementwiseThreads < vecs) {
          const uint64_t i = i_step + u * kElementwiseThreads * kVec;
          float scale[kVec];
          float inv_scale[kVec];
          ScalesOf<kVec, kQuantize, kPerChannel>(
              plan, ref.payload, static_cast<uint32_t>(i), group_scale[u],
              scale, inv_scale);
          if constexpr (kQuantize) {
            StoreQuantized(
                reinterpret_cast<int8_t*>(ref.payload.At(i)),
                QuantizeVec<ScaleSource::kGiven>(x[u], scale, inv_scale));
          } else {
            float y[kVec];
            DequantizeVec(x[u], scale, y);
            StoreVec<T, kVec>(reinterpret_cast<T*>(ref.dst) + i,
                              Pack<T, kVec>(y));
          }
        }
      }
    };
    uint32_t base = threadIdx.x;
    for (; base + (kUnroll - 1) * kElementwiseThreads < vecs;
         base += kElementwiseThreads * kUnroll) {
      step(base, std::false_type{});
    }
    if (base < vecs) step(base, std::true_type{});
  }
}

// The plan's scale map for `layout` (the fields ScalesOf and GroupScaleOf
// read: elements, scales_offset, row_values and the divisors), the rest
// zero; INTERNAL when the shape does not fit kVec-wide vectors (one scale
// per vector for contiguous groups, kVec consecutive ones per channel).
template <int kVec>
absl::StatusOr<ElementwisePlan> ElementwiseScaleMap(const BlockLayout& layout) {
  const BlockShape& shape = layout.shape;
  ElementwisePlan plan{};
  const bool per_channel = layout.spec.granularity == Granularity::kPerChannel;
  plan.row_values = uint64_t{shape.heads} * shape.head_dim;
  const uint64_t scale_run =
      per_channel ? plan.row_values : layout.group_values;
  if (layout.elements % kVec != 0 || scale_run % kVec != 0) {
    return absl::InternalError("kvq cuda: shape does not fit the vector width");
  }
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
  return plan;
}

template <typename T, int kVec, class Addr, bool kQuantize>
absl::Status LaunchElementwise(const BlockLayout& layout,
                               const BlockList& blocks, const Addr& addr,
                               cudaStream_t stream) {
  const bool per_channel = layout.spec.granularity == Granularity::kPerChannel;
  absl::StatusOr<ElementwisePlan> map = ElementwiseScaleMap<kVec>(layout);
  if (!map.ok()) return map.status();
  ElementwisePlan plan = *map;
  plan.vecs_per_block = layout.elements / kVec;

  constexpr int kMaxCtasPerSm =
      kQuantize ? 0 : kDequantizeCtasPerSm<T, Addr>;
  auto launch = [&](auto channels) -> absl::Status {
    constexpr bool kPerChannel = decltype(channels)::value;
    constexpr auto kKernel =
        &ElementwiseKernel<T, kVec, Addr, kQuantize, kPerChannel>;
    uint64_t chunk_vecs = kElementwiseChunkVecs;
    if constexpr (kPerChannel) {
      const absl::StatusOr<uint32_t> ctas = PersistentGrid<kKernel>(
          kElementwiseThreads, UINT32_MAX, kMaxCtasPerSm);
      if (!ctas.ok()) return ctas.status();
      const uint64_t block_units =
          (plan.vecs_per_block + kPerChannelChunkUnitVecs - 1) /
          kPerChannelChunkUnitVecs;
      const uint64_t default_units =
          kElementwiseChunkVecs / kPerChannelChunkUnitVecs;
      const uint64_t launch_bytes =
          uint64_t{blocks.count} * layout.elements * sizeof(T);
      // At most kElementwiseChunkVecs vectors: in-chunk indices fit 32 bits.
      chunk_vecs = kPerChannelChunkUnitVecs *
                   PerChannelChunkUnits(block_units, blocks.count, *ctas,
                                        default_units,
                                        kPerChannelChunkMinRounds,
                                        launch_bytes, kPerChannelChunkMinBytes);
      plan.chunk_vecs = static_cast<uint32_t>(chunk_vecs);
    }
    const uint64_t chunks_per_block =
        (plan.vecs_per_block + chunk_vecs - 1) / chunk_vecs;
    plan.chunks_per_block = FastDivmod(chunks_per_block);
    return LaunchPersistent<kKernel, &ElementwisePlan::total_chunks,
                            kMaxCtasPerSm>(
        kQuantize ? "ElementwiseKernel(quantize)"
                  : "ElementwiseKernel(dequantize)",
        kElementwiseThreads, blocks, chunks_per_block, plan, stream, addr);
  };
  if constexpr (kQuantize) {
    // Per-channel quantize is ColumnQuantize's apply stage (dispatch.cu):
    // this pass quantizes contiguous groups only.
    if (per_channel) {
      return absl::InternalError(
          "kvq cuda: the elementwise pass does not quantize per channel");
    }
    return launch(std::false_type{});
  } else {
    return DispatchBool(per_channel, launch);
  }
}

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_ELEMENTWISE_CUH_
