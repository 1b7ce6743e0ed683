// Coarsened variant: each thread owns one channel d over a run of 16
// consecutive tokens, so it loads the channel's scale (and computes its
// reciprocal) once for 16 values, and keeps 16 independent loads in flight.
// Consecutive threads take consecutive channels, so each of the 16 accesses
// is coalesced across the warp. The scales kernel keeps the run's absmax in a
// register and issues one atomicMax per thread.

#include "kernels/cuda/study/study_internal.cuh"

namespace kvq::cuda::study::internal {
namespace {

constexpr uint32_t kTokensPerThread = 16;

uint64_t ThreadsFor(StudyShape shape) {
  const uint64_t runs = (shape.tokens + kTokensPerThread - 1) / kTokensPerThread;
  return runs * shape.dims;
}

__global__ void CoarsenedAbsmaxKernel(const float* k, uint32_t tokens,
                                      uint32_t dims, uint64_t threads,
                                      unsigned* absmax_bits) {
  const uint64_t g = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  if (g >= threads) return;
  const uint32_t d = static_cast<uint32_t>(g % dims);
  const uint32_t row0 = static_cast<uint32_t>(g / dims) * kTokensPerThread;
  const float* column = k + d;
  float m = 0.0f;
#pragma unroll
  for (uint32_t r = 0; r < kTokensPerThread; ++r) {
    const uint32_t row = row0 + r;
    if (row < tokens) m = fmaxf(m, fabsf(column[uint64_t{row} * dims]));
  }
  AtomicMaxAbs(absmax_bits + d, m);
}

__global__ void CoarsenedQuantizeKernel(const float* k, uint32_t tokens,
                                        uint32_t dims, uint64_t threads,
                                        const float* scales, int8_t* q) {
  const uint64_t g = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  if (g >= threads) return;
  const uint32_t d = static_cast<uint32_t>(g % dims);
  const uint32_t row0 = static_cast<uint32_t>(g / dims) * kTokensPerThread;
  const float scale = scales[d];
  const float inv = InverseScale(scale);
#pragma unroll
  for (uint32_t r = 0; r < kTokensPerThread; ++r) {
    const uint32_t row = row0 + r;
    if (row < tokens) {
      const uint64_t i = uint64_t{row} * dims + d;
      q[i] = QuantizeValue(k[i], scale, inv);
    }
  }
}

__global__ void CoarsenedDequantizeKernel(const int8_t* q, uint32_t tokens,
                                          uint32_t dims, uint64_t threads,
                                          const float* scales, float* out) {
  const uint64_t g = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  if (g >= threads) return;
  const uint32_t d = static_cast<uint32_t>(g % dims);
  const uint32_t row0 = static_cast<uint32_t>(g / dims) * kTokensPerThread;
  const float scale = scales[d];
#pragma unroll
  for (uint32_t r = 0; r < kTokensPerThread; ++r) {
    const uint32_t row = row0 + r;
    if (row < tokens) {
      const uint64_t i = uint64_t{row} * dims + d;
      out[i] = DequantizeValue(q[i], scale);
    }
  }
}

absl::Status Absmax(StudyShape shape, const float* k, unsigned* absmax_bits,
                    cudaStream_t stream) {
  const uint64_t threads = ThreadsFor(shape);
  CoarsenedAbsmaxKernel<<<BlocksFor(threads), kThreadsPerBlock, 0, stream>>>(
      k, shape.tokens, shape.dims, threads, absmax_bits);
  return CheckLaunch("CoarsenedAbsmaxKernel");
}

absl::Status Quant(StudyShape shape, const float* k, const float* scales,
                   int8_t* q, cudaStream_t stream) {
  const uint64_t threads = ThreadsFor(shape);
  CoarsenedQuantizeKernel<<<BlocksFor(threads), kThreadsPerBlock, 0, stream>>>(
      k, shape.tokens, shape.dims, threads, scales, q);
  return CheckLaunch("CoarsenedQuantizeKernel");
}

absl::Status Dequant(StudyShape shape, const int8_t* q, const float* scales,
                     float* out, cudaStream_t stream) {
  const uint64_t threads = ThreadsFor(shape);
  CoarsenedDequantizeKernel<<<BlocksFor(threads), kThreadsPerBlock, 0,
                              stream>>>(q, shape.tokens, shape.dims, threads,
                                        scales, out);
  return CheckLaunch("CoarsenedDequantizeKernel");
}

}  // namespace

const VariantOps kCoarsenedOps = {Absmax, Quant, Dequant};

}  // namespace kvq::cuda::study::internal
