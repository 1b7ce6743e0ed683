// Specification of kernels/float_convert.h: exact widening, and narrowing by
// round-to-nearest-even checked against an independent definition (the
// nearest of all representable values, computed by search).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/float_convert.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq {
namespace {

using kvq::testing::SeededTest;

// Value of an FP16 bit pattern from its definition.
double HalfValue(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  if (exponent == 31) {
    return mantissa ? std::numeric_limits<double>::quiet_NaN()
                    : sign * std::numeric_limits<double>::infinity();
  }
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// Nearest of the sorted finite non-negative values `table` (bit pattern =
// index) to |x|, ties to the even pattern, or the overflow pattern.
uint16_t NearestByTable(const std::vector<double>& table, double x,
                        double overflow_at, uint16_t inf_bits,
                        uint16_t sign_bit) {
  const uint16_t sign = std::signbit(x) ? sign_bit : 0;
  const double a = std::fabs(x);
  if (a >= overflow_at) return sign | inf_bits;
  auto hi = std::lower_bound(table.begin(), table.end(), a);
  if (hi == table.end()) {  // above the largest finite, below overflow
    return sign | static_cast<uint16_t>(table.size() - 1);
  }
  if (*hi == a || hi == table.begin()) {
    return sign | static_cast<uint16_t>(hi - table.begin());
  }
  auto lo = hi - 1;
  const double dlo = a - *lo, dhi = *hi - a;
  uint16_t pick;
  if (dlo < dhi) {
    pick = static_cast<uint16_t>(lo - table.begin());
  } else if (dhi < dlo) {
    pick = static_cast<uint16_t>(hi - table.begin());
  } else {
    pick = static_cast<uint16_t>(lo - table.begin());
    if (pick & 1) ++pick;
  }
  return sign | pick;
}

std::vector<double> HalfTable() {
  std::vector<double> t;
  for (uint32_t h = 0; h < 0x7c00; ++h) t.push_back(HalfValue(h));
  return t;
}

std::vector<double> Bf16Table() {
  std::vector<double> t;
  for (uint32_t b = 0; b < 0x7f80; ++b) t.push_back(Bf16ToFloat(b));
  return t;
}

TEST(FloatConvert, HalfToFloatIsExactForEveryPattern) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    const double want = HalfValue(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      // The payload is kept: narrowing gives the same NaN class back.
      ASSERT_EQ(FloatBits(f) >> 31, h >> 15) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h >> 15) != 0) << std::hex << h;
    }
  }
}

TEST(FloatConvert, NarrowingAWidenedValueGivesItBack) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    const bool half_nan = (bits & 0x7c00) == 0x7c00 && (bits & 0x3ff);
    const bool bf16_nan = (bits & 0x7f80) == 0x7f80 && (bits & 0x7f);
    if (half_nan) {
      const uint16_t back = FloatToHalf(HalfToFloat(bits));
      ASSERT_TRUE((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) << std::hex << b;
    } else {
      ASSERT_EQ(FloatToHalf(HalfToFloat(bits)), bits) << std::hex << b;
    }
    if (bf16_nan) {
      const uint16_t back = FloatToBf16(Bf16ToFloat(bits));
      ASSERT_TRUE((back & 0x7f80) == 0x7f80 && (back & 0x7f)) << std::hex << b;
    } else {
      ASSERT_EQ(FloatToBf16(Bf16ToFloat(bits)), bits) << std::hex << b;
    }
  }
}

class FloatConvertTest : public SeededTest {};

TEST_F(FloatConvertTest,
       FloatToHalfRoundsToNearestEvenIncludingTiesAndOverflow) {
  const std::vector<double> table = HalfTable();
  // 65504 + half its ulp (16) is where rounding reaches Inf.
  const double overflow_at = 65520.0;
  auto check = [&](float x) {
    ASSERT_EQ(FloatToHalf(x),
              NearestByTable(table, x, overflow_at, 0x7c00, 0x8000))
        << "x=" << x << " bits=" << std::hex << FloatBits(x);
  };
  // Every exact midpoint between neighbours (and a float either side).
  for (uint32_t h = 0; h + 1 < 0x7c00; ++h) {
    const float mid = static_cast<float>((table[h] + table[h + 1]) / 2);
    ASSERT_EQ(static_cast<double>(mid), (table[h] + table[h + 1]) / 2);
    for (float x :
         {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      check(x);
      check(-x);
    }
  }
  check(65519.99f);
  check(65520.0f);
  check(1e9f);
  check(std::numeric_limits<float>::infinity());
  check(std::numeric_limits<float>::denorm_min());
  // Random floats over the whole range.
  std::uniform_int_distribution<uint32_t> bits(0, 0x7f7fffff);
  for (int i = 0; i < 200000; ++i) {
    float x = BitsToFloat(bits(rng_));
    if (i % 2) x = std::ldexp(1.0f + (x - std::floor(x)), -30 + i % 50);
    check((i & 4) ? -x : x);
  }
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::quiet_NaN()) & 0x7e00,
            0x7e00);
}

TEST_F(FloatConvertTest,
       FloatToBf16RoundsToNearestEvenIncludingTiesAndOverflow) {
  const std::vector<double> table = Bf16Table();
  // Largest finite bf16 plus half its ulp.
  const double overflow_at = table.back() + std::ldexp(1.0, 127 - 8);
  auto check = [&](float x) {
    ASSERT_EQ(FloatToBf16(x),
              NearestByTable(table, x, overflow_at, 0x7f80, 0x8000))
        << "x=" << x << " bits=" << std::hex << FloatBits(x);
  };
  std::uniform_int_distribution<uint32_t> pattern(0, 0x7f7e);
  for (int i = 0; i < 20000; ++i) {
    const uint32_t b = pattern(rng_);
    const float mid = static_cast<float>((table[b] + table[b + 1]) / 2);
    for (float x :
         {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e38f)}) {
      check(x);
      check(-x);
    }
  }
  std::uniform_int_distribution<uint32_t> bits(0, 0x7f7fffff);
  for (int i = 0; i < 200000; ++i) {
    const float x = BitsToFloat(bits(rng_));
    check((i & 1) ? -x : x);
  }
  check(std::numeric_limits<float>::max());
  check(std::numeric_limits<float>::infinity());
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::quiet_NaN()) & 0x7fc0,
            0x7fc0);
  // A signalling NaN must not round into Inf.
  EXPECT_NE(FloatToBf16(BitsToFloat(0x7f800001u)), 0x7f80);
}

}  // namespace
}  // namespace kvq
