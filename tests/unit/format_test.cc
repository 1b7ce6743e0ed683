// Specification of kernels/format.h: names, block validation, payload layout,
// group assignment and the dequantization error bound.

#include "kernels/format.h"

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quant_math.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq {
namespace {

using kvq::testing::SeededTest;
using ::testing::HasSubstr;

constexpr Granularity kAllGranularities[] = {
    Granularity::kPerTokenHead, Granularity::kPerChannel,
    Granularity::kPerTensor, Granularity::kGroup};

// --- names -----------------------------------------------------------------

TEST(FormatNames, DTypeNamesRoundTripThroughParse) {
  for (DType d : kvq::testing::kAllDTypes) {
    auto parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(DTypeName(DType::kFp16), "fp16");
  EXPECT_EQ(DTypeName(DType::kBf16), "bf16");
  EXPECT_EQ(DTypeName(DType::kFp32), "fp32");
}

TEST(FormatNames, GranularityNamesRoundTripThroughParse) {
  for (Granularity g : kAllGranularities) {
    auto parsed = ParseGranularity(GranularityName(g));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, g);
  }
  EXPECT_EQ(GranularityName(Granularity::kPerTokenHead), "per_token_head");
  EXPECT_EQ(GranularityName(Granularity::kPerChannel), "per_channel");
  EXPECT_EQ(GranularityName(Granularity::kPerTensor), "per_tensor");
  EXPECT_EQ(GranularityName(Granularity::kGroup), "group");
}

TEST(FormatNames, UnknownNamesAreInvalidArgumentNamingTheFieldAndValue) {
  for (const char* bad : {"", "FP16", "int8", "float32 "}) {
    auto d = ParseDType(bad);
    ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("dtype"));
    EXPECT_THAT(std::string(d.status().message()),
                HasSubstr(std::string("\"") + bad + "\""));
  }
  for (const char* bad : {"", "per-token-head", "tensor", "GROUP"}) {
    auto g = ParseGranularity(bad);
    ASSERT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(g.status().message()), HasSubstr("granularity"));
  }
}

// --- ValidateBlock
// ------------------------------------------------------------

BlockShape SmallShape() { return {2, 16, 4, 64}; }

