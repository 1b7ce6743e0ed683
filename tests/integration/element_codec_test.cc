// The client's element codec (client/element_codec.h) converts exactly as the
// kernels do (kernels/float_convert.h): IEEE 754 round-to-nearest-even, so
// that blocks kvqctl and SDK users build from floats are the blocks they mean.
// (No server: it sits here, beside the suite that builds its data with it.)

#include "client/element_codec.h"

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/float_convert.h"

namespace kvq::wire {
namespace {

uint64_t FreshSeed() {
  std::random_device device;
  return (uint64_t{device()} << 32) | device();
}

TEST(ElementCodecTest, WideningEveryFp16AndBf16PatternMatchesTheKernels) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const float mine16 = Fp16BitsToFloat(h), theirs16 = HalfToFloat(h);
    const float mine_b = Bf16BitsToFloat(h), theirs_b = Bf16ToFloat(h);
    if (std::isnan(theirs16)) {
      EXPECT_TRUE(std::isnan(mine16)) << std::hex << bits;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(mine16),
                std::bit_cast<uint32_t>(theirs16))
          << std::hex << bits;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(mine_b),
              std::bit_cast<uint32_t>(theirs_b))
        << std::hex << bits;
  }
}

TEST(ElementCodecTest, NarrowingRoundsToNearestEvenLikeTheKernels) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  std::vector<float> values = {0.0f,
                               -0.0f,
                               65504.0f,
                               65519.99f,
                               65520.0f,
                               -65520.0f,
                               1e-8f,
                               2.98e-8f,
                               6e-8f,
                               6.1035e-5f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::denorm_min()};
  // Random bit patterns cover every exponent; halfway cases come from FP16
  // and BF16 neighbours' midpoints.
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (!std::isnan(f)) values.push_back(f);
    const auto h = static_cast<uint16_t>(rng());
    const float a = HalfToFloat(h),
                b = HalfToFloat(static_cast<uint16_t>(h + 1));
    if (std::isfinite(a) && std::isfinite(b)) values.push_back((a + b) / 2);
    const float c = Bf16ToFloat(h),
                d = Bf16ToFloat(static_cast<uint16_t>(h + 1));
    if (std::isfinite(c) && std::isfinite(d)) values.push_back(c / 2 + d / 2);
  }
  for (float f : values) {
    ASSERT_EQ(FloatToFp16Bits(f), FloatToHalf(f)) << f;
    ASSERT_EQ(FloatToBf16Bits(f), FloatToBf16(f)) << f;
  }
  EXPECT_TRUE(std::isnan(Fp16BitsToFloat(FloatToFp16Bits(std::nanf("")))));
  EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(std::nanf("")))));
}

TEST(ElementCodecTest, EncodeAndDecodeAreInversesOnRepresentableValues) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (v1::DType dtype : {v1::DTYPE_FP16, v1::DTYPE_BF16, v1::DTYPE_FP32}) {
    std::vector<float> values(1000);
    for (float& v : values) v = normal(rng);
    const std::string once = EncodeFloats(dtype, values);
    ASSERT_EQ(once.size(), values.size() * ElementBytes(dtype));
    absl::StatusOr<std::vector<float>> decoded = DecodeFloats(dtype, once);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(EncodeFloats(dtype, *decoded), once) << v1::DType_Name(dtype);
  }
  EXPECT_FALSE(DecodeFloats(v1::DTYPE_FP32, "abc").ok());
  EXPECT_FALSE(DecodeFloats(v1::DTYPE_UNSPECIFIED, "ab").ok());
}

}  // namespace
}  // namespace kvq::wire
