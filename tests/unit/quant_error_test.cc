// The quality figure: ErrorSums and RelativeL2Error are the sums of squares
// of the difference and of the input, over every value, whatever the dtype,
// and the same sums every time for the same input.

#include "kernels/quant_error.h"

#include <cmath>
#include <cstddef>
#include <random>
#include <span>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq {
namespace {

using ::kvq::testing::HostBlock;
using ::kvq::testing::kAllDTypes;
using ::kvq::testing::SeededTest;

std::span<const std::byte> Bytes(const HostBlock& block) {
  return {reinterpret_cast<const std::byte*>(block.data()),
          block.bytes().size()};
}

class QuantErrorTest : public SeededTest {
 protected:
  // n values in [-1, 1], rounded to `dtype`.
  HostBlock Random(DType dtype, uint64_t n) {
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    HostBlock block(dtype, n);
    for (uint64_t i = 0; i < n; ++i) block.Set(i, unit(rng_));
    return block;
  }
  uint64_t Count(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
};

TEST_F(QuantErrorTest, SumsAreOverEveryValueAsASerialLoopInDoubleGivesThem) {
  for (DType dtype : kAllDTypes) {
    // Past several of the parallel sums' ranges, and not a multiple of them.
    const uint64_t n = Count(200000, 400000);
    const HostBlock x = Random(dtype, n);
    const HostBlock y = Random(dtype, n);
    double diff = 0, norm = 0;
    for (uint64_t i = 0; i < n; ++i) {
      const double a = x.Get(i), b = y.Get(i);
      diff += (a - b) * (a - b);
      norm += a * a;
    }
    const ErrorSums sums = SumSquaredError(dtype, x.data(), y.data(), n);
    // Only the order of the additions differs.
    EXPECT_NEAR(sums.diff, diff, 1e-12 * diff) << DTypeName(dtype);
    EXPECT_NEAR(sums.norm, norm, 1e-12 * norm) << DTypeName(dtype);
    EXPECT_NEAR(RelativeL2Error(dtype, Bytes(x), Bytes(y)),
                std::sqrt(diff / norm), 1e-12)
        << DTypeName(dtype);
  }
}

TEST_F(QuantErrorTest, SameInputGivesBitwiseTheSameSums) {
  const uint64_t n = Count(100000, 300000);
  const HostBlock x = Random(DType::kBf16, n);
  const HostBlock y = Random(DType::kBf16, n);
  const ErrorSums first = SumSquaredError(DType::kBf16, x.data(), y.data(), n);
  for (int i = 0; i < 5; ++i) {
    const ErrorSums again =
        SumSquaredError(DType::kBf16, x.data(), y.data(), n);
    EXPECT_EQ(again.diff, first.diff);
    EXPECT_EQ(again.norm, first.norm);
  }
}

TEST_F(QuantErrorTest, IdenticalBlocksHaveNoError) {
  for (DType dtype : kAllDTypes) {
    const HostBlock x = Random(dtype, Count(1, 500));
    EXPECT_EQ(RelativeL2Error(dtype, Bytes(x), Bytes(x)), 0.0);
  }
}

TEST_F(QuantErrorTest, IsTheNormOfTheDifferenceOverTheNormOfTheInput) {
  // x = (3, 4) has norm 5; y = (3, 4 + d) differs by d.
  const float d = static_cast<float>(Count(1, 8)) / 8;  // exact in binary
  HostBlock x(DType::kFp32, 2), y(DType::kFp32, 2);
  x.Set(0, 3);
  x.Set(1, 4);
  y.Set(0, 3);
  y.Set(1, 4 + d);
  EXPECT_DOUBLE_EQ(RelativeL2Error(DType::kFp32, Bytes(x), Bytes(y)), d / 5.0);
}

TEST_F(QuantErrorTest, AllZeroInputGivesZeroOrInfinity) {
  HostBlock zeros(DType::kFp16, 3), other(DType::kFp16, 3);
  for (int i = 0; i < 3; ++i) {
    zeros.Set(i, 0);
    other.Set(i, i == 1 ? 1.0f : 0.0f);
  }
  EXPECT_EQ(RelativeL2Error(DType::kFp16, Bytes(zeros), Bytes(zeros)), 0.0);
  EXPECT_TRUE(
      std::isinf(RelativeL2Error(DType::kFp16, Bytes(zeros), Bytes(other))));
  EXPECT_EQ((ErrorSums{0, 0}).RelativeL2(), 0.0);
}

}  // namespace
}  // namespace kvq
