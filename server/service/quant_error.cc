#include "server/service/quant_error.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/float_convert.h"

namespace kvq {
namespace {

float ValueAt(DType dtype, const std::byte* base, size_t i) {
  switch (dtype) {
    case DType::kFp16:
    case DType::kBf16: {
      uint16_t bits;
      std::memcpy(&bits, base + 2 * i, sizeof bits);
      return dtype == DType::kFp16 ? HalfToFloat(bits) : Bf16ToFloat(bits);
    }
    case DType::kFp32: {
      float value;
      std::memcpy(&value, base + 4 * i, sizeof value);
      return value;
    }
  }
  return 0;
}

}  // namespace

double RelativeL2Error(DType dtype, std::span<const std::byte> x,
                       std::span<const std::byte> y) {
  const size_t n = std::min(x.size(), y.size()) / DTypeBytes(dtype);
  double diff = 0;
  double norm = 0;
  for (size_t i = 0; i < n; ++i) {
    const double a = ValueAt(dtype, x.data(), i);
    const double b = ValueAt(dtype, y.data(), i);
    diff += (a - b) * (a - b);
    norm += a * a;
  }
  if (norm == 0) {
    return diff == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  }
  return std::sqrt(diff / norm);
}

}  // namespace kvq
