// Helpers for the kernels unit tests: seeded randomness, blocks of each dtype
// held as raw bytes, and the distributions the quantizer must handle.

#ifndef KVQ_TESTS_UNIT_KERNELS_TEST_UTIL_H_
#define KVQ_TESTS_UNIT_KERNELS_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/float_convert.h"
#include "kernels/format.h"

namespace kvq::testing {

// A fresh seed per test, printed with every failure of the test that uses it.
class SeededTest : public ::testing::Test {
 protected:
  SeededTest() : seed_(std::random_device{}()), rng_(seed_) {}
  void SetUp() override {
    trace_ = std::make_unique<::testing::ScopedTrace>(
        __FILE__, __LINE__, "random seed " + std::to_string(seed_));
  }
  void TearDown() override { trace_.reset(); }

  uint64_t Uniform(uint64_t lo, uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }

  uint32_t seed_;
  std::mt19937_64 rng_;

 private:
  std::unique_ptr<::testing::ScopedTrace> trace_;
};

constexpr DType kAllDTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};

// A block's values as the bytes a client sends.
class HostBlock {
 public:
  HostBlock(DType dtype, uint64_t elements)
      : dtype_(dtype), bytes_(elements * DTypeBytes(dtype)) {}

  DType dtype() const { return dtype_; }
  uint64_t size() const { return bytes_.size() / DTypeBytes(dtype_); }
  const void* data() const { return bytes_.data(); }
  void* data() { return bytes_.data(); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

  // Stores x rounded to nearest even in the block's dtype.
  void Set(uint64_t i, float x) {
    switch (dtype_) {
      case DType::kFp16:
        SetBits(i, FloatToHalf(x));
        return;
      case DType::kBf16:
        SetBits(i, FloatToBf16(x));
        return;
      case DType::kFp32:
        std::memcpy(bytes_.data() + 4 * i, &x, 4);
        return;
    }
  }
  void SetBits(uint64_t i, uint16_t bits) {
    std::memcpy(bytes_.data() + 2 * i, &bits, 2);
  }
  // The value stored at i, exactly, as a float.
  float Get(uint64_t i) const {
    if (dtype_ == DType::kFp32) {
      float x;
      std::memcpy(&x, bytes_.data() + 4 * i, 4);
      return x;
    }
    uint16_t bits;
    std::memcpy(&bits, bytes_.data() + 2 * i, 2);
    return dtype_ == DType::kFp16 ? HalfToFloat(bits) : Bf16ToFloat(bits);
  }

 private:
  DType dtype_;
  std::vector<uint8_t> bytes_;
};

// Largest magnitude the tests draw for `dtype` (its range, with margin).
inline float TestMaxMagnitude(DType dtype) {
  return dtype == DType::kFp16 ? 65504.0f : 1e38f;
}

enum class Distribution {
  kNormal,           // N(0, sigma), sigma drawn per block from 1e-3..1e3
  kOutlierChannels,  // Student-t(2) with a few channels 20-100x larger
  kTiny,             // around 1e-30 (fp16: its subnormal range, 1e-7..1e-5)
  kSubnormalScale,   // fp32/bf16 groups whose scale is a subnormal float
  kHuge,             // around 1e30..1e38 (fp16: up to +-65504)
  kMixedGroups,      // groups of zeros, tiny, normal and huge values together
};

constexpr Distribution kAllDistributions[] = {
    Distribution::kNormal, Distribution::kOutlierChannels,
    Distribution::kTiny,   Distribution::kSubnormalScale,
    Distribution::kHuge,   Distribution::kMixedGroups};

inline const char* DistributionName(Distribution d) {
  switch (d) {
    case Distribution::kNormal:
      return "normal";
    case Distribution::kOutlierChannels:
      return "outlier_channels";
    case Distribution::kTiny:
      return "tiny";
    case Distribution::kSubnormalScale:
      return "subnormal_scale";
    case Distribution::kHuge:
      return "huge";
    case Distribution::kMixedGroups:
      return "mixed_groups";
  }
  return "?";
}

// Fills `block` (of `shape`) with finite values drawn from `dist`.
inline void FillBlock(HostBlock& block, const BlockShape& shape,
                      Distribution dist, std::mt19937_64& rng) {
  const DType dtype = block.dtype();
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::student_t_distribution<float> heavy(2.0f);
  const float top = TestMaxMagnitude(dtype);
  auto clamp_top = [top](float x) {
    return std::fmax(-top, std::fmin(top, x));
  };
  const uint64_t n = block.size();
  const uint32_t d = shape.head_dim;
  switch (dist) {
    case Distribution::kNormal: {
      const float sigma = std::pow(10.0f, 3.0f * unit(rng));
      for (uint64_t i = 0; i < n; ++i) block.Set(i, normal(rng) * sigma);
      return;
    }
    case Distribution::kOutlierChannels: {
      std::vector<float> channel_gain(d, 1.0f);
      const uint32_t outliers = 1 + d / 16;
      for (uint32_t k = 0; k < outliers; ++k) {
        channel_gain[rng() % d] = 20.0f + 80.0f * (unit(rng) + 1) / 2;
      }
      for (uint64_t i = 0; i < n; ++i) {
        block.Set(i, clamp_top(heavy(rng) * channel_gain[i % d]));
      }
      return;
    }
    case Distribution::kTiny: {
      const float base = dtype == DType::kFp16 ? 1e-6f : 1e-30f;
      for (uint64_t i = 0; i < n; ++i) block.Set(i, unit(rng) * base);
      return;
    }
    case Distribution::kSubnormalScale: {
      // fp32 and bf16: absmax up to ~1e-36, so scale = absmax / 127 is a
      // subnormal float; some values are themselves subnormal. fp16 has no
      // such range: its own subnormals (< 6.1e-5) stand in.
      const float base = dtype == DType::kFp16 ? 6e-5f : 1e-37f;
      for (uint64_t i = 0; i < n; ++i) {
        block.Set(
            i, unit(rng) * base * std::pow(10.0f, -3.0f * (unit(rng) + 1) / 2));
      }
      return;
    }
    case Distribution::kHuge: {
      for (uint64_t i = 0; i < n; ++i) {
        const float x =
            dtype == DType::kFp16
                ? unit(rng) * 65504.0f
                : unit(rng) * std::pow(10.0f, 30.0f + 8 * (unit(rng) + 1) / 2);
        block.Set(i, clamp_top(x));
      }
      // The extremes themselves.
      block.Set(rng() % n, dtype == DType::kFp16 ? 65504.0f : 3e38f);
      block.Set(rng() % n, dtype == DType::kFp16 ? -65504.0f : -3e38f);
      return;
    }
    case Distribution::kMixedGroups: {
      // Runs of head_dim values share a magnitude class.
      for (uint64_t row = 0; row * d < n; ++row) {
        const int kind = static_cast<int>(rng() % 5);
        for (uint64_t i = row * d; i < (row + 1) * d && i < n; ++i) {
          float x = 0.0f;
          switch (kind) {
            case 0:
              x = 0.0f;
              break;
            case 1:
              x = (rng() & 1) ? -0.0f : 0.0f;
              break;
            case 2:
              x = unit(rng) * (dtype == DType::kFp16 ? 1e-6f : 1e-32f);
              break;
            case 3:
              x = normal(rng);
              break;
            case 4:
              x = unit(rng) * (dtype == DType::kFp16 ? 6e4f : 1e35f);
              break;
          }
          block.Set(i, x);
        }
      }
      return;
    }
  }
}

// Reads scale g of a payload.
inline float PayloadScale(const BlockLayout& layout,
                          const std::vector<uint8_t>& payload, uint64_t g) {
  float s;
  std::memcpy(&s, payload.data() + layout.scales_offset + 4 * g, 4);
  return s;
}

inline int8_t PayloadValue(const std::vector<uint8_t>& payload, uint64_t i) {
  return static_cast<int8_t>(payload[i]);
}

// A payload buffer pre-filled with random bytes, so a test sees every byte
// the quantizer fails to write.
inline std::vector<uint8_t> GarbagePayload(const BlockLayout& layout,
                                           std::mt19937_64& rng) {
  std::vector<uint8_t> p(layout.payload_bytes);
  for (size_t i = 0; i < p.size(); i += 8) {
    const uint64_t r = rng() | 0x0101010101010101ull;  // no zero byte
    std::memcpy(p.data() + i, &r, std::min<size_t>(8, p.size() - i));
  }
  return p;
}

inline std::string ShapeString(const BlockShape& s) {
  return std::to_string(s.planes) + "x" + std::to_string(s.tokens) + "x" +
         std::to_string(s.heads) + "x" + std::to_string(s.head_dim);
}

}  // namespace kvq::testing

#endif  // KVQ_TESTS_UNIT_KERNELS_TEST_UTIL_H_