void ExpectInvalid(const BlockShape& shape, const QuantSpec& spec,
                   const std::string& field) {
  absl::Status s = ValidateBlock(shape, spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
      << "expected a rejection naming " << field;
  EXPECT_THAT(std::string(s.message()), HasSubstr(field));
  // MakeLayout refuses exactly what ValidateBlock refuses.
  EXPECT_EQ(MakeLayout(shape, spec).status(), s);
}

TEST(ValidateBlock, AcceptsEveryGranularityOnOrdinaryShapes) {
  for (Granularity g : kAllGranularities) {
    QuantSpec spec{g, g == Granularity::kGroup ? 16u : 0u};
    EXPECT_TRUE(ValidateBlock(SmallShape(), spec).ok()) << GranularityName(g);
  }
}

TEST(ValidateBlock, ZeroDimensionNamesTheDimension) {
  const QuantSpec spec;
  BlockShape s = SmallShape();
  s.planes = 0;
  ExpectInvalid(s, spec, "shape.planes must be >= 1, got 0");
  s = SmallShape();
  s.tokens = 0;
  ExpectInvalid(s, spec, "shape.tokens must be >= 1, got 0");
  s = SmallShape();
  s.heads = 0;
  ExpectInvalid(s, spec, "shape.heads must be >= 1, got 0");
  s = SmallShape();
  s.head_dim = 0;
  ExpectInvalid(s, spec, "shape.head_dim must be >= 1, got 0");
}

TEST(ValidateBlock, AbsurdDimensionNamesTheDimensionAndLimit) {
  const QuantSpec spec;
  BlockShape s = SmallShape();
  s.planes = kMaxPlanes + 1;
  ExpectInvalid(s, spec,
                "shape.planes must be <= " + std::to_string(kMaxPlanes));
  s = SmallShape();
  s.tokens = kMaxTokens + 1;
  ExpectInvalid(s, spec,
                "shape.tokens must be <= " + std::to_string(kMaxTokens));
  s = SmallShape();
  s.heads = 0xffffffffu;
  ExpectInvalid(s, spec, "shape.heads must be <= " + std::to_string(kMaxHeads));
  s = SmallShape();
  s.head_dim = kMaxHeadDim + 1;
  ExpectInvalid(s, spec,
                "shape.head_dim must be <= " + std::to_string(kMaxHeadDim));
}

TEST(ValidateBlock, DimensionsAtTheirLimitsAreAccepted) {
  EXPECT_TRUE(ValidateBlock({kMaxPlanes, 1, 1, 1}, {}).ok());
  EXPECT_TRUE(ValidateBlock({1, kMaxTokens, 1, 1}, {}).ok());
  EXPECT_TRUE(ValidateBlock({1, 1, kMaxHeads, 1}, {}).ok());
  EXPECT_TRUE(ValidateBlock({1, 1, 1, kMaxHeadDim}, {}).ok());
  // Exactly kMaxElements values.
  EXPECT_TRUE(ValidateBlock({1, kMaxTokens, kMaxHeads, 1}, {}).ok());
}

TEST(ValidateBlock, TooManyValuesInTotalNamesTheShape) {
  // Every dimension within its limit, the product over kMaxElements.
  ExpectInvalid({2, kMaxTokens, kMaxHeads, 1}, {}, "shape");
  ExpectInvalid({kMaxPlanes, kMaxTokens, kMaxHeads, kMaxHeadDim}, {},
                "must hold <= " + std::to_string(kMaxElements) + " values");
}

TEST(ValidateBlock, GroupGranularityNeedsAGroupSizeDividingHeadDim) {
  QuantSpec spec{Granularity::kGroup, 0};
  ExpectInvalid(SmallShape(), spec, "spec.group_size must be >= 1");
  for (uint32_t bad : {3u, 7u, 48u, 65u, 128u}) {
    spec.group_size = bad;
    ExpectInvalid(SmallShape(), spec,
                  "spec.group_size must divide shape.head_dim (64), got " +
                      std::to_string(bad));
  }
  for (uint32_t good : {1u, 2u, 4u, 8u, 16u, 32u, 64u}) {
    spec.group_size = good;
    EXPECT_TRUE(ValidateBlock(SmallShape(), spec).ok()) << good;
  }
}

TEST(ValidateBlock, OtherGranularitiesRequireGroupSizeZero) {
  for (Granularity g : {Granularity::kPerTokenHead, Granularity::kPerChannel,
                        Granularity::kPerTensor}) {
    ExpectInvalid(SmallShape(), {g, 8}, "spec.group_size must be 0");
  }
}

TEST(ValidateBlock, UnknownGranularityOrFormatValuesNameTheField) {
  for (int raw : {0, 5, 255}) {
    ExpectInvalid(SmallShape(), {static_cast<Granularity>(raw), 0},
                  "spec.granularity must be");
    ExpectInvalid(SmallShape(),
                  {Granularity::kPerTokenHead, 0, static_cast<Format>(raw)},
                  "spec.format must be");
  }
  ExpectInvalid(SmallShape(), {static_cast<Granularity>(9), 0}, "got 9");
}

// --- MakeLayout and GroupOf
// ----------------------------------------------------

class LayoutTest : public SeededTest {
 protected:
  BlockShape RandomShape() {
    auto dim = [this](uint32_t max) {
      return static_cast<uint32_t>(1 + rng_() % max);
    };
    return {dim(3), dim(40), dim(6), dim(140)};
  }
  QuantSpec RandomSpecFor(Granularity g, const BlockShape& shape) {
    QuantSpec spec{g, 0};
    if (g == Granularity::kGroup) {
      std::vector<uint32_t> divisors;
      for (uint32_t k = 1; k <= shape.head_dim; ++k) {
        if (shape.head_dim % k == 0) divisors.push_back(k);
      }
      spec.group_size = divisors[rng_() % divisors.size()];
    }
    return spec;
  }
};

TEST_F(LayoutTest, PayloadIsValuesThenSixteenAlignedScales) {
  for (int trial = 0; trial < 200; ++trial) {
    const BlockShape shape = RandomShape();
    for (Granularity g : kAllGranularities) {
      const QuantSpec spec = RandomSpecFor(g, shape);
      auto layout = MakeLayout(shape, spec);
      ASSERT_TRUE(layout.ok()) << layout.status();
      SCOPED_TRACE(kvq::testing::ShapeString(shape) + " " +
                   std::string(GranularityName(g)));
      EXPECT_EQ(layout->shape, shape);
      EXPECT_EQ(layout->spec, spec);
      EXPECT_EQ(layout->elements, shape.elements());
      EXPECT_EQ(layout->scales_offset % 16, 0u);
      EXPECT_GE(layout->scales_offset, layout->elements);
      EXPECT_LT(layout->scales_offset, layout->elements + 16);
      EXPECT_EQ(layout->payload_bytes,
                layout->scales_offset + 4 * layout->groups);
      EXPECT_EQ(layout->groups * layout->group_values, layout->elements);
    }
  }
}

TEST_F(LayoutTest, GroupCountsAndSizesFollowTheGranularity) {
  for (int trial = 0; trial < 100; ++trial) {
    const BlockShape s = RandomShape();
    const uint64_t p = s.planes, t = s.tokens, h = s.heads, d = s.head_dim;
    auto pth = *MakeLayout(s, {Granularity::kPerTokenHead, 0});
    EXPECT_EQ(pth.groups, p * t * h);
    EXPECT_EQ(pth.group_values, d);
    auto pc = *MakeLayout(s, {Granularity::kPerChannel, 0});
    EXPECT_EQ(pc.groups, p * h * d);
    EXPECT_EQ(pc.group_values, t);
    auto pt = *MakeLayout(s, {Granularity::kPerTensor, 0});
    EXPECT_EQ(pt.groups, p);
    EXPECT_EQ(pt.group_values, t * h * d);
    const QuantSpec gs = RandomSpecFor(Granularity::kGroup, s);
    auto gr = *MakeLayout(s, gs);
    EXPECT_EQ(gr.groups, p * t * h * (d / gs.group_size));
    EXPECT_EQ(gr.group_values, gs.group_size);
  }
}

TEST(Layout, ScalesOffsetRoundsUpToSixteenExactly) {
  // 1 x 1 x 1 x n: n values, one scale per token-head.
  for (uint32_t n = 1; n <= 48; ++n) {
    auto layout = *MakeLayout({1, 1, 1, n}, {});
    EXPECT_EQ(layout.scales_offset, (n + 15) / 16 * 16) << n;
    EXPECT_EQ(layout.payload_bytes, (n + 15) / 16 * 16 + 4) << n;
  }
  auto vllm_page = *MakeLayout({2, 16, 8, 128}, {});
  EXPECT_EQ(vllm_page.scales_offset, 32768u);
  EXPECT_EQ(vllm_page.payload_bytes, 32768u + 4 * 2 * 16 * 8);
}

TEST_F(LayoutTest, GroupOfMatchesTheDefinitionOfEachGranularity) {
  for (int trial = 0; trial < 30; ++trial) {
    const BlockShape s = RandomShape();
    for (Granularity g : kAllGranularities) {
      const QuantSpec spec = RandomSpecFor(g, s);
      const BlockLayout layout = *MakeLayout(s, spec);
      std::vector<uint64_t> members(layout.groups, 0);
      uint64_t i = 0;
      for (uint64_t p = 0; p < s.planes; ++p) {
        for (uint64_t t = 0; t < s.tokens; ++t) {
          for (uint64_t h = 0; h < s.heads; ++h) {
            for (uint64_t d = 0; d < s.head_dim; ++d, ++i) {
              uint64_t want = 0;
              switch (g) {
                case Granularity::kPerTokenHead:
                  want = (p * s.tokens + t) * s.heads + h;
                  break;
                case Granularity::kPerChannel:
                  want = (p * s.heads + h) * s.head_dim + d;
                  break;
                case Granularity::kPerTensor:
                  want = p;
                  break;
                case Granularity::kGroup:
                  want = ((p * s.tokens + t) * s.heads + h) *
                             (s.head_dim / spec.group_size) +
                         d / spec.group_size;
                  break;
              }
              ASSERT_EQ(layout.GroupOf(i), want)
                  << GranularityName(g) << " " << kvq::testing::ShapeString(s)
                  << " p=" << p << " t=" << t << " h=" << h << " d=" << d;
              ++members[want];
            }
          }
        }
      }
      for (uint64_t k = 0; k < layout.groups; ++k) {
        ASSERT_EQ(members[k], layout.group_values) << "group " << k;
      }
    }
  }
}

// --- DequantErrorBound
// --------------------------------------------------------

class DequantErrorBoundTest : public SeededTest {};

TEST_F(DequantErrorBoundTest, IsHalfAScaleWithinAFewUlpsOfSlack) {
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int trial = 0; trial < 10000; ++trial) {
    const float absmax = std::ldexp(1.0f + unit(rng_), -100 + rng_() % 220);
    const float scale = ScaleFromAbsmax(absmax);
    const float x = absmax * unit(rng_) * ((rng_() & 1) ? 1 : -1);
    const float bound = DequantErrorBound(x, scale);
    EXPECT_GE(bound, scale / 2);
    // Not vacuous: the float rounding terms are tiny next to scale / 2.
    EXPECT_LE(bound, scale / 2 * (1 + 1e-4f))
        << "x=" << x << " scale=" << scale;
    for (DType d : kvq::testing::kAllDTypes) {
      EXPECT_GE(DequantErrorBound(x, scale, d), bound);
    }
  }
}

