// The quality sample's sums of squares (kernels/quant_error.h) on the GPU,
// where a put block and its decoded copy already are: the server measures a
// sampled block's error without copying either back to the host.
//
// Sums are accumulated in double, per thread in a fixed order and then
// combined with atomics, so they equal the CPU's SumSquaredError up to the
// rounding of a different summation order (relative 1e-12 or so, never
// bitwise). Asynchronous on `stream`; INVALID_ARGUMENT for null pointers,
// INTERNAL with the CUDA error string when the launch fails.
//
// This header compiles without nvcc, like paged_kernels.h.

#ifndef KVQ_KERNELS_CUDA_QUANT_ERROR_CUDA_H_
#define KVQ_KERNELS_CUDA_QUANT_ERROR_CUDA_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/format.h"

namespace kvq::cuda {

using Stream = void*;  // a cudaStream_t

// Adds the sums over `n` values of `dtype` at x and y (device memory,
// aligned to the element size) to sums[0] (sum of (x - y)^2) and sums[1]
// (sum of x^2): device doubles the caller zeroed.
absl::Status SumSquaredErrorOnDevice(DType dtype, const void* x, const void* y,
                                     uint64_t n, double* sums, Stream stream);

}  // namespace kvq::cuda

#endif  // KVQ_KERNELS_CUDA_QUANT_ERROR_CUDA_H_
