// Conversions between FP16 / BF16 bit patterns and float, exact IEEE-754.
//
// Widening (FP16 or BF16 -> float) is exact for every input, NaN payloads and
// signs included. Narrowing (float -> FP16 or BF16) rounds to nearest, ties to
// even, overflows to +-Inf, keeps subnormals (no flush to zero) and turns NaN
// into a quiet NaN of the same sign. For every non-NaN input that is exactly
// what the F16C instructions and CUDA's __float2half_rn / __float2bfloat16_rn
// compute, so host and device produce the same bytes (NaN payloads may differ;
// kvq never converts a NaN: non-finite input is refused).
//
// The functions are branch-free (selects only) so that loops over them
// vectorize, and are marked host+device so that CUDA code may share them.
// Values are passed as raw bit patterns (uint16_t) to keep this header free
// of any half-precision type.

#ifndef KVQ_KERNELS_FLOAT_CONVERT_H_
#define KVQ_KERNELS_FLOAT_CONVERT_H_

#include <cstdint>
#include <cstring>

#ifndef KVQ_HOST_DEVICE
#if defined(__CUDACC__)
#define KVQ_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define KVQ_HOST_DEVICE inline
#endif
#endif

namespace kvq {

KVQ_HOST_DEVICE uint32_t FloatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

KVQ_HOST_DEVICE float BitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// FP16 -> float, exact. Shifting the exponent and mantissa into float
// position and multiplying by 2^112 re-biases the exponent (15 -> 127) and
// normalizes subnormals in one exact multiplication; Inf and NaN (exponent
// all ones) are patched with a select.
KVQ_HOST_DEVICE float HalfToFloat(uint16_t h) {
  const uint32_t magnitude = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const float scaled = BitsToFloat(magnitude) * 0x1p112f;
  const uint32_t finite = FloatBits(scaled);
  const uint32_t special = magnitude | 0x7f800000u;  // Inf, or NaN w/ payload
  const bool is_special = (h & 0x7c00u) == 0x7c00u;
  return BitsToFloat((is_special ? special : finite) | sign);
}

// float -> FP16, round to nearest even. After F. Giesen's
// float_to_half_fast3_rtne, with selects instead of branches.
KVQ_HOST_DEVICE uint16_t FloatToHalf(float f) {
  constexpr uint32_t kF32Inf = 255u << 23;
  constexpr uint32_t kF16Overflow = (127u + 16u) << 23;  // 65536.0f
  constexpr uint32_t kF16MinNormal = 113u << 23;         // 2^-14
  // 0.5f: adding it to a value below 2^-14 leaves the FP16 subnormal
  // mantissa, rounded half-even by the FPU, in the low bits.
  constexpr uint32_t kDenormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;

  uint32_t u = FloatBits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;

  const uint32_t big = u > kF32Inf ? 0x7e00u : 0x7c00u;  // NaN : Inf
  const uint32_t sub =
      FloatBits(BitsToFloat(u) + BitsToFloat(kDenormMagic)) - kDenormMagic;
  const uint32_t mant_odd = (u >> 13) & 1u;
  const uint32_t normal =
      (u + (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + mant_odd) >> 13;

  uint32_t out = u < kF16MinNormal ? sub : normal;
  out = u >= kF16Overflow ? big : out;
  return static_cast<uint16_t>(out | (sign >> 16));
}

// BF16 -> float, exact: BF16 is the top half of a float.
KVQ_HOST_DEVICE float Bf16ToFloat(uint16_t b) {
  return BitsToFloat(static_cast<uint32_t>(b) << 16);
}

// float -> BF16, round to nearest even; NaN stays a (quiet) NaN.
KVQ_HOST_DEVICE uint16_t FloatToBf16(float f) {
  const uint32_t u = FloatBits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x0040u;
  const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(is_nan ? nan : rounded);
}

}  // namespace kvq

#endif  // KVQ_KERNELS_FLOAT_CONVERT_H_
