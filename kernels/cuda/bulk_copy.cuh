// Bulk copies from global into shared memory (TMA, cp.async.bulk) that
// complete on an mbarrier, for kernels that stage their input: one thread
// asks for a stretch of bytes and goes on, the copy engine fetches them
// while the CTA works on what it fetched before, and every thread waits on
// the barrier's phase before reading the stretch.
//
// Contract:
//   - Compute capability 9.0 and later only (DeviceHasBulkCopy,
//     launch_util.cuh, says so on the host). Built for an older
//     architecture, every function traps: the host never launches a kernel
//     that stages there.
//   - InitBulkBarrier: one thread, before a __syncthreads() that precedes
//     any use of the barrier.
//   - IssueBulkCopy: one thread; `dst` (shared) and `src` (global) 16-byte
//     aligned, `bytes` a multiple of 16. The barrier's current phase
//     completes once the bytes have landed, and each barrier takes one copy
//     per phase.
//   - WaitBulkPhase: any thread; returns once the phase of `parity` (0 for
//     the barrier's first copy, 1 for its second, ...) has completed.
//   - A shared buffer is reused for a later copy only after every thread
//     that read it has passed a __syncthreads().

#ifndef KVQ_KERNELS_CUDA_BULK_COPY_CUH_
#define KVQ_KERNELS_CUDA_BULK_COPY_CUH_

#include <cuda/ptx>

#include <cstdint>

namespace kvq::cuda::internal {

// Device code for older architectures keeps each of these as a trap, so that
// a kernel that stages still builds there.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KVQ_HAS_BULK_COPY 1
#endif

namespace ptx = ::cuda::ptx;

__device__ __forceinline__ void InitBulkBarrier(uint64_t* barrier) {
#ifdef KVQ_HAS_BULK_COPY
  // One arrival per phase: the issuing thread's, with the bytes it awaits.
  ptx::mbarrier_init(barrier, 1);
  ptx::fence_mbarrier_init(ptx::sem_release, ptx::scope_cluster);
#else
  __trap();
#endif
}

__device__ __forceinline__ void IssueBulkCopy(uint64_t* barrier, void* dst,
                                              const void* src,
                                              uint32_t bytes) {
#ifdef KVQ_HAS_BULK_COPY
  ptx::mbarrier_arrive_expect_tx(ptx::sem_release, ptx::scope_cta,
                                 ptx::space_shared, barrier, bytes);
  ptx::cp_async_bulk(ptx::space_cluster, ptx::space_global, dst, src, bytes,
                     barrier);
#else
  __trap();
#endif
}

__device__ __forceinline__ void WaitBulkPhase(uint64_t* barrier,
                                              uint32_t parity) {
#ifdef KVQ_HAS_BULK_COPY
  while (!ptx::mbarrier_try_wait_parity(barrier, parity)) {
  }
#else
  __trap();
#endif
}

// Orders this thread's earlier reads of shared memory before later bulk
// copies into it (the copies write through the async proxy): each reader,
// before the __syncthreads() that precedes the next copy into the buffer.
__device__ __forceinline__ void FenceSharedBeforeBulkCopy() {
#ifdef KVQ_HAS_BULK_COPY
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#else
  __trap();
#endif
}

#undef KVQ_HAS_BULK_COPY

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_BULK_COPY_CUH_
