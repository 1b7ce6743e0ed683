// Specification of the bit-level helpers in kernels/quant_math.h that the
// CUDA kernels use instead of a float -> int conversion: ClampRoundBits'
// low byte is the int8 that ClampRound rounds to, for every float that is
// not NaN (checked exhaustively); QuantizeBits' low byte is QuantizeValue's
// result for every kind of scale; PackLowBytes puts four results in memory
// order, through the same byte permutations as the device's PRMT; and the
// int8 -> float conversion from bits (Int8ToFloat, BiasedInt8ToFloat) equals
// the cast for every int8, so dequantized floats keep DequantizeValue's bits;
// and RoundBits, the clamp-free rounding of a group by its own scale, gives
// ClampRoundBits' bits for the group's largest value at every magnitude.

#include "kernels/quant_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/float_convert.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq {
namespace {

using kvq::testing::SeededTest;

int8_t LowByte(uint32_t bits) { return static_cast<int8_t>(bits & 0xffu); }

// How many of the `count` bit patterns from `first` have a ClampRoundBits
// low byte other than static_cast<int8_t>(ClampRound(v)). Counts instead of
// asserting per value, in 32-bit runs the compiler vectorizes (with
// -fno-trapping-math, kernels.cmake), so that 2^32 patterns take seconds.
uint64_t CountLowByteMismatches(uint32_t first, uint64_t count) {
  constexpr uint32_t kRun = 1u << 20;
  uint64_t mismatches = 0;
  for (uint64_t done = 0; done < count; done += kRun) {
    const uint32_t begin = first + static_cast<uint32_t>(done);
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(kRun, count - done));
    uint32_t run_mismatches = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const float v = BitsToFloat(begin + i);
      run_mismatches += static_cast<int32_t>(LowByte(ClampRoundBits(v))) !=
                        static_cast<int32_t>(ClampRound(v));
    }
    mismatches += run_mismatches;
  }
  return mismatches;
}

// The first mismatching pattern from `first`, for the failure message.
uint32_t FirstLowByteMismatch(uint32_t first, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    const float v = BitsToFloat(first + static_cast<uint32_t>(i));
    if (LowByte(ClampRoundBits(v)) != static_cast<int8_t>(ClampRound(v))) {
      return first + static_cast<uint32_t>(i);
    }
  }
  return 0;
}

// Every float but NaN: the 2^31 - 2^23 + 1 patterns from +0 to +Inf, and the
// same from -0 to -Inf.
constexpr uint32_t kNegativeZero = 0x80000000u;
constexpr uint64_t kNonNanPerSign = 0x7f800001u;

TEST(ClampRoundBits, LowByteIsTheRoundedInt8ForEveryPositiveFloatAndInf) {
  EXPECT_EQ(CountLowByteMismatches(0, kNonNanPerSign), 0u)
      << "first at bits 0x" << std::hex
      << FirstLowByteMismatch(0, kNonNanPerSign);
}

TEST(ClampRoundBits, LowByteIsTheRoundedInt8ForEveryNegativeFloatAndInf) {
  EXPECT_EQ(CountLowByteMismatches(kNegativeZero, kNonNanPerSign), 0u)
      << "first at bits 0x" << std::hex
      << FirstLowByteMismatch(kNegativeZero, kNonNanPerSign);
}

// The exhaustive tests above compare with ClampRound; this pins the values
// themselves where rounding and clamping decide them.
TEST(ClampRoundBits, RoundsHalfToEvenAndClampsToPlusMinus127) {
  const struct {
    float v;
    int8_t q;
  } cases[] = {
      {0.0f, 0},
      {-0.0f, 0},
      {0.5f, 0},
      {-0.5f, 0},
      {1.5f, 2},
      {-1.5f, -2},
      {2.5f, 2},
      {-2.5f, -2},
      {0.49999997f, 0},
      {0.50000006f, 1},
      {126.5f, 126},
      {-126.5f, -126},
      {127.0f, 127},
      {-127.0f, -127},
      {127.49f, 127},
      {127.5f, 127},
      {128.0f, 127},
      {-128.0f, -127},
      {1e30f, 127},
      {-1e30f, -127},
      {std::numeric_limits<float>::infinity(), 127},
      {-std::numeric_limits<float>::infinity(), -127},
      {std::numeric_limits<float>::denorm_min(), 0},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(LowByte(ClampRoundBits(c.v)), c.q) << c.v;
  }
}

