#include "kernels/format.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace kvq {
namespace {

// Debian's Abseil is built with its own string_view, which StrCat takes but
// std::string_view does not convert to.
absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

absl::Status DimError(std::string_view field, uint64_t value, uint64_t max) {
  if (value == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(field), " must be >= 1, got 0"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(Sv(field), " must be <= ", max, ", got ", value));
}

}  // namespace

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFp16:
      return "fp16";
    case DType::kBf16:
      return "bf16";
    case DType::kFp32:
      return "fp32";
  }
  return "unknown";
}

std::string_view GranularityName(Granularity g) {
  switch (g) {
    case Granularity::kPerTokenHead:
      return "per_token_head";
    case Granularity::kPerChannel:
      return "per_channel";
    case Granularity::kPerTensor:
      return "per_tensor";
    case Granularity::kGroup:
      return "group";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  for (DType d : {DType::kFp16, DType::kBf16, DType::kFp32}) {
    if (name == DTypeName(d)) return d;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype must be one of fp16, bf16, fp32, got \"", Sv(name), "\""));
}

absl::StatusOr<Granularity> ParseGranularity(std::string_view name) {
  for (Granularity g : {Granularity::kPerTokenHead, Granularity::kPerChannel,
                        Granularity::kPerTensor, Granularity::kGroup}) {
    if (name == GranularityName(g)) return g;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "granularity must be one of per_token_head, per_channel, per_tensor, "
      "group, got \"",
      Sv(name), "\""));
}

absl::Status ValidateBlock(const BlockShape& shape, const QuantSpec& spec) {
  if (shape.planes == 0 || shape.planes > kMaxPlanes) {
    return DimError("shape.planes", shape.planes, kMaxPlanes);
  }
  if (shape.tokens == 0 || shape.tokens > kMaxTokens) {
    return DimError("shape.tokens", shape.tokens, kMaxTokens);
  }
  if (shape.heads == 0 || shape.heads > kMaxHeads) {
    return DimError("shape.heads", shape.heads, kMaxHeads);
  }
  if (shape.head_dim == 0 || shape.head_dim > kMaxHeadDim) {
    return DimError("shape.head_dim", shape.head_dim, kMaxHeadDim);
  }
  // Each dimension is below 2^20, so the product of any two fits in 64 bits,
  // and so does the product of all four (< 2^12+20+12+16 = 2^60).
  if (shape.elements() > kMaxElements) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shape (planes x tokens x heads x head_dim = ", shape.planes, " x ",
        shape.tokens, " x ", shape.heads, " x ", shape.head_dim, " = ",
        shape.elements(), " values) must hold <= ", kMaxElements, " values"));
  }
  if (spec.format != Format::kInt8Symmetric) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.format must be 1 (int8_symmetric), got ",
                     static_cast<int>(spec.format)));
  }
  switch (spec.granularity) {
    case Granularity::kPerTokenHead:
    case Granularity::kPerChannel:
    case Granularity::kPerTensor:
      if (spec.group_size != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "spec.group_size must be 0 unless spec.granularity is group, got ",
            spec.group_size, " with granularity ",
            Sv(GranularityName(spec.granularity))));
      }
      return absl::OkStatus();
    case Granularity::kGroup:
      if (spec.group_size == 0) {
        return absl::InvalidArgumentError(
            "spec.group_size must be >= 1 for granularity group, got 0");
      }
      if (shape.head_dim % spec.group_size != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.group_size must divide shape.head_dim (",
                         shape.head_dim, "), got ", spec.group_size));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "spec.granularity must be 1 (per_token_head), 2 (per_channel), "
      "3 (per_tensor) or 4 (group), got ",
      static_cast<int>(spec.granularity)));
}

absl::StatusOr<BlockLayout> MakeLayout(const BlockShape& shape,
                                       const QuantSpec& spec) {
  if (absl::Status s = ValidateBlock(shape, spec); !s.ok()) return s;
  BlockLayout layout;
  layout.shape = shape;
  layout.spec = spec;
  layout.elements = shape.elements();
  switch (spec.granularity) {
    case Granularity::kPerTokenHead:
      layout.group_values = shape.head_dim;
      break;
    case Granularity::kPerChannel:
      layout.group_values = shape.tokens;
      break;
    case Granularity::kPerTensor:
      layout.group_values = layout.elements / shape.planes;
      break;
    case Granularity::kGroup:
      layout.group_values = spec.group_size;
      break;
  }
  layout.groups = layout.elements / layout.group_values;
  layout.scales_offset = (layout.elements + 15) / 16 * 16;
  layout.payload_bytes = layout.scales_offset + sizeof(float) * layout.groups;
  return layout;
}

