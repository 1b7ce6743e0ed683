// CudaAvailable: whether a CUDA GPU can be used by this process.
//
// With no GPU, cudaGetDeviceCount returns an error (35, "insufficient driver",
// on a machine with the toolkit but no driver) rather than a count of zero,
// so any error counts as "no GPU".

#include "server/backend/backend.h"

#if defined(KVQ_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace kvq {

bool CudaAvailable() {
#if defined(KVQ_WITH_CUDA)
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return false;
  }
  return count > 0;
#else
  return false;
#endif
}

}  // namespace kvq
