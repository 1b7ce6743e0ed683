// The arithmetic of INT8 symmetric quantization, shared by every kernel.
//
// CPU reference, CPU fast path and CUDA kernels all call these functions, so
// that every backend produces the same bytes: each step is a single IEEE-754
// operation (division, multiplication, round-half-even) that C++ on the host
// and CUDA on the device both compute exactly, as long as neither is built
// with fast-math (which kvq never is). absmax is order-independent, so any
// reduction order gives the same scale. The CUDA kernels read each int8 out of
// the rounded float's bits (ClampRoundBits) instead of converting it, and
// build each dequantized int8's float from its bits (Int8ToFloat); the unit
// tests check both against the conversions, for every float and every int8.

#ifndef KVQ_KERNELS_QUANT_MATH_H_
#define KVQ_KERNELS_QUANT_MATH_H_

#include <cstdint>

#include "kernels/float_convert.h"

#ifndef KVQ_HOST_DEVICE
#if defined(__CUDACC__)
#define KVQ_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define KVQ_HOST_DEVICE inline
#endif
#endif

namespace kvq {

inline constexpr float kQMax = 127.0f;
// Smallest normal float: scales below it are subnormal, and 1 / scale would
// overflow, so those groups divide instead of multiplying by the reciprocal.
inline constexpr float kMinNormalScale = 1.17549435e-38f;

// Scale of a group whose largest magnitude is `absmax` (0 for an all-zero
// group).
KVQ_HOST_DEVICE float ScaleFromAbsmax(float absmax) { return absmax / kQMax; }

// Multiplier used by QuantizeValue; 0 when the scale is zero or subnormal.
KVQ_HOST_DEVICE float InverseScale(float scale) {
  return scale >= kMinNormalScale ? 1.0f / scale : 0.0f;
}

// 1.5 * 2^23: adding it to a float of magnitude <= 2^22 leaves a sum in
// [2^23, 2^24), where floats are exactly the integers, so the addition rounds
// to an integer (half-to-even: the offset is even).
inline constexpr float kRoundingOffset = 12582912.0f;

// v clamped to [-127, 127] (NaN passes through), plus kRoundingOffset.
KVQ_HOST_DEVICE float ClampPlusOffset(float v) {
  v = v > kQMax ? kQMax : v;
  v = v < -kQMax ? -kQMax : v;
  return v + kRoundingOffset;
}

// v clamped to [-127, 127] and rounded half-to-even, as a float.
// Clamping before rounding equals rounding before clamping because the bounds
// are integers; adding and subtracting 1.5 * 2^23 rounds half-to-even for any
// |v| <= 2^22 (in the current rounding mode, which is nearest-even) and
// vectorizes where rint() would not. The clamp sits between the product that
// computed v and the addition, so no compiler can fuse them into an FMA.
KVQ_HOST_DEVICE float ClampRound(float v) {
  return ClampPlusOffset(v) - kRoundingOffset;
}

// static_cast<int8_t>(ClampRound(v)) in the low byte, with neither the
// subtraction nor a float -> int conversion (a quarter-rate instruction on
// GPUs): ClampPlusOffset(v) = 1.5 * 2^23 + r, r = ClampRound(v) in
// [-127, 127], lies in [2^23, 2^24), so its mantissa field is 2^22 + r, and
// as 256 divides 2^22 its low 8 bits are r in two's complement. The upper 24
// bits are not part of the result: keep the low byte (a cast to int8_t,
// PackLowBytes). Unspecified for NaN v.
KVQ_HOST_DEVICE uint32_t ClampRoundBits(float v) {
  return FloatBits(ClampPlusOffset(v));
}

// ClampRoundBits(v) without the clamp: the same bits for |v| < 127.5, which
// every value of a group meets against the group's own normal scale. With
// a = the group's absmax, s = ScaleFromAbsmax(a) normal and
// inv = InverseScale(s), each rounding is within a factor (1 + 2^-24), so
//   |x| * inv <= a * inv <= 127 * (1 + 2^-24)^2 / (1 - 2^-24) < 127.0001
// for every |x| <= a; multiplication is monotone, so x = a is the worst case
// (the unit tests check it for every mantissa of a and every exponent).
// Kernels that quantize a group with the scale they derived from it use it
// (their fast path is issue-bound: the clamp was 2 of its ~6 operations per
// value); where scales come from elsewhere, only ClampRoundBits is right.
KVQ_HOST_DEVICE uint32_t RoundBits(float v) {
  return FloatBits(v + kRoundingOffset);
}

// x / scale rounded half-to-even and clamped to [-127, 127], as a float.
// Fast paths may hoist the branch out of a group's loop: for a zero scale
// (inv_scale == 0) ClampRound(x * inv_scale) is also 0 for finite x, so only a
// subnormal, non-zero scale needs the division.
KVQ_HOST_DEVICE float QuantizeToFloat(float x, float scale, float inv_scale) {
  float v;
  if (inv_scale != 0.0f) {
    v = x * inv_scale;
  } else if (scale != 0.0f) {
    v = x / scale;  // subnormal scale: the reciprocal would overflow
  } else {
    return 0.0f;  // all-zero group (or one too small to represent)
  }
  return ClampRound(v);
}

KVQ_HOST_DEVICE int8_t QuantizeValue(float x, float scale, float inv_scale) {
  return static_cast<int8_t>(QuantizeToFloat(x, scale, inv_scale));
}

// QuantizeValue(x, scale, inv_scale) in the low byte (see ClampRoundBits)
// for every x but NaN; the upper 24 bits are not part of the result.
KVQ_HOST_DEVICE uint32_t QuantizeBits(float x, float scale, float inv_scale) {
  if (inv_scale != 0.0f) return ClampRoundBits(x * inv_scale);
  if (scale != 0.0f) return ClampRoundBits(x / scale);
  return 0;
}

// PRMT on the device (__byte_perm): byte n of the result is byte
// (s >> 4n) & 7 of the eight bytes y:x (x's low byte is byte 0). The host
// version is the same definition, so the selectors used with it can be
// tested on the host.
KVQ_HOST_DEVICE uint32_t BytePerm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t bytes = uint64_t{y} << 32 | x;
  uint32_t r = 0;
  for (int n = 0; n < 4; ++n) {
    const uint32_t pick = (s >> (4 * n)) & 7u;
    r |= static_cast<uint32_t>((bytes >> (8 * pick)) & 0xffu) << (8 * n);
  }
  return r;
#endif
}

