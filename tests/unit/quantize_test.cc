// Specification of kernels/quantize.h: the INT8 symmetric format's promises
// (error bound, scales, zeros, rounding, clamping, non-finite refusal) on
// fresh random blocks of every dtype and granularity, and byte-identity of
// the fast path with the scalar reference.

#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/float_convert.h"
#include "kernels/format.h"
#include "kernels/quant_math.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq {
namespace {

using kvq::testing::Distribution;
using kvq::testing::HostBlock;
using kvq::testing::kAllDistributions;
using kvq::testing::kAllDTypes;
using kvq::testing::PayloadScale;
using kvq::testing::PayloadValue;
using kvq::testing::SeededTest;
using ::testing::HasSubstr;

uint32_t FloatBitsOf(float f) { return FloatBits(f); }

// Shapes with odd token counts and head_dim not a multiple of 8 among them.
const BlockShape kSmallShapes[] = {
    {1, 1, 1, 7},   {2, 5, 3, 13},   {2, 17, 4, 96},
    {1, 9, 2, 100}, {3, 31, 1, 128}, {2, 3, 2, 1},
};

// Every granularity, and several group sizes dividing head_dim.
std::vector<QuantSpec> SpecsFor(const BlockShape& shape) {
  std::vector<QuantSpec> specs = {{Granularity::kPerTokenHead, 0},
                                  {Granularity::kPerChannel, 0},
                                  {Granularity::kPerTensor, 0}};
  for (uint32_t g : {1u, 2u, 3u, 4u, 8u, 25u, 32u}) {
    if (shape.head_dim % g == 0 && g < shape.head_dim) {
      specs.push_back({Granularity::kGroup, g});
    }
  }
  specs.push_back({Granularity::kGroup, shape.head_dim});
  return specs;
}

std::string Describe(DType dtype, const BlockLayout& layout,
                     const char* dist = "") {
  std::ostringstream out;
  out << DTypeName(dtype) << " " << kvq::testing::ShapeString(layout.shape)
      << " " << GranularityName(layout.spec.granularity);
  if (layout.spec.granularity == Granularity::kGroup) {
    out << "(" << layout.spec.group_size << ")";
  }
  out << " " << dist;
  return out.str();
}

// Largest |x| of each group, computed from the definition of a group.
std::vector<float> GroupAbsmax(const BlockLayout& layout,
                               const HostBlock& block) {
  std::vector<float> m(layout.groups, 0.0f);
  for (uint64_t i = 0; i < layout.elements; ++i) {
    float& g = m[layout.GroupOf(i)];
    g = std::max(g, std::fabs(block.Get(i)));
  }
  return m;
}

struct Quantized {
  std::vector<uint8_t> reference;
  std::vector<uint8_t> fast;
};

// Quantizes `block` both ways into garbage-filled buffers; both must succeed.
::testing::AssertionResult QuantizeBoth(const BlockLayout& layout,
                                        const HostBlock& block,
                                        std::mt19937_64& rng, Quantized& out) {
  out.reference = kvq::testing::GarbagePayload(layout, rng);
  out.fast = kvq::testing::GarbagePayload(layout, rng);
  absl::Status r = QuantizeReference(layout, block.dtype(), block.data(),
                                     out.reference.data());
  if (!r.ok()) return ::testing::AssertionFailure() << "reference: " << r;
  absl::Status f =
      Quantize(layout, block.dtype(), block.data(), out.fast.data());
  if (!f.ok()) return ::testing::AssertionFailure() << "fast: " << f;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SameBytes(const std::vector<uint8_t>& want,
                                     const std::vector<uint8_t>& got) {
  if (want.size() != got.size()) {
    return ::testing::AssertionFailure()
           << "sizes differ: " << want.size() << " vs " << got.size();
  }
  auto mismatch = std::mismatch(want.begin(), want.end(), got.begin());
  if (mismatch.first == want.end()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "first differing byte " << (mismatch.first - want.begin())
         << ": reference " << int{*mismatch.first} << ", fast "
         << int{*mismatch.second};
}

// Every promise of the format for one block, and fast == reference.
void CheckBlock(const BlockLayout& layout, const HostBlock& block,
                std::mt19937_64& rng) {
  Quantized q;
  ASSERT_TRUE(QuantizeBoth(layout, block, rng, q));
  ASSERT_TRUE(SameBytes(q.reference, q.fast)) << "quantized payloads";
  const std::vector<uint8_t>& payload = q.reference;

  // Zero padding between the values and the scales.
  for (uint64_t b = layout.elements; b < layout.scales_offset; ++b) {
    ASSERT_EQ(payload[b], 0) << "padding byte " << b;
  }

  // scale = absmax / 127, bit for bit.
  const std::vector<float> absmax = GroupAbsmax(layout, block);
  for (uint64_t g = 0; g < layout.groups; ++g) {
    ASSERT_EQ(FloatBitsOf(PayloadScale(layout, payload, g)),
              FloatBitsOf(absmax[g] / 127.0f))
        << "scale of group " << g << " with absmax " << absmax[g];
  }

  for (uint64_t i = 0; i < layout.elements; ++i) {
    const uint64_t g = layout.GroupOf(i);
    const float scale = PayloadScale(layout, payload, g);
    const float x = block.Get(i);
    const int8_t v = PayloadValue(payload, i);
    ASSERT_GE(v, -127) << "element " << i;
    const float y = static_cast<float>(v) * scale;
    ASSERT_LE(std::fabs(x - y), DequantErrorBound(x, scale))
        << "element " << i << ": x=" << x << " q=" << int{v}
        << " scale=" << scale << " dequantized=" << y;
    if (scale >= kMinNormalScale && std::fabs(x) == absmax[g]) {
      ASSERT_EQ(std::abs(int{v}), 127)
          << "the largest value of group " << g << " must map to +-127";
    }
  }

  // Dequantized into every dtype: fast == reference; within the bound.
  for (DType out_dtype : kAllDTypes) {
    SCOPED_TRACE(std::string("dequantized to ") +
                 std::string(DTypeName(out_dtype)));
    HostBlock ref(out_dtype, layout.elements), fast(out_dtype, layout.elements);
    DequantizeReference(layout, payload.data(), out_dtype, ref.data());
    Dequantize(layout, payload.data(), out_dtype, fast.data());
    ASSERT_TRUE(SameBytes(ref.bytes(), fast.bytes()));
    for (uint64_t i = 0; i < layout.elements; ++i) {
      const float scale = PayloadScale(layout, payload, layout.GroupOf(i));
      const float x = block.Get(i);
      const float bound = DequantErrorBound(x, scale, out_dtype);
      if (std::isinf(bound)) continue;  // out of out_dtype's range
      ASSERT_LE(std::fabs(x - ref.Get(i)), bound)
          << "element " << i << ": x=" << x << " got " << ref.Get(i)
          << " scale=" << scale;
    }
  }
}

class QuantizeTest : public SeededTest {};

TEST_F(QuantizeTest,
       EveryElementWithinBoundAndFastPathIdenticalForEveryDtypeGranularity) {
  for (DType dtype : kAllDTypes) {
    for (const BlockShape& shape : kSmallShapes) {
      for (const QuantSpec& spec : SpecsFor(shape)) {
        const BlockLayout layout = *MakeLayout(shape, spec);
        for (Distribution dist : kAllDistributions) {
          SCOPED_TRACE(
              Describe(dtype, layout, kvq::testing::DistributionName(dist)));
          HostBlock block(dtype, layout.elements);
          kvq::testing::FillBlock(block, shape, dist, rng_);
          CheckBlock(layout, block, rng_);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// Blocks over 1 MiB take the threaded path, with groups split across work
// chunks (per-tensor planes, per-channel row runs).
TEST_F(QuantizeTest, LargeBlocksOnThreadsIdenticalToReference) {
  for (DType dtype : kAllDTypes) {
    const uint32_t tokens = dtype == DType::kFp32 ? 263 : 527;
    const BlockShape shape{2, tokens, 5, 100};
    ASSERT_GT(shape.elements() * DTypeBytes(dtype), uint64_t{1} << 20);
    for (QuantSpec spec : {QuantSpec{Granularity::kPerTokenHead, 0},
                           QuantSpec{Granularity::kPerChannel, 0},
                           QuantSpec{Granularity::kPerTensor, 0},
                           QuantSpec{Granularity::kGroup, 25}}) {
      const BlockLayout layout = *MakeLayout(shape, spec);
      const Distribution dist =
          kAllDistributions[rng_() % std::size(kAllDistributions)];
      SCOPED_TRACE(
          Describe(dtype, layout, kvq::testing::DistributionName(dist)));
      HostBlock block(dtype, layout.elements);
      kvq::testing::FillBlock(block, shape, dist, rng_);
      CheckBlock(layout, block, rng_);
      if (HasFatalFailure()) return;

      // Work is split at boundaries the test does not know: a block's
      // single largest value at a plane's edges or at a power-of-two offset
      // must still decide its group's scale.
      kvq::testing::FillBlock(block, shape, Distribution::kNormal, rng_);
      const uint64_t plane = layout.elements / shape.planes;
      const uint64_t p0 = (rng_() % shape.planes) * plane;
      const uint64_t pow2 = uint64_t{1} << (10 + rng_() % 8);
      for (uint64_t at : {p0, p0 + plane - 1, p0 + pow2 - 1, p0 + pow2}) {
        SCOPED_TRACE("outlier at " + std::to_string(at));
        const float old = block.Get(at);
        block.Set(at, (rng_() & 1) ? 1000.0f : -1000.0f);
        Quantized q;
        ASSERT_TRUE(QuantizeBoth(layout, block, rng_, q));
        ASSERT_TRUE(SameBytes(q.reference, q.fast));
        block.Set(at, old);
      }
    }
  }
}

TEST_F(QuantizeTest, AllZeroGroupsGetScaleZeroAndDecodeToExactZeros) {
  for (DType dtype : kAllDTypes) {
    for (const BlockShape& shape : kSmallShapes) {
      for (const QuantSpec& spec : SpecsFor(shape)) {
        const BlockLayout layout = *MakeLayout(shape, spec);
        SCOPED_TRACE(Describe(dtype, layout));
        HostBlock block(dtype, layout.elements);
        kvq::testing::FillBlock(block, shape, Distribution::kNormal, rng_);
        // Zero about half the groups (+0 and -0 both), keep the rest random.
        std::vector<char> zeroed(layout.groups);
        for (auto& z : zeroed) z = static_cast<char>(rng_() & 1);
        for (uint64_t i = 0; i < layout.elements; ++i) {
          if (zeroed[layout.GroupOf(i)])
            block.Set(i, (rng_() & 1) ? 0.0f : -0.0f);
        }
        Quantized q;
        ASSERT_TRUE(QuantizeBoth(layout, block, rng_, q));
        ASSERT_TRUE(SameBytes(q.reference, q.fast));
        for (uint64_t g = 0; g < layout.groups; ++g) {
          if (zeroed[g]) {
            ASSERT_EQ(FloatBitsOf(PayloadScale(layout, q.fast, g)), 0u)
                << "group " << g;
          }
        }
        for (DType out_dtype : kAllDTypes) {
          HostBlock out(out_dtype, layout.elements);
          Dequantize(layout, q.fast.data(), out_dtype, out.data());
          for (uint64_t i = 0; i < layout.elements; ++i) {
            if (!zeroed[layout.GroupOf(i)]) continue;
            ASSERT_EQ(PayloadValue(q.fast, i), 0) << "element " << i;
            ASSERT_EQ(FloatBitsOf(out.Get(i)), 0u)
                << "element " << i << " must decode to +0 in "
                << DTypeName(out_dtype);
          }
        }
      }
    }
  }
}

// Each group holds +-127 * 2^k, so its scale is exactly 2^k, and otherwise
// only values (n + 1/2) * 2^k: x / scale is an exact tie every time.
TEST_F(QuantizeTest, ExactHalfwayValuesRoundToEven) {
  for (DType dtype : kAllDTypes) {
    for (const BlockShape& shape : kSmallShapes) {
      for (const QuantSpec& spec : SpecsFor(shape)) {
        const BlockLayout layout = *MakeLayout(shape, spec);
        SCOPED_TRACE(Describe(dtype, layout));
        const int k = dtype == DType::kFp16
                          ? -14 + static_cast<int>(rng_() % 24)
                          : -100 + static_cast<int>(rng_() % 200);
        HostBlock block(dtype, layout.elements);
        std::vector<char> has_max(layout.groups, 0);
        std::vector<float> tie(layout.elements, 0.0f);
        for (uint64_t i = 0; i < layout.elements; ++i) {
          const uint64_t g = layout.GroupOf(i);
          if (!has_max[g]) {
            has_max[g] = 1;
            block.Set(i, std::ldexp((rng_() & 1) ? 127.0f : -127.0f, k));
            continue;
          }
          tie[i] =
              static_cast<float>(static_cast<int>(rng_() % 254) - 127) + 0.5f;
          block.Set(i, std::ldexp(tie[i], k));
          ASSERT_EQ(block.Get(i), std::ldexp(tie[i], k)) << "not exact";
        }
        Quantized q;
        ASSERT_TRUE(QuantizeBoth(layout, block, rng_, q));
        ASSERT_TRUE(SameBytes(q.reference, q.fast));
        for (uint64_t g = 0; g < layout.groups; ++g) {
          ASSERT_EQ(PayloadScale(layout, q.fast, g), std::ldexp(1.0f, k));
        }
        for (uint64_t i = 0; i < layout.elements; ++i) {
          if (tie[i] == 0.0f) continue;
          const float lower = std::floor(tie[i]);
          const int even = static_cast<int>(
              std::fmod(lower, 2.0f) == 0.0f ? lower : lower + 1.0f);
          ASSERT_EQ(int{PayloadValue(q.fast, i)}, even)
              << "element " << i << " = " << tie[i] << " * 2^" << k;
        }
      }
    }
  }
}

// Subnormal scales are coarse: a scale of 1 * 2^-149 serves a group whose
// absmax is up to ~190 * 2^-149, so x / scale exceeds 127 and must clamp.
TEST_F(QuantizeTest, ValuesBeyondOneTwentySevenScalesClampToPlusMinus127) {
  const DType dtype = DType::kFp32;
  int clamped_seen = 0;
  for (const BlockShape& shape : kSmallShapes) {
    for (const QuantSpec& spec : SpecsFor(shape)) {
      const BlockLayout layout = *MakeLayout(shape, spec);
      SCOPED_TRACE(Describe(dtype, layout));
      HostBlock block(dtype, layout.elements);
      for (uint64_t i = 0; i < layout.elements; ++i) {
        const int units = 64 + static_cast<int>(rng_() % 1000);
        block.Set(i,
                  std::ldexp(static_cast<float>((rng_() & 1) ? units : -units),
                             -149));
      }
      Quantized q;
      ASSERT_TRUE(QuantizeBoth(layout, block, rng_, q));
      ASSERT_TRUE(SameBytes(q.reference, q.fast));
      for (uint64_t i = 0; i < layout.elements; ++i) {
        const float scale = PayloadScale(layout, q.fast, layout.GroupOf(i));
        const float x = block.Get(i);
        const int v = PayloadValue(q.fast, i);
        ASSERT_GE(v, -127);
        ASSERT_LE(v, 127);
        ASSERT_GT(scale, 0.0f);
        const double ratio = static_cast<double>(x) / scale;
        if (std::fabs(ratio) > 127.5) {
          ++clamped_seen;
          ASSERT_EQ(v, ratio > 0 ? 127 : -127) << "element " << i;
        }
        ASSERT_LE(std::fabs(x - v * scale), DequantErrorBound(x, scale));
      }
    }
  }
  EXPECT_GT(clamped_seen, 0) << "no value needed clamping: test is vacuous";
}

// A block with a non-finite value is refused, naming the first one.
TEST_F(QuantizeTest, NanOrInfIsInvalidArgumentNamingTheFirstBadIndex) {
  struct Bad {
    const char* name;
    uint16_t fp16, bf16;
    uint32_t fp32;
  };
  const Bad kBad[] = {
      {"NaN", 0x7e00, 0x7fc0, 0x7fc00000},  // quiet NaN
      {"NaN", 0xfc01, 0xff81, 0xff800001},  // negative signalling NaN
      {"+Inf", 0x7c00, 0x7f80, 0x7f800000},
      {"-Inf", 0xfc00, 0xff80, 0xff800000},
  };
  for (DType dtype : kAllDTypes) {
    const uint32_t big_tokens = dtype == DType::kFp32 ? 263 : 527;
    for (const BlockShape& shape :
         {BlockShape{2, 17, 4, 96}, BlockShape{1, 9, 2, 100},
          BlockShape{2, big_tokens, 5, 100}}) {
      for (const QuantSpec& spec : SpecsFor(shape)) {
        const BlockLayout layout = *MakeLayout(shape, spec);
        SCOPED_TRACE(Describe(dtype, layout));
        HostBlock block(dtype, layout.elements);
        kvq::testing::FillBlock(block, shape, Distribution::kNormal, rng_);
        const Bad& first = kBad[rng_() % std::size(kBad)];
        const Bad& second = kBad[rng_() % std::size(kBad)];
        const uint64_t i = rng_() % layout.elements;
        const uint64_t j = i + rng_() % (layout.elements - i);
        auto put = [&](uint64_t at, const Bad& b) {
          if (dtype == DType::kFp32) {
            std::memcpy(static_cast<uint8_t*>(block.data()) + 4 * at, &b.fp32,
                        4);
          } else {
            block.SetBits(at, dtype == DType::kFp16 ? b.fp16 : b.bf16);
          }
        };
        put(j, second);
        put(i, first);  // i <= j: i is the first bad element
        const std::string want =
            "data[" + std::to_string(i) + "] is " + first.name;
        std::vector<uint8_t> payload(layout.payload_bytes);
        absl::Status ref =
            QuantizeReference(layout, dtype, block.data(), payload.data());
        absl::Status fast =
            Quantize(layout, dtype, block.data(), payload.data());
        EXPECT_EQ(ref.code(), absl::StatusCode::kInvalidArgument);
        EXPECT_THAT(std::string(ref.message()), HasSubstr(want));
        EXPECT_EQ(fast, ref);
      }
    }
  }
}

TEST_F(QuantizeTest, InvalidDtypeIsRefused) {
  const BlockLayout layout = *MakeLayout({1, 2, 1, 8}, {});
  std::vector<float> data(16, 1.0f);
  std::vector<uint8_t> payload(layout.payload_bytes);
  for (DType bad : {static_cast<DType>(0), static_cast<DType>(7)}) {
    absl::Status s = Quantize(layout, bad, data.data(), payload.data());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("dtype"));
    EXPECT_EQ(QuantizeReference(layout, bad, data.data(), payload.data()), s);
  }
}

TEST_F(QuantizeTest, BlockAbsmaxIs127TimesTheLargestScaleAndBoundsEveryValue) {
  for (DType dtype : kAllDTypes) {
    for (Distribution dist : kAllDistributions) {
      const BlockShape shape{2, 9, 3, 40};
      const BlockLayout layout = *MakeLayout(shape, {});
      HostBlock block(dtype, layout.elements);
      kvq::testing::FillBlock(block, shape, dist, rng_);
      std::vector<uint8_t> payload(layout.payload_bytes);
      ASSERT_TRUE(Quantize(layout, dtype, block.data(), payload.data()).ok());
      float largest_scale = 0.0f;
      for (uint64_t g = 0; g < layout.groups; ++g) {
        largest_scale =
            std::max(largest_scale, PayloadScale(layout, payload, g));
      }
      const float absmax = BlockAbsmax(layout, payload.data());
      EXPECT_EQ(absmax, 127.0f * largest_scale);
      HostBlock out(DType::kFp32, layout.elements);
      Dequantize(layout, payload.data(), DType::kFp32, out.data());
      for (uint64_t i = 0; i < layout.elements; ++i) {
        ASSERT_LE(std::fabs(out.Get(i)), absmax);
      }
      // A block from `dtype` always fits back into `dtype`.
      EXPECT_LE(absmax, DTypeMaxFinite(dtype) * (1 + 1e-6f));
    }
  }
}

TEST(DTypeMaxFinite, IsTheLargestFiniteValueOfEachDtype) {
  EXPECT_EQ(DTypeMaxFinite(DType::kFp16), 65504.0f);
  EXPECT_EQ(DTypeMaxFinite(DType::kFp16), HalfToFloat(0x7bff));
  EXPECT_EQ(DTypeMaxFinite(DType::kBf16), Bf16ToFloat(0x7f7f));
  EXPECT_EQ(DTypeMaxFinite(DType::kFp32), std::numeric_limits<float>::max());
}

}  // namespace
}  // namespace kvq
