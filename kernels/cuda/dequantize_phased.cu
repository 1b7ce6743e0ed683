// PhasedDequantize (dequantize_phased.cuh): rounds of bulk-copied slabs,
// converted from shared memory, the grid meeting after each round's writes.

#include "kernels/cuda/dequantize_phased.cuh"

#include <cooperative_groups.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/dtype_traits.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/kernel_common.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace kvq::cuda::internal {
namespace {

struct PhasedPlan {
  ElementwisePlan scales;  // the scale map (ScalesOf), as the elementwise pass
  uint64_t slabs;          // ceil(elements / slab_values)
  uint32_t rounds;         // ceil(slabs / gridDim.x)
  uint32_t slab_values;    // EvenSlabValues: <= kPhasedSlabValues
};

// Round r: CTA c takes slab r * gridDim.x + c (consecutive CTAs, consecutive
// slabs: a round reads one stretch of the payload and writes one stretch of
// the output). In its read phase thread 0 asks for the slab's whole 16-byte
// words by one bulk copy and the CTA loads the slab's group scales into
// shared memory; in its write phase each thread converts kVec values at a
// time (one 16-byte store), the slab's last few values (under 16 bytes, in
// the block's last slab only) straight from global memory. Per-channel
// scales come through L1 / L2 (ScalesOf): a plane's row of them is shared by
// all its slabs.
template <typename T, bool kPerChannel>
__global__ void __launch_bounds__(kPhasedThreads, kPhasedCtasPerSm)
    PhasedDequantizeKernel(PhasedPlan plan, const int8_t* payload, T* dst) {
  constexpr int kVec = kFullVec<T>;
  constexpr int kUnroll = 4;
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ uint64_t barrier;
  const int8_t* slab_values = reinterpret_cast<const int8_t*>(smem);
  float* slab_scales = reinterpret_cast<float*>(smem + kPhasedSlabValues);
  if (threadIdx.x == 0) InitBulkBarrier(&barrier);
  __syncthreads();
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  const ElementwisePlan& map = plan.scales;
  const ContiguousAddr::Payload at{
      const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(payload))};
  uint32_t copies = 0;  // bulk copies this CTA has waited for
  for (uint32_t round = 0; round < plan.rounds; ++round) {
    const uint64_t slab = uint64_t{round} * gridDim.x + blockIdx.x;
    if (slab < plan.slabs) {
      const uint64_t begin = slab * plan.slab_values;
      const uint32_t n = static_cast<uint32_t>(
          min(uint64_t{plan.slab_values}, map.elements - begin));
      const uint32_t bulk = n & ~15u;
      if (threadIdx.x == 0 && bulk > 0) {
        IssueBulkCopy(&barrier, smem, payload + begin, bulk);
      }
      uint32_t first_group = 0;
      if constexpr (!kPerChannel) {
        // Indices within a block fit in 32 bits (at most 2^32 values).
        first_group = map.group_values.Div(static_cast<uint32_t>(begin));
        const uint32_t groups =
            map.group_values.Div(static_cast<uint32_t>(begin + n - 1)) -
            first_group + 1;
        for (uint32_t g = threadIdx.x; g < groups; g += kPhasedThreads) {
          slab_scales[g] = *reinterpret_cast<const float*>(
              at.At(map.scales_offset + 4 * (uint64_t{first_group} + g)));
        }
      }
      __syncthreads();  // the scales are in
      if (bulk > 0) WaitBulkPhase(&barrier, copies++ & 1);
      // The slab's whole words from shared memory, then (the block's last
      // slab only) its last few values from global memory: one loop of
      // each. One loop choosing between the two loads per vector ran the
      // kernel at 68% of the copy where this runs at 92% (the knobs lab,
      // bench/results/runs/2026-12-02-p/call3-phased-knobs-lab.txt).
      const auto convert = [&](uint32_t v, const QuantizedVec<kVec>& q) {
        const uint64_t i = begin + uint64_t{v} * kVec;
        float scale[kVec];
        if constexpr (kPerChannel) {
          float unused[kVec];
          ScalesOf<kVec, /*kQuantize=*/false, /*kPerChannel=*/true>(
              map, at, static_cast<uint32_t>(i), 0.0f, scale, unused);
        } else {
          const float s = slab_scales[map.group_values.Div(
                                          static_cast<uint32_t>(i)) -
                                      first_group];
#pragma unroll
          for (int e = 0; e < kVec; ++e) scale[e] = s;
        }
        float y[kVec];
        DequantizeVec(q, scale, y);
        StoreVec<T, kVec>(dst + i, Pack<T, kVec>(y));
      };
      const uint32_t bulk_vecs = bulk / kVec;
      for (uint32_t base = threadIdx.x; base < bulk_vecs;
           base += kPhasedThreads * kUnroll) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const uint32_t v = base + u * kPhasedThreads;
          if (v < bulk_vecs) {
            convert(v, LoadQuantized<kVec>(slab_values + v * kVec));
          }
        }
      }
      for (uint32_t v = bulk_vecs + threadIdx.x; v < n / kVec;
           v += kPhasedThreads) {
        convert(v, LoadQuantized<kVec>(payload + begin + v * kVec));
      }
    }
    // The slab's shared memory is refilled next round by the async proxy.
    FenceSharedBeforeBulkCopy();
    __syncthreads();
    grid.sync();  // the whole grid done writing before anyone reads again
  }
}

}  // namespace

