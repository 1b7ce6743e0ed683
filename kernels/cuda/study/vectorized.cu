// Vectorized variant: 16-byte memory accesses. Quantize and dequantize treat
// the matrix as one flat array and give each thread 16 consecutive elements:
// quantize reads 4 x float4 and writes the 16 int8 results with one 16-byte
// store; dequantize does the reverse. The flat view works for any D because
// the channel of element i is i % D; when D is a multiple of 16 a thread's 16
// elements are 16 consecutive channels of one row and their scales are read
// as 4 x float4 too. The last n % 16 elements go element by element.
//
// The scales kernel gives each thread 4 adjacent channels over 16 tokens and
// reads them as one float4 per token when rows are 16-byte aligned (D a
// multiple of 4); otherwise the same work with scalar loads.
//
// The public entry points check that every pointer is 16-byte aligned.

#include "kernels/cuda/study/study_internal.cuh"

namespace kvq::cuda::study::internal {
namespace {

constexpr uint32_t kElementsPerThread = 16;  // quantize / dequantize
constexpr uint32_t kTokensPerThread = 16;    // scales

// The scales of the 16 elements starting at flat index i0 (channel d).
__device__ __forceinline__ void LoadScales16(const float* scales,
                                             uint32_t dims, uint32_t d,
                                             float (&s)[kElementsPerThread]) {
  if (dims % kElementsPerThread == 0) {  // d % 16 == 0, no wrap to a new row
    const float4* p = reinterpret_cast<const float4*>(scales + d);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float4 v = p[j];
      s[4 * j + 0] = v.x;
      s[4 * j + 1] = v.y;
      s[4 * j + 2] = v.z;
      s[4 * j + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      s[j] = scales[d];
      d = (d + 1 == dims) ? 0 : d + 1;
    }
  }
}

__global__ void VectorizedQuantizeKernel(const float* k, uint64_t n,
                                         uint32_t dims, const float* scales,
                                         int8_t* q) {
  const uint64_t i0 =
      (blockIdx.x * uint64_t{blockDim.x} + threadIdx.x) * kElementsPerThread;
  if (i0 >= n) return;
  uint32_t d = static_cast<uint32_t>(i0 % dims);
  if (i0 + kElementsPerThread <= n) {
    const float4* src = reinterpret_cast<const float4*>(k + i0);
    float x[kElementsPerThread];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float4 v = src[j];
      x[4 * j + 0] = v.x;
      x[4 * j + 1] = v.y;
      x[4 * j + 2] = v.z;
      x[4 * j + 3] = v.w;
    }
    float s[kElementsPerThread];
    LoadScales16(scales, dims, d, s);
    uint32_t words[4] = {0, 0, 0, 0};
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const uint32_t byte = static_cast<uint8_t>(
          QuantizeValue(x[j], s[j], InverseScale(s[j])));
      words[j / 4] |= byte << (8 * (j % 4));
    }
    *reinterpret_cast<uint4*>(q + i0) =
        make_uint4(words[0], words[1], words[2], words[3]);
  } else {
    for (uint64_t i = i0; i < n; ++i) {
      const float scale = scales[d];
      q[i] = QuantizeValue(k[i], scale, InverseScale(scale));
      d = (d + 1 == dims) ? 0 : d + 1;
    }
  }
}

__global__ void VectorizedDequantizeKernel(const int8_t* q, uint64_t n,
                                           uint32_t dims, const float* scales,
                                           float* out) {
  const uint64_t i0 =
      (blockIdx.x * uint64_t{blockDim.x} + threadIdx.x) * kElementsPerThread;
  if (i0 >= n) return;
  uint32_t d = static_cast<uint32_t>(i0 % dims);
  if (i0 + kElementsPerThread <= n) {
    const uint4 packed = *reinterpret_cast<const uint4*>(q + i0);
    const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
    float s[kElementsPerThread];
    LoadScales16(scales, dims, d, s);
    float y[kElementsPerThread];
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int8_t v = static_cast<int8_t>((words[j / 4] >> (8 * (j % 4))) & 0xff);
      y[j] = DequantizeValue(v, s[j]);
    }
    float4* dst = reinterpret_cast<float4*>(out + i0);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      dst[j] = make_float4(y[4 * j], y[4 * j + 1], y[4 * j + 2], y[4 * j + 3]);
    }
  } else {
    for (uint64_t i = i0; i < n; ++i) {
      out[i] = DequantizeValue(q[i], scales[d]);
      d = (d + 1 == dims) ? 0 : d + 1;
    }
  }
}

