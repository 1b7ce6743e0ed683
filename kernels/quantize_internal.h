// Internal to kvq_kernels: the element types a block can hold, as traits the
// quantize templates are written against, and the one place that dispatches
// a runtime DType to them. Not a public header.

#ifndef KVQ_KERNELS_QUANTIZE_INTERNAL_H_
#define KVQ_KERNELS_QUANTIZE_INTERNAL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/float_convert.h"
#include "kernels/format.h"

namespace kvq::internal {

// Each element type names how it is stored in memory (Storage), the integer
// type of its magnitude bits (AbsBits, signed and wide enough that masked
// magnitudes compare as non-negative integers, in the same order as the
// values they encode), and the exact conversions to and from float.
struct Fp16Element {
  using Storage = uint16_t;
  using AbsBits = int16_t;
  static constexpr AbsBits kInfBits = 0x7c00;  // magnitudes >= are Inf/NaN
  static AbsBits Abs(Storage s) { return static_cast<AbsBits>(s & 0x7fff); }
  static float AbsToFloat(AbsBits a) {
    return HalfToFloat(static_cast<uint16_t>(a));
  }
  static float ToFloat(Storage s) { return HalfToFloat(s); }
  static Storage FromFloat(float f) { return FloatToHalf(f); }
};

struct Bf16Element {
  using Storage = uint16_t;
  using AbsBits = int16_t;
  static constexpr AbsBits kInfBits = 0x7f80;
  static AbsBits Abs(Storage s) { return static_cast<AbsBits>(s & 0x7fff); }
  static float AbsToFloat(AbsBits a) {
    return Bf16ToFloat(static_cast<uint16_t>(a));
  }
  static float ToFloat(Storage s) { return Bf16ToFloat(s); }
  static Storage FromFloat(float f) { return FloatToBf16(f); }
};

struct Fp32Element {
  using Storage = float;
  using AbsBits = int32_t;
  static constexpr AbsBits kInfBits = 0x7f800000;
  static AbsBits Abs(Storage s) {
    return static_cast<AbsBits>(FloatBits(s) & 0x7fffffffu);
  }
  static float AbsToFloat(AbsBits a) {
    return BitsToFloat(static_cast<uint32_t>(a));
  }
  static float ToFloat(Storage s) { return s; }
  static Storage FromFloat(float f) { return f; }
};

// Calls fn(Element{}) with the traits of `dtype`. The only switch over DType
// in the quantize code.
template <typename Fn>
decltype(auto) VisitDType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFp16:
      return fn(Fp16Element{});
    case DType::kBf16:
      return fn(Bf16Element{});
    case DType::kFp32:
      break;
  }
  return fn(Fp32Element{});
}

// INVALID_ARGUMENT for a non-finite value `x` at element index `i`, e.g.
// "data[1234] is NaN". Shared so that every path words it the same.
absl::Status NonFiniteError(uint64_t i, float x);

// absl::InvalidArgumentError for a dtype value outside the enum.
absl::Status CheckDType(DType dtype);

}  // namespace kvq::internal

#endif  // KVQ_KERNELS_QUANTIZE_INTERNAL_H_