class QuantizeBitsTest : public SeededTest {};

// Scales of every kind QuantizeValue distinguishes: normal (multiply by the
// reciprocal), subnormal (divide), zero (all zeros).
TEST_F(QuantizeBitsTest, LowByteEqualsQuantizeValueForEveryKindOfScale) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-149, 127);
  const float absmaxes[] = {
      1.0f,
      3.0e-3f,
      65504.0f,
      std::numeric_limits<float>::max(),
      std::numeric_limits<float>::min(),         // scale subnormal
      1.0e-40f,                                  // scale subnormal
      std::numeric_limits<float>::denorm_min(),  // scale rounds to 0
      0.0f,
  };
  for (float absmax : absmaxes) {
    const float scale = ScaleFromAbsmax(absmax);
    const float inv_scale = InverseScale(scale);
    SCOPED_TRACE(::testing::Message() << "absmax " << absmax << " scale "
                                      << scale << " inv " << inv_scale);
    std::vector<float> xs = {0.0f,    -0.0f,      absmax,
                             -absmax, absmax / 2, -absmax / 2};
    for (int i = 0; i < 20000; ++i) {
      xs.push_back(std::min(absmax, std::fabs(unit(rng_) * absmax)) *
                   (i % 2 ? 1.0f : -1.0f));
    }
    // Values a group could not hold (|x| > absmax): the clamp decides them.
    for (int i = 0; i < 2000; ++i) {
      xs.push_back(unit(rng_) * std::ldexp(1.0f, exponent(rng_)));
    }
    for (float x : xs) {
      ASSERT_EQ(LowByte(QuantizeBits(x, scale, inv_scale)),
                QuantizeValue(x, scale, inv_scale))
          << "x " << x;
    }
  }
}

// The fast path of kernels that quantize a group with its own scale skips
// the clamp (RoundBits): it must give ClampRoundBits' bits for the group's
// largest magnitude, the worst case. Exhaustive over the mantissas of one
// binade, and over every exponent that keeps the scale normal for mantissas
// next to the binade's ends, where rounding leans furthest.
bool OwnScaleRoundsLikeTheClamp(float absmax) {
  const float inv = InverseScale(ScaleFromAbsmax(absmax));
  if (inv == 0.0f) return true;  // subnormal or zero scale: divides instead
  for (const float x : {absmax, -absmax}) {
    const float v = x * inv;
    if (RoundBits(v) != ClampRoundBits(v) || std::fabs(v) >= 127.5f) {
      return false;
    }
  }
  return true;
}

TEST(RoundBits, EqualsClampRoundBitsForEveryMantissaOfAGroupsOwnMax) {
  for (uint32_t m = 0; m < (1u << 23); ++m) {
    const float absmax = BitsToFloat(0x3f800000u | m);  // [1, 2)
    ASSERT_TRUE(OwnScaleRoundsLikeTheClamp(absmax)) << "absmax " << absmax;
  }
}

TEST(RoundBits, EqualsClampRoundBitsAtEveryExponentWithANormalScale) {
  for (uint32_t exponent = 1; exponent < 255; ++exponent) {
    for (uint32_t m : {0u, 1u, 2u, 0x400000u, 0x7ffffdu, 0x7ffffeu, 0x7fffffu}) {
      const float absmax = BitsToFloat(exponent << 23 | m);
      ASSERT_TRUE(OwnScaleRoundsLikeTheClamp(absmax)) << "absmax " << absmax;
    }
  }
}

// The host BytePerm models PRMT: the example of NVIDIA's cub::PRMT docs.
TEST(BytePerm, SelectsBytesOfYXByNibble) {
  EXPECT_EQ(BytePerm(0x03020100u, 0x07060504u, 0x7531u), 0x07050301u);
  EXPECT_EQ(BytePerm(0x03020100u, 0x07060504u, 0x0246u), 0x00020406u);
}

