// Naive variant: one thread per element over the flat T x D array; the
// channel of element i is i % D. The scales kernel is the same idea applied
// to the reduction: every element does its own atomicMax.

#include "kernels/cuda/study/study_internal.cuh"

namespace kvq::cuda::study::internal {
namespace {

__global__ void NaiveAbsmaxKernel(const float* k, uint64_t n, uint32_t dims,
                                  unsigned* absmax_bits) {
  const uint64_t i = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  AtomicMaxAbs(absmax_bits + i % dims, fabsf(k[i]));
}

__global__ void NaiveQuantizeKernel(const float* k, uint64_t n, uint32_t dims,
                                    const float* scales, int8_t* q) {
  const uint64_t i = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const float scale = scales[i % dims];
  q[i] = QuantizeValue(k[i], scale, InverseScale(scale));
}

__global__ void NaiveDequantizeKernel(const int8_t* q, uint64_t n,
                                      uint32_t dims, const float* scales,
                                      float* out) {
  const uint64_t i = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  out[i] = DequantizeValue(q[i], scales[i % dims]);
}

absl::Status Absmax(StudyShape shape, const float* k, unsigned* absmax_bits,
                    cudaStream_t stream) {
  const uint64_t n = shape.elements();
  NaiveAbsmaxKernel<<<BlocksFor(n), kThreadsPerBlock, 0, stream>>>(
      k, n, shape.dims, absmax_bits);
  return CheckLaunch("NaiveAbsmaxKernel");
}

absl::Status Quant(StudyShape shape, const float* k, const float* scales,
                   int8_t* q, cudaStream_t stream) {
  const uint64_t n = shape.elements();
  NaiveQuantizeKernel<<<BlocksFor(n), kThreadsPerBlock, 0, stream>>>(
      k, n, shape.dims, scales, q);
  return CheckLaunch("NaiveQuantizeKernel");
}

absl::Status Dequant(StudyShape shape, const int8_t* q, const float* scales,
                     float* out, cudaStream_t stream) {
  const uint64_t n = shape.elements();
  NaiveDequantizeKernel<<<BlocksFor(n), kThreadsPerBlock, 0, stream>>>(
      q, n, shape.dims, scales, out);
  return CheckLaunch("NaiveDequantizeKernel");
}

}  // namespace

const VariantOps kNaiveOps = {Absmax, Quant, Dequant};

}  // namespace kvq::cuda::study::internal
