#include "kernels/quant_error.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/float_convert.h"
#include "kernels/parallel.h"

namespace kvq {
namespace {

// Values per range of the parallel sums: large enough that a range costs
// far more than handing it to a worker.
constexpr size_t kRangeValues = size_t{1} << 16;

template <typename Bits, float (*kToFloat)(Bits)>
ErrorSums SumRange(const void* x, const void* y, size_t begin, size_t end) {
  ErrorSums sums;
  const auto* xs = static_cast<const unsigned char*>(x);
  const auto* ys = static_cast<const unsigned char*>(y);
  for (size_t i = begin; i < end; ++i) {
    Bits a_bits, b_bits;
    std::memcpy(&a_bits, xs + i * sizeof(Bits), sizeof(Bits));
    std::memcpy(&b_bits, ys + i * sizeof(Bits), sizeof(Bits));
    const double a = kToFloat(a_bits);
    const double b = kToFloat(b_bits);
    sums.diff += (a - b) * (a - b);
    sums.norm += a * a;
  }
  return sums;
}

float Fp32Identity(float v) { return v; }

template <typename Bits, float (*kToFloat)(Bits)>
ErrorSums SumAll(const void* x, const void* y, size_t n) {
  std::vector<ErrorSums> ranges((n + kRangeValues - 1) / kRangeValues);
  ParallelFor(n, kRangeValues, [&](size_t begin, size_t end) {
    ranges[begin / kRangeValues] =
        SumRange<Bits, kToFloat>(x, y, begin, end);
  });
  ErrorSums total;
  for (const ErrorSums& r : ranges) {
    total.diff += r.diff;
    total.norm += r.norm;
  }
  return total;
}

}  // namespace

double ErrorSums::RelativeL2() const {
  if (norm == 0) {
    return diff == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  }
  return std::sqrt(diff / norm);
}

ErrorSums SumSquaredError(DType dtype, const void* x, const void* y,
                          size_t n) {
  switch (dtype) {
    case DType::kFp16:
      return SumAll<uint16_t, HalfToFloat>(x, y, n);
    case DType::kBf16:
      return SumAll<uint16_t, Bf16ToFloat>(x, y, n);
    case DType::kFp32:
      return SumAll<float, Fp32Identity>(x, y, n);
  }
  return {};
}

double RelativeL2Error(DType dtype, std::span<const std::byte> x,
                       std::span<const std::byte> y) {
  const size_t n = std::min(x.size(), y.size()) / DTypeBytes(dtype);
  return SumSquaredError(dtype, x.data(), y.data(), n).RelativeL2();
}

}  // namespace kvq
