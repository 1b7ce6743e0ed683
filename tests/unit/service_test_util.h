// Helpers for the service and backend unit tests: seeded randomness, random
// finite blocks as the bytes a client sends, and Put chunks.

#ifndef KVQ_TESTS_UNIT_SERVICE_TEST_UTIL_H_
#define KVQ_TESTS_UNIT_SERVICE_TEST_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/float_convert.h"
#include "kernels/format.h"
#include "kvq/v1/kvcache.pb.h"
#include "server/service/put_chunk.h"
#include "tests/unit/kernels_test_util.h"
#include "tests/unit/wire_test_util.h"

namespace kvq::service_testing {

// A fresh seed per test, printed with every failure of the test.
using SeededTest = ::kvq::testing::SeededTest;

inline constexpr DType kAllDTypes[] = {DType::kFp16, DType::kBf16,
                                       DType::kFp32};
inline constexpr Granularity kAllGranularities[] = {
    Granularity::kPerTokenHead, Granularity::kPerChannel,
    Granularity::kPerTensor, Granularity::kGroup};

// Bytes of `elements` values of `dtype`, normal with standard deviation
// `sigma`, a few outliers, never all zero, always finite in `dtype`.
inline std::string RandomBlockBytes(DType dtype, uint64_t elements,
                                    std::mt19937_64& rng, float sigma = 1.0f) {
  std::string bytes(elements * DTypeBytes(dtype), '\0');
  std::normal_distribution<float> normal(0.0f, sigma);
  std::uniform_int_distribution<int> outlier(0, 63);
  for (uint64_t i = 0; i < elements; ++i) {
    float x = normal(rng);
    if (outlier(rng) == 0) x *= 20;
    if (i == 0 && x == 0) x = sigma;
    switch (dtype) {
      case DType::kFp16: {
        const uint16_t h = FloatToHalf(x);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
        break;
      }
      case DType::kBf16: {
        const uint16_t b = FloatToBf16(x);
        std::memcpy(bytes.data() + 2 * i, &b, 2);
        break;
      }
      case DType::kFp32:
        std::memcpy(bytes.data() + 4 * i, &x, 4);
        break;
    }
  }
  return bytes;
}

// Writes `x` as element i of a block of `dtype`.
inline void SetElement(std::string& bytes, DType dtype, uint64_t i, float x) {
  if (dtype == DType::kFp32) {
    std::memcpy(bytes.data() + 4 * i, &x, 4);
    return;
  }
  const uint16_t bits = dtype == DType::kFp16 ? FloatToHalf(x) : FloatToBf16(x);
  std::memcpy(bytes.data() + 2 * i, &bits, 2);
}

inline v1::BlockHeader WireHeader(const std::string& ns, const std::string& key,
                                  DType dtype, BlockShape shape,
                                  QuantSpec spec = {}) {
  v1::BlockHeader header;
  header.set_namespace_(ns);
  header.set_key(key);
  header.set_dtype(static_cast<v1::DType>(dtype));
  header.mutable_shape()->set_planes(shape.planes);
  header.mutable_shape()->set_tokens(shape.tokens);
  header.mutable_shape()->set_heads(shape.heads);
  header.mutable_shape()->set_head_dim(shape.head_dim);
  header.mutable_quantization()->set_granularity(
      static_cast<v1::Granularity>(spec.granularity));
  header.mutable_quantization()->set_group_size(spec.group_size);
  header.mutable_quantization()->set_format(
      static_cast<v1::Format>(spec.format));
  return header;
}

// The chunks of one block: `data` cut at `cuts` (sorted offsets inside it).
inline std::vector<v1::PutRequest> Chunks(const v1::BlockHeader& header,
                                          const std::string& data,
                                          const std::vector<uint64_t>& cuts,
                                          uint64_t sequence) {
  std::vector<v1::PutRequest> chunks;
  uint64_t start = 0;
  std::vector<uint64_t> ends = cuts;
  ends.push_back(data.size());
  for (uint64_t end : ends) {
    v1::PutRequest chunk;
    if (chunks.empty()) {
      *chunk.mutable_header() = header;
      chunk.set_sequence(sequence);
    }
    chunk.set_offset(start);
    chunk.set_data(data.substr(start, end - start));
    chunks.push_back(std::move(chunk));
    start = end;
  }
  chunks.back().set_last(true);
  return chunks;
}

using ::kvq::wire_testing::RandomSlices;

// `request` as the server's Put reads it off the wire.
inline PutChunk ReceivedChunk(const v1::PutRequest& request,
                              std::mt19937_64& rng) {
  PutChunk chunk;
  const absl::Status parsed =
      chunk.Parse(RandomSlices(request.SerializeAsString(), rng));
  EXPECT_TRUE(parsed.ok()) << parsed;
  return chunk;
}

}  // namespace kvq::service_testing

#endif  // KVQ_TESTS_UNIT_SERVICE_TEST_UTIL_H_
