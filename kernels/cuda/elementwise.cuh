// The elementwise pass shared by dequantize and by the second pass of
// two-pass quantize of contiguous groups (per-channel's is ColumnQuantize's
// apply stage): every element's scale is already in the payload, so each
// thread maps a vector of kVec elements to its scale(s) and converts it.
//
// Work is split into chunks of kElementwiseChunkVecs vectors of one block
// (per-channel dequantize: a length chosen per launch, kPerChannelChunk*);
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
// here.
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

// Per-channel dequantize's chunk, chosen per launch (EvenChunkUnits,
// work_split.h) in units of kPerChannelChunkUnitVecs vectors: today's
// kElementwiseChunkVecs for launches under kPerChannelEvenMinBytes of values or
// with fewer than kPerChannelEvenMinRounds of those chunks per CTA; else at
// least kPerChannelChunkMinUnits units, the length that leaves the busiest CTA
// the least work (one round of long chunks on a single big block). Why: FP16
// per-channel dequantize with long rows ran at 83-85% of copy (head_dim
// 4096-8192; 87-93% up to 2048), and Nsight Compute (eighth session, call 1) on
// 8 x 8192 channels against 8 x 2048 (same bytes) found L1 hit rates alike
// (68.5% / 72.1%) but achieved occupancy 40% against 47%, CTAs finishing
// unevenly: 4096 chunks on 528 CTAs, 7.76 each, so 128 CTAs sit idle for the
// last eighth. Cutting every elementwise launch by ChunkSteps lifted that case
// to 88% (call 4) but slowed FP32 per-tensor quantize 101% -> 74% (chunks of 3
// vectors per thread for a pass that loads 4) and small dequantizes that write
// to host memory over PCIe 2-4x (many CTAs each writing small pieces): hence
// this rule for the per-channel instantiation only, at least two unroll steps a
// chunk, and only on launches that fill the grid several times. Its unit is one
// vector per thread (a chunk's last step may be partial): in whole steps, 8 x
// 8192 channels (1 x 2048 tokens: 8192 steps on 528 CTAs) leave the busiest CTA
// 16 steps whatever the length (15.5 a CTA), so only shorter pieces can even
// the CTAs out. In vectors per thread (65536 of them, 124.1 a CTA): one round
// of 525 chunks of 125 (15 full steps and one of 5 loads a thread), against 8
// rounds of 16 (128): the busiest CTA 2.3% shorter. 1 x 1048576 x 8 x 128
// (524288): 528 chunks of 993 against 63 rounds of 16 (1008), 1.5%. The
// contiguous-group instantiations keep kElementwiseChunkVecs as a compile-time
// constant (their SASS is unchanged: cuobjdump -sass, sm_90).
inline constexpr uint32_t kPerChannelChunkUnitVecs = kElementwiseThreads;
inline constexpr uint32_t kPerChannelChunkMinUnits =
    2 * kElementwiseThreads * kElementwiseUnroll<false> /
    kPerChannelChunkUnitVecs;  // two unroll steps
inline constexpr uint64_t kPerChannelEvenMinBytes = uint64_t{64} << 20;
inline constexpr uint64_t kPerChannelEvenMinRounds = 4;
static_assert(kElementwiseChunkVecs % kPerChannelChunkUnitVecs == 0);
// The eighth session's call-4 rule, for per-channel dequantize alone and
// only where the launch fills the grid several times: ChunkSteps in
// vectors per thread, at most today's 16, with no floor. On 8 x 8192
// channels it picks 5 vectors a thread (1280-vector chunks, 13108 of them,
// 25 rounds: the busiest CTA 125 vector-steps, as EvenChunkUnits' one
// round of 125), every chunk one partial step of 5 loads. That rule
// lifted this case 84% -> 88% where both shorten the busiest CTA's work
// by the same 2.3%: if this build beats the EvenChunkUnits one, what it
// gains is the short chunks themselves (all CTAs at work on a narrow,
// moving window of the block, and of its scale row), not the even
// shares. An experiment below the two-step floor: false restores
// EvenChunkUnits.
inline constexpr bool kPerChannelShortChunks = true;
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

template <typename T, int kVec, class Addr, bool kQuantize>
absl::Status LaunchElementwise(const BlockLayout& layout,
                               const BlockList& blocks, const Addr& addr,
                               cudaStream_t stream) {
  const BlockShape& shape = layout.shape;
  ElementwisePlan plan{};
  const bool per_channel = layout.spec.granularity == Granularity::kPerChannel;
  plan.row_values = uint64_t{shape.heads} * shape.head_dim;
  const uint64_t scale_run =
      per_channel ? plan.row_values : layout.group_values;
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
      if constexpr (kPerChannelShortChunks) {
        chunk_vecs =
            kPerChannelChunkUnitVecs *
            (FillsTheGridSeveralTimes(block_units, blocks.count, *ctas,
                                      default_units, kPerChannelEvenMinRounds,
                                      launch_bytes, kPerChannelEvenMinBytes)
                 ? ChunkSteps(block_units, blocks.count, default_units, *ctas)
                 : default_units);
      } else {
        chunk_vecs =
            kPerChannelChunkUnitVecs *
            EvenChunkUnits(block_units, blocks.count, *ctas, default_units,
                           kPerChannelChunkMinUnits, kPerChannelEvenMinRounds,
                           launch_bytes, kPerChannelEvenMinBytes);
      }
      // A block holds at most 2^32 values: at most 2^31 vectors a chunk
      // (a multiple of the unit) keeps every in-chunk index in 32 bits.
      chunk_vecs = std::min<uint64_t>(chunk_vecs, uint64_t{1} << 31);
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
