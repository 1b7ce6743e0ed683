// The CPU backend: a block quantized into any list of pages (scattered or
// contiguous) reads back exactly as the scalar reference computes it.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quant_error.h"
#include "kernels/quantize.h"
#include "server/backend/backend.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

using ::kvq::service_testing::kAllDTypes;
using ::kvq::service_testing::kAllGranularities;
using ::kvq::service_testing::RandomBlockBytes;
using ::kvq::service_testing::SeededTest;
using ::kvq::service_testing::SetElement;
using ::testing::HasSubstr;

constexpr uint64_t kPageBytes = 256;

std::span<const std::byte> AsBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class CpuBackendTest : public SeededTest {
 protected:
  std::unique_ptr<Backend> NewBackend(uint64_t pages) {
    auto backend = MakeCpuBackend(ArenaOptions{pages * kPageBytes, kPageBytes});
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  BlockLayout RandomLayout(Granularity granularity) {
    const uint32_t head_dim = static_cast<uint32_t>(Uniform(1, 12)) * 4;
    const BlockShape shape{static_cast<uint32_t>(Uniform(1, 3)),
                           static_cast<uint32_t>(Uniform(1, 24)),
                           static_cast<uint32_t>(Uniform(1, 4)), head_dim};
    const QuantSpec spec{granularity,
                         granularity == Granularity::kGroup ? 4u : 0u};
    absl::StatusOr<BlockLayout> layout = MakeLayout(shape, spec);
    EXPECT_TRUE(layout.ok()) << layout.status();
    return *layout;
  }

  // `count` distinct page ids of [0, total), in random order.
  std::vector<uint32_t> ScatteredPages(uint64_t count, uint64_t total) {
    std::vector<uint32_t> ids(total);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng_);
    ids.resize(count);
    return ids;
  }

  static uint64_t PagesFor(const BlockLayout& layout) {
    return (layout.payload_bytes + kPageBytes - 1) / kPageBytes;
  }

  // What the scalar reference serves back for `data` in `out_dtype`.
  static std::string Reference(const BlockLayout& layout, DType dtype,
                               const std::string& data, DType out_dtype,
                               float* absmax) {
    std::vector<uint8_t> payload(layout.payload_bytes);
    EXPECT_TRUE(
        QuantizeReference(layout, dtype, data.data(), payload.data()).ok());
    *absmax = BlockAbsmax(layout, payload.data());
    std::string out(layout.logical_bytes(out_dtype), '\0');
    DequantizeReference(layout, payload.data(), out_dtype, out.data());
    return out;
  }

  void ExpectRoundTripMatchesReference(Backend& backend, DType dtype,
                                       const BlockLayout& layout,
                                       const std::vector<uint32_t>& pages) {
    const std::string data =
        RandomBlockBytes(dtype, layout.elements, rng_, 0.5f + Uniform(0, 100));
    DataPathTimings timings;
    absl::StatusOr<float> absmax =
        backend.QuantizeInto(layout, dtype, AsBytes(data), pages, &timings);
    ASSERT_TRUE(absmax.ok()) << absmax.status();
    for (DType out_dtype : kAllDTypes) {
      float expected_absmax = 0;
      const std::string expected =
          Reference(layout, dtype, data, out_dtype, &expected_absmax);
      EXPECT_EQ(*absmax, expected_absmax);
      std::string out(layout.logical_bytes(out_dtype), '\x5a');
      ASSERT_TRUE(backend
                      .DequantizeFrom(layout, pages, out_dtype,
                                      {reinterpret_cast<std::byte*>(out.data()),
                                       out.size()})
                      .ok());
      EXPECT_TRUE(out == expected)
          << DTypeName(dtype) << " -> " << DTypeName(out_dtype) << ", "
          << GranularityName(layout.spec.granularity) << ", "
          << layout.elements << " values over " << pages.size() << " pages";
    }
  }
};

TEST_F(CpuBackendTest, BlocksOverScatteredPagesReadBackAsTheReference) {
  auto backend = NewBackend(512);
  for (DType dtype : kAllDTypes) {
    for (Granularity granularity : kAllGranularities) {
      const BlockLayout layout = RandomLayout(granularity);
      ExpectRoundTripMatchesReference(*backend, dtype, layout,
                                      ScatteredPages(PagesFor(layout), 512));
    }
  }
}

