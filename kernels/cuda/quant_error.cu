// SumSquaredErrorOnDevice: one templated streaming reduction, dispatched
// over the dtype below.

#include "kernels/cuda/quant_error_cuda.h"

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/dtype_traits.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace kvq::cuda {
namespace {

using internal::Bf16;
using internal::Fp16;
using internal::Fp32;
using internal::ToFloat;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// A grid-stride pass per thread, then a warp and a CTA reduction, then one
// atomic per CTA and sum: a sampled block is small next to the copies that
// brought it, so the simple form is enough.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    SumSquaredErrorKernel(const T* __restrict__ x, const T* __restrict__ y,
                          uint64_t n, double* __restrict__ sums) {
  double diff = 0, norm = 0;
  const uint64_t stride = uint64_t{gridDim.x} * kThreads;
  for (uint64_t i = uint64_t{blockIdx.x} * kThreads + threadIdx.x; i < n;
       i += stride) {
    const double a = ToFloat(x[i]);
    const double b = ToFloat(y[i]);
    diff += (a - b) * (a - b);
    norm += a * a;
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    diff += __shfl_down_sync(0xffffffffu, diff, offset);
    norm += __shfl_down_sync(0xffffffffu, norm, offset);
  }
  __shared__ double warp_sums[2][kWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    warp_sums[0][warp] = diff;
    warp_sums[1][warp] = norm;
  }
  __syncthreads();
  if (threadIdx.x < 2) {
    double total = 0;
    for (int w = 0; w < kWarps; ++w) total += warp_sums[threadIdx.x][w];
    atomicAdd(&sums[threadIdx.x], total);
  }
}

template <typename T>
absl::Status Run(const void* x, const void* y, uint64_t n, double* sums,
                 cudaStream_t stream) {
  // Enough CTAs to fill the GPU (4 per SM), never more than the values need.
  const absl::StatusOr<uint32_t> grid =
      internal::PersistentGrid<&SumSquaredErrorKernel<T>>(
          kThreads, (n + kThreads - 1) / kThreads, /*max_per_sm=*/4);
  if (!grid.ok()) return grid.status();
  return internal::Launch("SumSquaredErrorKernel", &SumSquaredErrorKernel<T>,
                          *grid, kThreads, stream, static_cast<const T*>(x),
                          static_cast<const T*>(y), n, sums);
}

}  // namespace

absl::Status SumSquaredErrorOnDevice(DType dtype, const void* x, const void* y,
                                     uint64_t n, double* sums, Stream stream) {
  if (x == nullptr || y == nullptr || sums == nullptr) {
    return absl::InvalidArgumentError(
        "SumSquaredErrorOnDevice: x, y and sums must be device pointers, got "
        "null");
  }
  if (n == 0) return absl::OkStatus();
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFp16:
      return Run<Fp16>(x, y, n, sums, s);
    case DType::kBf16:
      return Run<Bf16>(x, y, n, sums, s);
    case DType::kFp32:
      return Run<Fp32>(x, y, n, sums, s);
  }
  return absl::InvalidArgumentError("SumSquaredErrorOnDevice: unknown dtype");
}

}  // namespace kvq::cuda