TEST(DequantErrorBound, ZeroScaleAllowsOnlySubnormalSlack) {
  EXPECT_EQ(DequantErrorBound(0.0f, 0.0f) > 0, true);
  EXPECT_LT(DequantErrorBound(0.0f, 0.0f), 1e-40f);
}

TEST(DequantErrorBound, OutputDtypeAddsHalfAnUlpOfThatDtype) {
  // x = 1000 as the absmax of its group: the dequantized value lies in
  // [512, 1024), where the FP16 ulp is 0.5, the BF16 ulp 4 and FP32's 2^-14.
  const float x = 1000.0f, scale = ScaleFromAbsmax(1000.0f);
  const float base = DequantErrorBound(x, scale);
  EXPECT_FLOAT_EQ(DequantErrorBound(x, scale, DType::kFp16) - base, 0.25f);
  EXPECT_FLOAT_EQ(DequantErrorBound(x, scale, DType::kBf16) - base, 2.0f);
  EXPECT_NEAR(DequantErrorBound(x, scale, DType::kFp32) - base,
              std::ldexp(1.0f, -15), 1e-6f);
}

TEST(DequantErrorBound, FiniteAtTheTopOfFp16InfiniteWhenItCouldOverflow) {
  const float scale = ScaleFromAbsmax(65504.0f);
  const float b = DequantErrorBound(65504.0f, scale, DType::kFp16);
  EXPECT_TRUE(std::isfinite(b));
  EXPECT_LE(b, scale / 2 + 16.5f);
  // 1e6 cannot be represented in FP16: no finite bound holds.
  EXPECT_TRUE(
      std::isinf(DequantErrorBound(1e6f, ScaleFromAbsmax(1e6f), DType::kFp16)));
}

}  // namespace
}  // namespace kvq