TEST_F(CpuBackendTest, BlockInPiecesStoresWhatTheWholeBlockStores) {
  auto backend = NewBackend(512);
  EXPECT_FALSE(backend->ReadsInPlace(AsBytes("anything")));
  for (DType dtype : kAllDTypes) {
    const BlockLayout layout = RandomLayout(Granularity::kPerTokenHead);
    const std::string data = RandomBlockBytes(dtype, layout.elements, rng_);
    // Pieces of every length from 1 byte, the last one whatever remains.
    std::vector<ConstBytes> pieces;
    for (uint64_t at = 0, n = 1; at < data.size(); at += n, n = n % 13 + 1) {
      pieces.push_back(
          AsBytes(data).subspan(at, std::min<uint64_t>(n, data.size() - at)));
    }
    const std::vector<uint32_t> whole_pages =
        ScatteredPages(PagesFor(layout), 256);
    std::vector<uint32_t> piece_pages(whole_pages);
    for (uint32_t& p : piece_pages) p += 256;
    ASSERT_TRUE(
        backend->QuantizeInto(layout, dtype, AsBytes(data), whole_pages).ok());
    ASSERT_TRUE(
        backend->QuantizeInto(layout, dtype, BlockBytes(pieces), piece_pages)
            .ok());
    // The block at `pages`, read back over a poisoned buffer.
    auto read_back = [&](const std::vector<uint32_t>& pages, char poison) {
      std::string out(data.size(), poison);
      EXPECT_TRUE(backend
                      ->DequantizeFrom(
                          layout, pages, dtype,
                          {reinterpret_cast<std::byte*>(out.data()),
                           out.size()})
                      .ok());
      return out;
    };
    EXPECT_TRUE(read_back(whole_pages, '\0') == read_back(piece_pages, '\1'))
        << DTypeName(dtype);
  }
}

TEST_F(CpuBackendTest, BlocksOverContiguousPagesReadBackAsTheReference) {
  auto backend = NewBackend(512);
  for (DType dtype : kAllDTypes) {
    for (Granularity granularity : kAllGranularities) {
      const BlockLayout layout = RandomLayout(granularity);
      const uint64_t n = PagesFor(layout);
      std::vector<uint32_t> pages(n);
      std::iota(pages.begin(), pages.end(),
                static_cast<uint32_t>(Uniform(0, 512 - n)));
      ExpectRoundTripMatchesReference(*backend, dtype, layout, pages);
    }
  }
}

TEST_F(CpuBackendTest, QualitySampleSumsTheErrorOfTheBlockAsServedBack) {
  auto backend = NewBackend(512);
  for (DType dtype : kAllDTypes) {
    for (Granularity granularity : kAllGranularities) {
      const BlockLayout layout = RandomLayout(granularity);
      const std::vector<uint32_t> pages = ScatteredPages(PagesFor(layout), 512);
      const std::string data = RandomBlockBytes(dtype, layout.elements, rng_,
                                                0.5f + Uniform(0, 100));
      ErrorSums error{-1, -1};
      ASSERT_TRUE(backend
                      ->QuantizeInto(layout, dtype, AsBytes(data), pages,
                                     nullptr, &error)
                      .ok());
      float absmax = 0;
      const std::string served =
          Reference(layout, dtype, data, dtype, &absmax);
      const ErrorSums want =
          SumSquaredError(dtype, data.data(), served.data(), layout.elements);
      EXPECT_EQ(error.diff, want.diff) << GranularityName(granularity);
      EXPECT_EQ(error.norm, want.norm) << GranularityName(granularity);
      // Written (not the -1 it started as), over data that is not all zero.
      // (The difference itself can be 0: a column of one token, say,
      // quantizes to +-127 times its own scale and decodes exactly.)
      EXPECT_GT(error.norm, 0) << GranularityName(granularity);
    }
  }
}