// The low bytes of b0..b3 as one little-endian word (b0 first in memory):
// four int8 results stored with one 32-bit store, in three PRMTs.
KVQ_HOST_DEVICE uint32_t PackLowBytes(uint32_t b0, uint32_t b1, uint32_t b2,
                                      uint32_t b3) {
  return BytePerm(BytePerm(b0, b1, 0x0040u), BytePerm(b2, b3, 0x0040u),
                  0x5410u);
}

KVQ_HOST_DEVICE float DequantizeValue(int8_t q, float scale) {
  return static_cast<float>(q) * scale;
}

// int8 -> float without an int -> float conversion (I2F, quarter rate on
// GPUs), exactly: with the sign bit flipped, q's byte is b = q + 128 in
// [0, 255], and under the exponent of 1.5 * 2^23 (bits 0x4b400000 | b: the
// mantissa field is 2^22 + b) it is the float 1.5 * 2^23 + b; subtracting
// 1.5 * 2^23 + 128 is exact (both are integers below 2^24) and leaves q.
// Multiplying by the scale afterwards is DequantizeValue's one product, so
// the result is the same bits.
inline constexpr uint32_t kInt8FloatBits = 0x4b400000u;
inline constexpr float kInt8FloatOffset = 12583040.0f;  // 1.5 * 2^23 + 128

KVQ_HOST_DEVICE float Int8ToFloat(int8_t q) {
  return BitsToFloat(kInt8FloatBits |
                     (static_cast<uint32_t>(static_cast<uint8_t>(q)) ^ 0x80u)) -
         kInt8FloatOffset;
}

// Four int8 in a word (element k in byte k: memory order) with every sign bit
// flipped in one operation, for BiasedInt8ToFloat.
KVQ_HOST_DEVICE uint32_t BiasInt8x4(uint32_t word) {
  return word ^ 0x80808080u;
}

// Int8ToFloat of element k (0..3) of BiasInt8x4(word): one PRMT puts byte k
// under the upper three bytes of kInt8FloatBits.
KVQ_HOST_DEVICE float BiasedInt8ToFloat(uint32_t biased, int k) {
  return BitsToFloat(BytePerm(biased, kInt8FloatBits,
                              0x7650u + static_cast<uint32_t>(k))) -
         kInt8FloatOffset;
}

}  // namespace kvq

#endif  // KVQ_KERNELS_QUANT_MATH_H_
