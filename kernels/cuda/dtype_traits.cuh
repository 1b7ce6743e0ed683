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
#include <type_traits>

#include "kernels/format.h"

namespace kvq::cuda::internal {

// Element types as raw bits: the kernels move and compare the bit patterns
// and convert with the hardware instructions below (library half / bfloat16
// types add inline-asm moves that cost registers in unrolled loops).
struct Fp16 {
  uint16_t bits;
};
struct Bf16 {
  uint16_t bits;
};
using Fp32 = float;

__device__ __forceinline__ float ToFloat(Fp32 x) { return x; }
__device__ __forceinline__ float ToFloat(Fp16 x) {
  return __half2float(__ushort_as_half(x.bits));
}
__device__ __forceinline__ float ToFloat(Bf16 x) {
  return __uint_as_float(uint32_t{x.bits} << 16);  // exact: BF16 is a float's top half
}

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ Fp32 FromFloat<Fp32>(float x) {
  return x;
}
template <>
__device__ __forceinline__ Fp16 FromFloat<Fp16>(float x) {
  return Fp16{__half_as_ushort(__float2half_rn(x))};
}
template <>
__device__ __forceinline__ Bf16 FromFloat<Bf16>(float x) {
  return Bf16{__bfloat16_as_ushort(__float2bfloat16_rn(x))};
}

// Elements per 16-byte vector.
template <typename T>
inline constexpr int kFullVec = static_cast<int>(16 / sizeof(T));

template <typename T>
inline constexpr bool kIs16Bit = std::is_same_v<T, Fp16> || std::is_same_v<T, Bf16>;

// kN consecutive elements, aligned to their size so that a load or store of
// one is a single 2/4/8/16-byte access. Read elements with Get(), build a
// vector of floats with Pack().
template <typename T, int kN>
struct alignas(sizeof(T) * kN) Vec {
  T v[kN];
};

// An even number of 16-bit elements is kept as 32-bit words, two elements
// each (element 2i in the low half), so that registers stay packed and
// conversions work on whole words.
template <typename T, int kN>
  requires(kIs16Bit<T> && kN % 2 == 0)
struct alignas(2 * kN) Vec<T, kN> {
  uint32_t w[kN / 2];
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
  if constexpr (kIs16Bit<T> && kN % 2 == 0) {
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) x.w[i] = 0;
  } else {
#pragma unroll
    for (int e = 0; e < kN; ++e) x.v[e] = T{};  // all bits zero: +0
  }
  return x;
}

// Element e as a float (exact).
template <typename T, int kN>
__device__ __forceinline__ float Get(const Vec<T, kN>& x, int e) {
  if constexpr (kIs16Bit<T> && kN % 2 == 0) {
    const uint32_t word = x.w[e / 2];
    if constexpr (std::is_same_v<T, Bf16>) {
      return __uint_as_float(e % 2 == 0 ? word << 16 : word & 0xffff0000u);
    } else {
      return __half2float(__ushort_as_half(
          static_cast<unsigned short>(e % 2 == 0 ? word : word >> 16)));
    }
  } else {
    return ToFloat(x.v[e]);
  }
}

// kN floats rounded to T (nearest even).
template <typename T, int kN>
__device__ __forceinline__ Vec<T, kN> Pack(const float* f) {
  Vec<T, kN> x;
  if constexpr (kIs16Bit<T> && kN % 2 == 0) {
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) {
      if constexpr (std::is_same_v<T, Bf16>) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        x.w[i] = *reinterpret_cast<const uint32_t*>(&pair);
      } else {
        const __half2 pair = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
        x.w[i] = *reinterpret_cast<const uint32_t*>(&pair);
      }
    }
  } else {
#pragma unroll
    for (int e = 0; e < kN; ++e) x.v[e] = FromFloat<T>(f[e]);
  }
  return x;
}

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_DTYPE_TRAITS_CUH_