class PackLowBytesTest : public SeededTest {};

TEST_F(PackLowBytesTest, StoresEachLowByteInElementOrderIgnoringUpperBits) {
  std::uniform_int_distribution<uint32_t> word;
  for (int i = 0; i < 100000; ++i) {
    uint32_t b[4];
    for (uint32_t& w : b) w = word(rng_);
    const uint32_t packed = PackLowBytes(b[0], b[1], b[2], b[3]);
    int8_t stored[4];
    std::memcpy(stored, &packed, 4);  // the GPU, like x86, is little-endian
    for (int k = 0; k < 4; ++k) {
      ASSERT_EQ(stored[k], LowByte(b[k]))
          << "element " << k << " of " << std::hex << b[0] << " " << b[1] << " "
          << b[2] << " " << b[3];
    }
  }
}

TEST(PackLowBytes, EqualsFourIndividualResultsForEveryInt8AtEveryPosition) {
  for (int q = -128; q <= 127; ++q) {
    for (int k = 0; k < 4; ++k) {
      // The other elements hold ClampRoundBits patterns of other values.
      uint32_t b[4] = {ClampRoundBits(-127.0f), ClampRoundBits(1.0f),
                       ClampRoundBits(-3.0f), ClampRoundBits(127.0f)};
      b[k] = 0x4b400000u | static_cast<uint8_t>(q);
      const uint32_t packed = PackLowBytes(b[0], b[1], b[2], b[3]);
      int8_t stored[4];
      std::memcpy(stored, &packed, 4);
      for (int j = 0; j < 4; ++j) {
        ASSERT_EQ(stored[j], LowByte(b[j])) << "q " << q << " at " << k;
      }
    }
  }
}

TEST(Int8ToFloat, EqualsTheCastForEveryInt8) {
  for (int q = -128; q <= 127; ++q) {
    const int8_t v = static_cast<int8_t>(q);
    ASSERT_EQ(FloatBits(Int8ToFloat(v)), FloatBits(static_cast<float>(v)))
        << "q " << q;
  }
}

// Every int8 at every position of a word, its neighbours other int8s (the
// extremes and a neighbour of q), so that a byte leaking into another
// element's float would show.
TEST(BiasedInt8ToFloat, EqualsTheCastForEveryInt8AtEveryPosition) {
  for (int q = -128; q <= 127; ++q) {
    for (int k = 0; k < 4; ++k) {
      int8_t bytes[4] = {-128, 127, static_cast<int8_t>(q ^ 1), -1};
      bytes[k] = static_cast<int8_t>(q);
      uint32_t word;
      std::memcpy(&word, bytes, 4);  // element k in byte k, as in memory
      const uint32_t biased = BiasInt8x4(word);
      for (int j = 0; j < 4; ++j) {
        ASSERT_EQ(FloatBits(BiasedInt8ToFloat(biased, j)),
                  FloatBits(static_cast<float>(bytes[j])))
            << "q " << q << " at " << k << ", element " << j;
      }
    }
  }
}

// The kernels multiply the converted int8 by the scale as DequantizeValue
// does; with the same float in, the product has the same bits for scales of
// every kind, subnormal and huge included.
TEST(Int8ToFloat, TimesTheScaleGivesDequantizeValueBitForBit) {
  const float scales[] = {0.0f,
                          1.0f,
                          3.0e-3f / 127.0f,
                          65504.0f / 127.0f,
                          std::numeric_limits<float>::max() / 127.0f,
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(),
                          1.0e-40f,
                          std::numeric_limits<float>::infinity()};
  for (const float scale : scales) {
    for (int q = -128; q <= 127; ++q) {
      const int8_t v = static_cast<int8_t>(q);
      ASSERT_EQ(FloatBits(Int8ToFloat(v) * scale),
                FloatBits(DequantizeValue(v, scale)))
          << "q " << q << " scale " << scale;
    }
  }
}

}  // namespace
}  // namespace kvq
