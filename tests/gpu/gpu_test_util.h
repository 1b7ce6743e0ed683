// Helpers for the CUDA kernel tests: the skip rule for machines without a
// GPU, device buffers, the CPU reference as the expected result, and
// byte-exact comparisons that say where the first difference is.
//
// Every GPU test derives from GpuTest: on a machine with no usable CUDA
// device (cudaGetDeviceCount fails, as it does without a driver, or finds
// none) each test skips with the one line "no CUDA device: GPU tests
// skipped". Inputs come from tests/unit/kernels_test_util.h's distributions
// with a fresh seed per test, printed with every failure.

#ifndef KVQ_TESTS_GPU_GPU_TEST_UTIL_H_
#define KVQ_TESTS_GPU_GPU_TEST_UTIL_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/format.h"
#include "kernels/quantize.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq::gpu_testing {

using ::kvq::testing::Distribution;
using ::kvq::testing::HostBlock;

inline constexpr char kNoGpuMessage[] = "no CUDA device: GPU tests skipped";

inline bool HaveCudaDevice() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define ASSERT_CUDA_OK(expr)                                     \
  do {                                                           \
    const cudaError_t kvq_test_error_ = (expr);                  \
    ASSERT_EQ(kvq_test_error_, cudaSuccess)                      \
        << #expr << ": " << cudaGetErrorString(kvq_test_error_); \
  } while (false)

// A seeded test that skips without a GPU and checks, after each test, that
// the device is still healthy (no sticky error from a kernel fault).
class GpuTest : public ::kvq::testing::SeededTest {
 protected:
  void SetUp() override {
    if (!HaveCudaDevice()) GTEST_SKIP() << kNoGpuMessage;
    SeededTest::SetUp();
  }
  void TearDown() override {
    if (HaveCudaDevice()) {
      EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    }
    SeededTest::TearDown();
  }
};