uint64_t BlockLayout::GroupOf(uint64_t i) const {
  switch (spec.granularity) {
    case Granularity::kPerTokenHead:
    case Granularity::kGroup:
      return i / group_values;
    case Granularity::kPerTensor:
      return i / group_values;  // one group per plane
    case Granularity::kPerChannel: {
      // i = ((p * tokens + t) * heads + h) * head_dim + d; the group is
      // (p, h, d), numbered p * heads * head_dim + h * head_dim + d.
      const uint64_t row = uint64_t{shape.heads} * shape.head_dim;
      const uint64_t plane_values = row * shape.tokens;
      return i / plane_values * row + i % row;
    }
  }
  return 0;
}

// Derivation of the bound. Let s be the stored scale (a float), u = 2^-24 the
// unit roundoff of float, and x a group value, so |x| <= absmax.
//
// 1. Quantizing. For a normal s, v = fl(x * fl(1 / s)) = (x / s)(1 + d) with
//    |d| <= 2u + u^2; for a subnormal s, v = fl(x / s) with |d| <= u.
//    (fl(1 / s) is never subnormal: s <= FLT_MAX / 127 < 2^122.)
//    If |v| <= 127, q = round(v) and |q - x / s| <= 1/2 + |x / s| |d|, so
//      |x - q s| <= s / 2 + |x| (2u + u^2).
//    If |v| > 127, q = +-127 and the error is |x| - 127 s <= absmax - 127 s
//    (or < 127 s |d| / (1 - |d|) when v overshot only through d, which is
//    inside the first case's term). s = fl(absmax / 127): for a normal s,
//    absmax - 127 s <= absmax u <= |x| u (1 + 2u) as |x| >= 127 s (1 - d);
//    for a subnormal or zero s the rounding is absolute, at most 2^-150, so
//    absmax - 127 s <= 127 * 2^-150.
// 2. Dequantizing. y = fl(q s) adds u |q s| <= u (|x| + s) for a normal
//    result, or at most 2^-150 (half the smallest subnormal) otherwise.
//
// Sum: |x - y| <= s / 2 + (3u + u^2)(|x| + s) + 128 * 2^-150.
// DequantErrorBound returns s / 2 + 4u (|x| + s) + 2^-142, evaluated in double
// (exact enough: its own rounding is covered by the slack in the 4u and 2^-142
// terms) and rounded up to the next float so the bound is never understated.
float DequantErrorBound(float x, float scale) {
  const double s = std::fabs(static_cast<double>(scale));
  const double ax = std::fabs(static_cast<double>(x));
  const double bound = s / 2 + 0x1p-22 * (ax + s) + 0x1p-142;
  float f = static_cast<float>(bound);
  if (static_cast<double>(f) < bound) {
    f = std::nextafter(f, std::numeric_limits<float>::infinity());
  }
  return f;
}

// The output conversion rounds y to nearest in `dtype`, adding at most half
// of its unit in the last place (ulp) at |y|. ulp grows with magnitude, so the
// ulp at any upper bound m of |y| is large enough. Two upper bounds hold:
// |y| <= |x| + base, and, since |q| <= 127, |y| = fl(|q| s) <= 127 s (1 + u)
// (+ 2^-150 for a subnormal result); the second keeps values at the top of
// the dtype's range (65504 in FP16) bounded. When m reaches the dtype's
// overflow threshold (largest finite + half an ulp) y might round to Inf: the
// bound is infinite, which a caller who checks BlockAbsmax() against
// DTypeMaxFinite() never meets.
float DequantErrorBound(float x, float scale, DType dtype) {
  const float base = DequantErrorBound(x, scale);
  const double s = std::fabs(static_cast<double>(scale));
  const double m = std::min(std::fabs(static_cast<double>(x)) + base,
                            127 * s * (1 + 0x1p-21) + 0x1p-142);
  int mantissa_bits;  // explicit fraction bits
  int min_exponent;   // exponent of the smallest normal
  int max_exponent;   // exponent of the largest finite value
  switch (dtype) {
    case DType::kFp16:
      mantissa_bits = 10;
      min_exponent = -14;
      max_exponent = 15;
      break;
    case DType::kBf16:
      mantissa_bits = 7;
      min_exponent = -126;
      max_exponent = 127;
      break;
    case DType::kFp32:
    default:
      mantissa_bits = 23;
      min_exponent = -126;
      max_exponent = 127;
      break;
  }
  // Largest finite + half its ulp: 2^(e+1) - 2^(e - mantissa_bits - 1).
  const double overflow = std::ldexp(1.0, max_exponent + 1) -
                          std::ldexp(1.0, max_exponent - mantissa_bits - 1);
  if (m >= overflow) return std::numeric_limits<float>::infinity();
  int exponent = m > 0 ? std::ilogb(m) : min_exponent;
  if (exponent < min_exponent) exponent = min_exponent;
  const double half_ulp = std::ldexp(1.0, exponent - mantissa_bits - 1);
  const double bound = static_cast<double>(base) + half_ulp;
  float f = static_cast<float>(bound);
  if (static_cast<double>(f) < bound) {
    f = std::nextafter(f, std::numeric_limits<float>::infinity());
  }
  return f;
}

}  // namespace kvq
