// Host helpers for launching the production kernels: persistent grid sizes,
// splitting huge batches so kernels index work in 32 bits (LaunchPersistent
// does both for the usual kernel), and preparing the absmax output for
// atomic accumulation. How work is cut into chunks: work_split.h.

#ifndef KVQ_KERNELS_CUDA_LAUNCH_UTIL_CUH_
#define KVQ_KERNELS_CUDA_LAUNCH_UTIL_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/addressing.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/kernel_common.cuh"
#include "kernels/cuda/work_split.h"
#include "kernels/status_macros.h"

namespace kvq::cuda::internal {

// Most work items one launch indexes (kernels use 32-bit work indices).
inline constexpr uint64_t kMaxWorkPerLaunch = uint64_t{1} << 31;

// CTAs for a grid-stride kernel over `work` items: as many as can be
// resident at once on the current device (more only adds scheduling), at
// most max_per_sm per SM when that is > 0, never more than there are items.
// kDynamicSmem: the dynamic shared memory every launch of kKernel asks for
// (the kernel is allowed that much on its first call).
template <auto kKernel, size_t kDynamicSmem = 0>
absl::StatusOr<uint32_t> PersistentGrid(int threads, uint64_t work,
                                        int max_per_sm = 0) {
  // Occupancy depends on the kernel and the CTA size only; cache it per
  // (kernel, warps per CTA).
  static std::atomic<int> ctas_per_sm[33] = {};
  const int slot = std::min(threads / 32, 32);
  int per_sm = ctas_per_sm[slot].load(std::memory_order_relaxed);
  if (per_sm == 0) {
    if constexpr (kDynamicSmem > 0) {
      KVQ_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
          kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
          static_cast<int>(kDynamicSmem)));
    }
    KVQ_CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm, kKernel, threads, kDynamicSmem));
    per_sm = std::max(per_sm, 1);
    ctas_per_sm[slot].store(per_sm, std::memory_order_relaxed);
  }
  int device = 0;
  int sms = 0;
  KVQ_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  KVQ_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (max_per_sm > 0) per_sm = std::min(per_sm, max_per_sm);
  const uint64_t resident = uint64_t(sms) * uint64_t(per_sm);
  return static_cast<uint32_t>(std::max<uint64_t>(1, std::min(resident, work)));
}

// Whether the current device has the bulk asynchronous copy (TMA,
// cp.async.bulk) of compute capability 9.0 and later.
inline absl::StatusOr<bool> DeviceHasBulkCopy() {
  int device = 0;
  int major = 0;
  KVQ_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  KVQ_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(
      &major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 9;
}

// Whether the current device can launch cooperative grids (grid.sync).
inline absl::StatusOr<bool> DeviceHasCooperativeLaunch() {
  int device = 0;
  int cooperative = 0;
  KVQ_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  KVQ_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(
      &cooperative, cudaDevAttrCooperativeLaunch, device));
  return cooperative != 0;
}

// Calls fn(sub) for consecutive parts of `blocks` whose work
// (sub.count * work_per_block) is at most kMaxWorkPerLaunch.
template <class Fn>
absl::Status ForEachSubBatch(const BlockList& blocks, uint64_t work_per_block,
                             Fn&& fn) {
  if (work_per_block == 0 || work_per_block > kMaxWorkPerLaunch) {
    return absl::InternalError(
        "kvq cuda: a block's work does not fit one launch's 32-bit index");
  }
  const uint64_t per_launch = kMaxWorkPerLaunch / work_per_block;
  for (uint32_t done = 0; done < blocks.count;) {
    BlockList sub = blocks;
    sub.first = blocks.first + done;
    sub.count = static_cast<uint32_t>(
        std::min<uint64_t>(blocks.count - done, per_launch));
    KVQ_RETURN_IF_ERROR(fn(sub));
    done += sub.count;
  }
  return absl::OkStatus();
}

// Launches kKernel(plan, sub, args...) on `stream` for each part `sub` of
// `blocks` that ForEachSubBatch makes, with plan.*kTotal (a uint32_t member
// of Plan: the count the kernel's CTAs stride over) set to the part's work,
// sub.count * work_per_block, and a PersistentGrid of `threads`-thread CTAs
// over it (at most kMaxCtasPerSm per SM when > 0), each CTA with
// kDynamicSmem bytes of dynamic shared memory. For kernels that take one
// work item per CTA at a time, whose first two parameters are the plan and
// the BlockList.
template <auto kKernel, auto kTotal, int kMaxCtasPerSm = 0,
          size_t kDynamicSmem = 0, class Plan, class... Args>
absl::Status LaunchPersistent(const char* name, uint32_t threads,
                              const BlockList& blocks, uint64_t work_per_block,
                              Plan plan, cudaStream_t stream,
                              const Args&... args) {
  return ForEachSubBatch(
      blocks, work_per_block, [&](const BlockList& sub) -> absl::Status {
        plan.*kTotal = static_cast<uint32_t>(sub.count * work_per_block);
        absl::StatusOr<uint32_t> grid = PersistentGrid<kKernel, kDynamicSmem>(
            static_cast<int>(threads), plan.*kTotal, kMaxCtasPerSm);
        if (!grid.ok()) return grid.status();
        return LaunchWithSharedMemory(name, kKernel, dim3(*grid),
                                      dim3(threads), kDynamicSmem, stream,
                                      plan, sub, args...);
      });
}

// fn(std::true_type{}) or fn(std::false_type{}) as `value` says: a run-time
// flag made a compile-time one, to pick a kernel instantiation
// (decltype(flag)::value) with a single call site.
template <class Fn>
decltype(auto) DispatchBool(bool value, Fn&& fn) {
  return value ? fn(std::true_type{}) : fn(std::false_type{});
}

// Sets up `out` for kernels in which several CTAs contribute to one block's
// absmax: zeroes absmax[first .. first + count) (0 bits = 0.0f) so that they
// can combine with atomicMax.
inline absl::Status PrepareAtomicAbsmax(const BlockList& blocks,
                                        QuantizeOutputs* out,
                                        cudaStream_t stream) {
  out->atomic_absmax = true;
  if (out->absmax == nullptr) return absl::OkStatus();
  KVQ_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(out->absmax + blocks.first, 0,
                                           sizeof(float) * blocks.count,
                                           stream));
  return absl::OkStatus();
}

inline uint32_t CeilPow2(uint64_t x) {
  uint32_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

inline uint32_t Log2(uint32_t pow2) {
  uint32_t s = 0;
  while ((1u << s) < pow2) ++s;
  return s;
}

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_LAUNCH_UTIL_CUH_
