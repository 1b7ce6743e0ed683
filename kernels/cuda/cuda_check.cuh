// CUDA error checking for the production kernels: every runtime call and
// every launch goes through one of these, and a failure becomes
// absl::Status INTERNAL carrying the call and the CUDA error string.

#ifndef KVQ_KERNELS_CUDA_CUDA_CHECK_CUH_
#define KVQ_KERNELS_CUDA_CUDA_CHECK_CUH_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvq::cuda::internal {

inline absl::Status CudaError(cudaError_t error, const char* what) {
  return absl::InternalError(absl::StrCat(what, " failed: ",
                                          cudaGetErrorName(error), " (",
                                          cudaGetErrorString(error), ")"));
}

// Launches `kernel` on `stream` with `dynamic_smem` bytes of dynamic shared
// memory and returns INTERNAL naming `name` if the launch failed (bad
// configuration, no device, or a sticky error left on the device by earlier
// work).
template <typename... Params, typename... Args>
absl::Status LaunchWithSharedMemory(const char* name,
                                    void (*kernel)(Params...), dim3 grid,
                                    dim3 block, size_t dynamic_smem,
                                    cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, dynamic_smem, stream>>>(static_cast<Args&&>(args)...);
  if (const cudaError_t error = cudaGetLastError(); error != cudaSuccess) {
    return CudaError(error, name);
  }
  return absl::OkStatus();
}

// LaunchWithSharedMemory with static shared memory only.
template <typename... Params, typename... Args>
absl::Status Launch(const char* name, void (*kernel)(Params...), dim3 grid,
                    dim3 block, cudaStream_t stream, Args&&... args) {
  return LaunchWithSharedMemory(name, kernel, grid, block, 0, stream,
                                static_cast<Args&&>(args)...);
}

}  // namespace kvq::cuda::internal

// Returns INTERNAL from the current function if the CUDA call fails.
#define KVQ_CUDA_RETURN_IF_ERROR(call)                                   \
  do {                                                                   \
    if (const cudaError_t kvq_cuda_error_ = (call);                      \
        kvq_cuda_error_ != cudaSuccess) {                                \
      return ::kvq::cuda::internal::CudaError(kvq_cuda_error_, #call);   \
    }                                                                    \
  } while (false)

#endif  // KVQ_KERNELS_CUDA_CUDA_CHECK_CUH_