TEST_F(CpuBackendTest, ConcurrentCallsOnDisjointPagesDoNotInterfere) {
  constexpr int kThreads = 4;
  auto backend = NewBackend(64 * kThreads);
  std::vector<uint32_t> all = ScatteredPages(64 * kThreads, 64 * kThreads);
  const uint32_t seed = seed_;
  std::vector<std::thread> threads;
  std::vector<int> mismatches(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      const std::vector<uint32_t> mine(all.begin() + 64 * t,
                                       all.begin() + 64 * (t + 1));
      for (int round = 0; round < 20; ++round) {
        const BlockShape shape{2, static_cast<uint32_t>(1 + rng() % 32), 2, 64};
        const BlockLayout layout = *MakeLayout(shape, QuantSpec{});
        const DType dtype = kAllDTypes[rng() % 3];
        const std::string data = RandomBlockBytes(dtype, layout.elements, rng);
        if (!backend->QuantizeInto(layout, dtype, AsBytes(data), mine).ok()) {
          ++mismatches[t];
          continue;
        }
        float unused;
        const std::string expected =
            Reference(layout, dtype, data, dtype, &unused);
        std::string out(expected.size(), '\0');
        (void)backend->DequantizeFrom(
            layout, mine, dtype,
            {reinterpret_cast<std::byte*>(out.data()), out.size()});
        mismatches[t] += out != expected;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << t;
}

TEST_F(CpuBackendTest, NonFiniteInputIsInvalidArgument) {
  auto backend = NewBackend(64);
  for (DType dtype : kAllDTypes) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                      std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      const BlockLayout layout = RandomLayout(Granularity::kPerTokenHead);
      std::string data = RandomBlockBytes(dtype, layout.elements, rng_);
      SetElement(data, dtype, Uniform(0, layout.elements - 1), bad);
      absl::StatusOr<float> absmax = backend->QuantizeInto(
          layout, dtype, AsBytes(data), ScatteredPages(PagesFor(layout), 64));
      EXPECT_EQ(absmax.status().code(), absl::StatusCode::kInvalidArgument)
          << DTypeName(dtype) << " with " << bad;
    }
  }
}

TEST_F(CpuBackendTest, BufferSizesMustMatchDtypeTimesShape) {
  auto backend = NewBackend(64);
  const BlockLayout layout = RandomLayout(Granularity::kPerTokenHead);
  const std::vector<uint32_t> pages = ScatteredPages(PagesFor(layout), 64);
  std::string data = RandomBlockBytes(DType::kFp16, layout.elements, rng_);
  data.pop_back();
  EXPECT_EQ(backend->QuantizeInto(layout, DType::kFp16, AsBytes(data), pages)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::string out(layout.logical_bytes(DType::kFp32) + 4, '\0');
  EXPECT_EQ(backend
                ->DequantizeFrom(layout, pages, DType::kFp32,
                                 {reinterpret_cast<std::byte*>(out.data()),
                                  out.size()})
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CpuBackendTest, PageListsThatCannotHoldThePayloadAreInternalErrors) {
  auto backend = NewBackend(64);
  const BlockLayout layout = *MakeLayout(BlockShape{2, 16, 4, 32}, QuantSpec{});
  const std::string data = RandomBlockBytes(DType::kFp32, layout.elements, rng_);
  std::vector<uint32_t> pages = ScatteredPages(PagesFor(layout), 64);

  std::vector<uint32_t> too_few(pages.begin(), pages.end() - 1);
  absl::StatusOr<float> short_list =
      backend->QuantizeInto(layout, DType::kFp32, AsBytes(data), too_few);
  EXPECT_EQ(short_list.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(short_list.status().message(), HasSubstr("pages"));

  pages[Uniform(0, pages.size() - 1)] = 64 + static_cast<uint32_t>(Uniform(0, 9));
  EXPECT_EQ(backend->QuantizeInto(layout, DType::kFp32, AsBytes(data), pages)
                .status()
                .code(),
            absl::StatusCode::kInternal);
}

TEST_F(CpuBackendTest, ArenaMustHoldAPage) {
  EXPECT_EQ(MakeCpuBackend(ArenaOptions{1 << 20, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeCpuBackend(ArenaOptions{255, 256}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CpuBackendTest, NamesItselfAndItsCpu) {
  auto backend = NewBackend(4);
  EXPECT_EQ(backend->name(), "cpu");
  EXPECT_FALSE(backend->device_name().empty());
}

#if !defined(KVQ_WITH_CUDA)
TEST(CudaBackendTest, WithoutCudaTheCudaBackendIsAFailedPrecondition) {
  EXPECT_FALSE(CudaAvailable());
  auto backend = MakeCudaBackend(ArenaOptions{1 << 20, 1 << 16}, 0);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(backend.status().message(), HasSubstr("built without CUDA"));
}
#endif

}  // namespace
}  // namespace kvq