__global__ void VectorizedAbsmaxKernel(const float* k, uint32_t tokens,
                                       uint32_t dims, uint32_t quads,
                                       uint64_t threads,
                                       unsigned* absmax_bits) {
  const uint64_t g = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  if (g >= threads) return;
  const uint32_t c0 = static_cast<uint32_t>(g % quads) * 4;
  const uint32_t row0 = static_cast<uint32_t>(g / quads) * kTokensPerThread;
  float m[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (dims % 4 == 0) {  // every row starts 16-byte aligned
#pragma unroll
    for (uint32_t r = 0; r < kTokensPerThread; ++r) {
      const uint32_t row = row0 + r;
      if (row < tokens) {
        const float4 v =
            *reinterpret_cast<const float4*>(k + uint64_t{row} * dims + c0);
        m[0] = fmaxf(m[0], fabsf(v.x));
        m[1] = fmaxf(m[1], fabsf(v.y));
        m[2] = fmaxf(m[2], fabsf(v.z));
        m[3] = fmaxf(m[3], fabsf(v.w));
      }
    }
  } else {
#pragma unroll
    for (uint32_t r = 0; r < kTokensPerThread; ++r) {
      const uint32_t row = row0 + r;
      if (row < tokens) {
        const float* p = k + uint64_t{row} * dims + c0;
#pragma unroll
        for (uint32_t j = 0; j < 4; ++j) {
          if (c0 + j < dims) m[j] = fmaxf(m[j], fabsf(p[j]));
        }
      }
    }
  }
#pragma unroll
  for (uint32_t j = 0; j < 4; ++j) {
    if (c0 + j < dims) AtomicMaxAbs(absmax_bits + c0 + j, m[j]);
  }
}

uint64_t ElementThreads(StudyShape shape) {
  return (shape.elements() + kElementsPerThread - 1) / kElementsPerThread;
}

absl::Status Absmax(StudyShape shape, const float* k, unsigned* absmax_bits,
                    cudaStream_t stream) {
  const uint32_t quads = (shape.dims + 3) / 4;
  const uint64_t runs =
      (shape.tokens + kTokensPerThread - 1) / kTokensPerThread;
  const uint64_t threads = runs * quads;
  VectorizedAbsmaxKernel<<<BlocksFor(threads), kThreadsPerBlock, 0, stream>>>(
      k, shape.tokens, shape.dims, quads, threads, absmax_bits);
  return CheckLaunch("VectorizedAbsmaxKernel");
}

absl::Status Quant(StudyShape shape, const float* k, const float* scales,
                   int8_t* q, cudaStream_t stream) {
  VectorizedQuantizeKernel<<<BlocksFor(ElementThreads(shape)),
                             kThreadsPerBlock, 0, stream>>>(
      k, shape.elements(), shape.dims, scales, q);
  return CheckLaunch("VectorizedQuantizeKernel");
}

absl::Status Dequant(StudyShape shape, const int8_t* q, const float* scales,
                     float* out, cudaStream_t stream) {
  VectorizedDequantizeKernel<<<BlocksFor(ElementThreads(shape)),
                               kThreadsPerBlock, 0, stream>>>(
      q, shape.elements(), shape.dims, scales, out);
  return CheckLaunch("VectorizedDequantizeKernel");
}

}  // namespace

const VariantOps kVectorizedOps = {Absmax, Quant, Dequant};

}  // namespace kvq::cuda::study::internal
