#include "client/element_codec.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvq::wire {
namespace {

static_assert(
    std::endian::native == std::endian::little,
    "kvq's wire format is little-endian; so is every host it targets");

void StoreU16(uint16_t bits, char* out) { std::memcpy(out, &bits, 2); }

uint16_t LoadU16(const char* in) {
  uint16_t bits;
  std::memcpy(&bits, in, 2);
  return bits;
}

}  // namespace

size_t ElementBytes(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FP16:
    case v1::DTYPE_BF16:
      return 2;
    case v1::DTYPE_FP32:
      return 4;
    default:
      return 0;
  }
}

std::string_view DTypeName(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FP16:
      return "fp16";
    case v1::DTYPE_BF16:
      return "bf16";
    case v1::DTYPE_FP32:
      return "fp32";
    default:
      return "unspecified";
  }
}

absl::StatusOr<v1::DType> ParseDType(std::string_view name) {
  if (name == "fp16") return v1::DTYPE_FP16;
  if (name == "bf16") return v1::DTYPE_BF16;
  if (name == "fp32") return v1::DTYPE_FP32;
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype must be fp16, bf16 or fp32, got \"", std::string(name), "\""));
}

uint16_t FloatToFp16Bits(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;  // NaN stays (quiet) NaN
  // 65520 (0x477ff000) is halfway between 65504 and 2^16: ties-to-even rounds
  // it, and everything above, to infinity.
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;
  if (magnitude >= 0x38800000u) {  // a normal half (>= 2^-14)
    // Round the 13 dropped mantissa bits to nearest even, then rebias the
    // exponent from 127 to 15.
    magnitude += 0xfffu + ((magnitude >> 13) & 1u);
    return sign | static_cast<uint16_t>((magnitude - 0x38000000u) >> 13);
  }
  // A subnormal half (or zero): adding 0.5f aligns the value so that the FPU's
  // own round-to-nearest-even drops exactly the bits below 2^-24.
  const float aligned = std::bit_cast<float>(magnitude) + 0.5f;
  return sign |
         static_cast<uint16_t>(std::bit_cast<uint32_t>(aligned) - 0x3f000000u);
}

float Fp16BitsToFloat(uint16_t bits) {
  const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) |
                              (mantissa << 13));
}

uint16_t FloatToBf16Bits(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  }
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float Bf16BitsToFloat(uint16_t bits) {
  return std::bit_cast<float>(uint32_t{bits} << 16);
}

std::string EncodeFloats(v1::DType dtype, std::span<const float> values) {
  const size_t width = ElementBytes(dtype);
  std::string out(values.size() * width, '\0');
  char* p = out.data();
  switch (dtype) {
    case v1::DTYPE_FP16:
      for (float v : values) StoreU16(FloatToFp16Bits(v), p), p += 2;
      break;
    case v1::DTYPE_BF16:
      for (float v : values) StoreU16(FloatToBf16Bits(v), p), p += 2;
      break;
    case v1::DTYPE_FP32:
      std::memcpy(p, values.data(), values.size() * 4);
      break;
    default:
      break;
  }
  return out;
}

absl::StatusOr<std::vector<float>> DecodeFloats(v1::DType dtype,
                                                std::string_view bytes) {
  const size_t width = ElementBytes(dtype);
  if (width == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype ", static_cast<int>(dtype), " has no element size"));
  }
  if (bytes.size() % width != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(bytes.size(), " bytes are not a whole number of ",
                     std::string(DTypeName(dtype)), " elements"));
  }
  std::vector<float> out(bytes.size() / width);
  const char* p = bytes.data();
  switch (dtype) {
    case v1::DTYPE_FP16:
      for (float& v : out) v = Fp16BitsToFloat(LoadU16(p)), p += 2;
      break;
    case v1::DTYPE_BF16:
      for (float& v : out) v = Bf16BitsToFloat(LoadU16(p)), p += 2;
      break;
    default:
      std::memcpy(out.data(), p, bytes.size());
      break;
  }
  return out;
}

}  // namespace kvq::wire