// Device memory of `bytes` bytes, freed on destruction.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&data_, std::max<size_t>(bytes, 1)) != cudaSuccess) {
      data_ = nullptr;
      ADD_FAILURE() << "cudaMalloc(" << bytes << ") failed";
    }
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T = uint8_t>
  T* get() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return bytes_; }

  void Fill(uint8_t byte) {
    EXPECT_EQ(cudaMemset(data_, byte, bytes_), cudaSuccess);
  }
  void Upload(const void* host, size_t bytes, size_t offset = 0) {
    EXPECT_EQ(cudaMemcpy(get() + offset, host, bytes, cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<uint8_t> Download() const {
    std::vector<uint8_t> host(bytes_);
    EXPECT_EQ(cudaMemcpy(host.data(), data_, bytes_, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

// Groups of exactly representable halfway values: each run of head_dim
// values holds +-127 (so a per-token-head scale is exactly 1) and values
// k + 0.5, which must round to the even neighbour.
inline void FillHalfwayValues(HostBlock& block, const BlockShape& shape,
                              std::mt19937_64& rng) {
  const uint32_t d = shape.head_dim;
  for (uint64_t i = 0; i < block.size(); ++i) {
    if (i % d == 0) {
      block.Set(i, (rng() & 1) ? 127.0f : -127.0f);
    } else {
      const int k = static_cast<int>(rng() % 253) - 126;  // -126..126
      block.Set(i, static_cast<float>(k) + ((k < 0) ? -0.5f : 0.5f));
    }
  }
}

// A random finite block: one of the unit tests' distributions, or halfway
// values; sometimes with runs of zeros (all-zero groups).
inline HostBlock RandomBlock(const BlockShape& shape, DType dtype,
                             std::mt19937_64& rng) {
  HostBlock block(dtype, shape.elements());
  const uint64_t pick =
      rng() % (std::size(kvq::testing::kAllDistributions) + 1);
  if (pick == std::size(kvq::testing::kAllDistributions)) {
    FillHalfwayValues(block, shape, rng);
  } else {
    kvq::testing::FillBlock(block, shape, kvq::testing::kAllDistributions[pick],
                            rng);
  }
  if (rng() % 3 == 0) {  // zero a few head_dim runs
    const uint64_t rows = block.size() / shape.head_dim;
    for (int r = 0; r < 3; ++r) {
      const uint64_t row = rng() % rows;
      for (uint32_t c = 0; c < shape.head_dim; ++c) {
        block.Set(row * shape.head_dim + c, 0.0f);
      }
    }
  }
  return block;
}

// Uniform values in [-r, r) with r = 10^U(-3, 3) per block, cheap enough
// for the large batches (hundreds of millions of values).
inline void FillUniformFast(HostBlock& block, std::mt19937_64& rng) {
  const float r = std::pow(10.0f, static_cast<float>(rng() % 6001) / 1000 - 3);
  for (uint64_t i = 0; i < block.size(); i += 2) {
    const uint64_t bits = rng();
    block.Set(i, r * static_cast<float>(static_cast<int32_t>(bits)) * 0x1p-31f);
    if (i + 1 < block.size()) {
      block.Set(
          i + 1,
          r * static_cast<float>(static_cast<int32_t>(bits >> 32)) * 0x1p-31f);
    }
  }
}

// max |x| of a block, exactly.
inline float HostAbsmax(const HostBlock& block) {
  float m = 0.0f;
  for (uint64_t i = 0; i < block.size(); ++i) {
    m = std::max(m, std::fabs(block.Get(i)));
  }
  return m;
}

inline std::vector<uint8_t> ReferencePayload(const BlockLayout& layout,
                                             const HostBlock& block) {
  std::vector<uint8_t> payload(layout.payload_bytes);
  const absl::Status status =
      QuantizeReference(layout, block.dtype(), block.data(), payload.data());
  EXPECT_TRUE(status.ok()) << status;
  return payload;
}

inline std::vector<uint8_t> ReferenceValues(const BlockLayout& layout,
                                            const uint8_t* payload,
                                            DType dtype) {
  std::vector<uint8_t> values(layout.logical_bytes(dtype));
  DequantizeReference(layout, payload, dtype, values.data());
  return values;
}

// "" if equal, else where the first difference is, in payload terms.
inline std::string PayloadDiff(const BlockLayout& layout,
                               const uint8_t* expected, const uint8_t* actual) {
  for (uint64_t b = 0; b < layout.payload_bytes; ++b) {
    if (expected[b] == actual[b]) continue;
    std::string where;
    if (b < layout.elements) {
      where = "value " + std::to_string(b) + " (group " +
              std::to_string(layout.GroupOf(b)) + ")";
    } else if (b < layout.scales_offset) {
      where = "padding byte " + std::to_string(b);
    } else {
      where = "scale " + std::to_string((b - layout.scales_offset) / 4);
    }
    return "payload byte " + std::to_string(b) + " of " +
           std::to_string(layout.payload_bytes) + ", " + where + ": expected " +
           std::to_string(int{expected[b]}) + " got " +
           std::to_string(int{actual[b]});
  }
  return "";
}

// "" if equal, else the first differing element.
inline std::string ValuesDiff(const std::vector<uint8_t>& expected,
                              const uint8_t* actual, DType dtype) {
  const size_t width = DTypeBytes(dtype);
  for (size_t b = 0; b < expected.size(); ++b) {
    if (expected[b] == actual[b]) continue;
    return "element " + std::to_string(b / width) + " of " +
           std::to_string(expected.size() / width) + " differs (byte " +
           std::to_string(b) + ")";
  }
  return "";
}

inline std::string CaseName(const BlockLayout& layout, DType dtype) {
  std::string s = std::string(DTypeName(dtype)) + " " +
                  std::string(GranularityName(layout.spec.granularity)) + " " +
                  kvq::testing::ShapeString(layout.shape);
  if (layout.spec.granularity == Granularity::kGroup) {
    s += " group_size " + std::to_string(layout.spec.group_size);
  }
  return s;
}

// A group size for `head_dim`: a random divisor, favouring ones > 1.
inline uint32_t RandomGroupSize(uint32_t head_dim, std::mt19937_64& rng) {
  std::vector<uint32_t> divisors;
  for (uint32_t g = 1; g <= head_dim; ++g) {
    if (head_dim % g == 0 && (g > 1 || head_dim == 1)) divisors.push_back(g);
  }
  return divisors[rng() % divisors.size()];
}

inline QuantSpec SpecFor(Granularity g, uint32_t head_dim,
                         std::mt19937_64& rng) {
  QuantSpec spec;
  spec.granularity = g;
  if (g == Granularity::kGroup)
    spec.group_size = RandomGroupSize(head_dim, rng);
  return spec;
}

constexpr Granularity kAllGranularities[] = {
    Granularity::kPerTokenHead, Granularity::kPerChannel,
    Granularity::kPerTensor, Granularity::kGroup};

// A GPU test run for every dtype x granularity (instantiate with
// KVQ_INSTANTIATE_FOR_EVERY_DTYPE_AND_GRANULARITY); Layout() gives a shape's
// layout with a random group size for group-wise.
class DtypeGranularityTest
    : public GpuTest,
      public ::testing::WithParamInterface<std::tuple<DType, Granularity>> {
 protected:
  DType dtype() const { return std::get<0>(GetParam()); }
  Granularity granularity() const { return std::get<1>(GetParam()); }

  BlockLayout Layout(const BlockShape& shape) {
    absl::StatusOr<BlockLayout> layout =
        MakeLayout(shape, SpecFor(granularity(), shape.head_dim, rng_));
    EXPECT_TRUE(layout.ok()) << layout.status();
    return *layout;
  }
};

// Shapes for GroupQuantize's small-group arrangements (quantize_groups.cu),
// one head_dim and group size each, run for every dtype (16-byte vectors:
// 8 FP16 / BF16 or 4 FP32 values). Between them they take
//   one vector per lane, groups of 1-8 vectors: teams of 1 to 8 lanes, some
//     with idle lanes (3, 5, 6 vectors);
//   four vectors of each of two groups per lane, groups of 9-128 vectors:
//     teams of 4 to 32 lanes, full (16, 32, 64, 128 vectors) or with empty
//     slots (9, 10, 15, 18, 30, 65, 125 vectors);
//   eight vectors of one group per lane, groups of 129-256 vectors: teams
//     of 32 lanes, full (256) or not (130, 250).
// (head_dim 2048 FP32, 512 vectors, is a big group: the other arrangement.)
struct SmallGroupCase {
  uint32_t head_dim;
  uint32_t group_size;  // 0: per-token-head

  // The layout of planes x tokens x heads x head_dim.
  absl::StatusOr<BlockLayout> Layout(uint32_t planes, uint32_t tokens,
                                     uint32_t heads) const {
    QuantSpec spec;
    spec.granularity =
        group_size == 0 ? Granularity::kPerTokenHead : Granularity::kGroup;
    spec.group_size = group_size;
    return MakeLayout(BlockShape{planes, tokens, heads, head_dim}, spec);
  }
};
inline constexpr SmallGroupCase kSmallGroupCases[] = {
    {8, 0},   {24, 0},  {32, 0},  {40, 0},   {64, 0},   {72, 0},
    {120, 0}, {128, 0}, {96, 24}, {120, 40}, {128, 32}, {520, 0},
    {1000, 0}, {1024, 0}, {2048, 0}, {768, 256},
};

// Test names like "fp16_per_token_head".
inline std::string DtypeGranularityName(
    const ::testing::TestParamInfo<std::tuple<DType, Granularity>>& info) {
  return std::string(DTypeName(std::get<0>(info.param))) + "_" +
         std::string(GranularityName(std::get<1>(info.param)));
}

#define KVQ_INSTANTIATE_FOR_EVERY_DTYPE_AND_GRANULARITY(suite)               \
  INSTANTIATE_TEST_SUITE_P(                                                  \
      EveryDtypeAndGranularity, suite,                                       \
      ::testing::Combine(                                                    \
          ::testing::ValuesIn(::kvq::testing::kAllDTypes),                   \
          ::testing::ValuesIn(::kvq::gpu_testing::kAllGranularities)),       \
      ::kvq::gpu_testing::DtypeGranularityName)

}  // namespace kvq::gpu_testing

#endif  // KVQ_TESTS_GPU_GPU_TEST_UTIL_H_