absl::StatusOr<bool> TakesPhasedDequantize(const BlockLayout& layout,
                                           const BlockList& blocks,
                                           const ContiguousAddr& addr) {
  const bool per_channel =
      layout.spec.granularity == Granularity::kPerChannel;
  const auto aligned = [](const void* p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
  };
  if (blocks.count != 1 || blocks.list != nullptr ||
      layout.elements < kPhasedMinValues ||
      layout.elements > (uint64_t{1} << 32) ||
      !(per_channel || layout.group_values >= kPhasedMinGroupValues) ||
      !aligned(addr.base) || !aligned(blocks.dst)) {
    return false;
  }
  absl::StatusOr<bool> bulk_copy = DeviceHasBulkCopy();
  if (!bulk_copy.ok() || !*bulk_copy) return bulk_copy;
  return DeviceHasCooperativeLaunch();
}

template <typename T>
absl::Status LaunchPhasedDequantize(const BlockLayout& layout,
                                    const BlockList& blocks,
                                    const ContiguousAddr& addr,
                                    cudaStream_t stream) {
  absl::StatusOr<ElementwisePlan> map =
      ElementwiseScaleMap<kFullVec<T>>(layout);
  if (!map.ok()) return map.status();
  PhasedPlan plan{};
  plan.scales = *map;

  const bool per_channel = layout.spec.granularity == Granularity::kPerChannel;
  return DispatchBool(per_channel, [&](auto channels) -> absl::Status {
    constexpr auto kKernel =
        &PhasedDequantizeKernel<T, decltype(channels)::value>;
    // Every CTA of a cooperative grid must be resident: the grid is what
    // fits at once, at most kPhasedCtasPerSm per SM.
    absl::StatusOr<uint32_t> ctas = PersistentGrid<kKernel, kPhasedSmem>(
        kPhasedThreads,
        (layout.elements + kPhasedSlabValues - 1) / kPhasedSlabValues,
        kPhasedCtasPerSm);
    if (!ctas.ok()) return ctas.status();
    // As many rounds as slabs of kPhasedSlabValues need, each of them
    // full (dequantize_phased.cuh: kPhasedSlabAlign).
    plan.slab_values = static_cast<uint32_t>(
        EvenSlabValues(layout.elements, *ctas, kPhasedSlabValues,
                       kPhasedSlabAlign));
    plan.slabs =
        (layout.elements + plan.slab_values - 1) / plan.slab_values;
    plan.rounds = static_cast<uint32_t>((plan.slabs + *ctas - 1) / *ctas);
    const int8_t* payload = reinterpret_cast<const int8_t*>(addr.base);
    T* dst = reinterpret_cast<T*>(blocks.dst);
    void* args[] = {&plan, &payload, &dst};
    KVQ_CUDA_RETURN_IF_ERROR(cudaLaunchCooperativeKernel(
        reinterpret_cast<const void*>(kKernel), dim3(*ctas),
        dim3(kPhasedThreads), args, kPhasedSmem, stream));
    return absl::OkStatus();
  });
}

template absl::Status LaunchPhasedDequantize<Fp32>(const BlockLayout&,
                                                   const BlockList&,
                                                   const ContiguousAddr&,
                                                   cudaStream_t);

}  // namespace kvq::cuda::internal
