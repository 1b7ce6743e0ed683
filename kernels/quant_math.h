// The arithmetic of INT8 symmetric quantization, shared by every kernel.
//
// CPU reference, CPU fast path and CUDA kernels all call these functions, so
// that every backend produces the same bytes: each step is a single IEEE-754
// operation (division, multiplication, round-half-even) that C++ on the host
// and CUDA on the device both compute exactly, as long as neither is built
// with fast-math (which kvq never is). absmax is order-independent, so any
// reduction order gives the same scale.

#ifndef KVQ_KERNELS_QUANT_MATH_H_
#define KVQ_KERNELS_QUANT_MATH_H_

#include <cstdint>

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

// v clamped to [-127, 127] and rounded half-to-even, as a float.
// Clamping before rounding equals rounding before clamping because the bounds
// are integers; adding and subtracting 1.5 * 2^23 rounds half-to-even for any
// |v| <= 2^22 (in the current rounding mode, which is nearest-even) and
// vectorizes where rint() would not. The clamp sits between the product that
// computed v and the addition, so no compiler can fuse them into an FMA.
KVQ_HOST_DEVICE float ClampRound(float v) {
  v = v > kQMax ? kQMax : v;
  v = v < -kQMax ? -kQMax : v;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  return (v + kRound) - kRound;
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

KVQ_HOST_DEVICE float DequantizeValue(int8_t q, float scale) {
  return static_cast<float>(q) * scale;
}

}  // namespace kvq

#endif  // KVQ_KERNELS_QUANT_MATH_H_
