// Element types on the device: FP16 / BF16 / FP32 <-> float, and aligned
// vectors of them for 16-byte (or narrower) loads and stores.
//
// Conversions are the exact hardware ones: widening to float is exact, and
// narrowing rounds to nearest even, which is what kernels/float_convert.h
// computes on the host for every non-NaN value, so CPU and GPU write the same
// bytes.

#ifndef KVQ_KERNELS_CUDA_DTYPE_TRAITS_CUH_
#define KVQ_KERNELS_CUDA_DTYPE_TRAITS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/format.h"

namespace kvq::cuda::internal {

using Fp16 = __half;
using Bf16 = __nv_bfloat16;
using Fp32 = float;

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(Fp16 x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(Bf16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ Fp16 FromFloat<Fp16>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ Bf16 FromFloat<Bf16>(float x) {
  return __float2bfloat16_rn(x);
}

// Elements per 16-byte vector.
template <typename T>
inline constexpr int kFullVec = static_cast<int>(16 / sizeof(T));

// kN consecutive elements, aligned to their size so that a load or store of
// one is a single 2/4/8/16-byte access.
template <typename T, int kN>
struct alignas(sizeof(T) * kN) Vec {
  T v[kN];
};

template <typename T, int kN>
__device__ __forceinline__ Vec<T, kN> LoadVec(const T* p) {
  return *reinterpret_cast<const Vec<T, kN>*>(p);
}

template <typename T, int kN>
__device__ __forceinline__ void StoreVec(T* p, const Vec<T, kN>& x) {
  *reinterpret_cast<Vec<T, kN>*>(p) = x;
}

template <typename T, int kN>
__device__ __forceinline__ Vec<T, kN> ZeroVec() {
  Vec<T, kN> x;
#pragma unroll
  for (int e = 0; e < kN; ++e) x.v[e] = FromFloat<T>(0.0f);
  return x;
}

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_DTYPE_TRAITS_CUH_
