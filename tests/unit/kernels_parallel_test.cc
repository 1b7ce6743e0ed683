// Specification of kernels/parallel.h: every index exactly once, from any
// number of concurrent callers, nested calls included.

#include <algorithm>
#include <atomic>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/parallel.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq {
namespace {

using kvq::testing::SeededTest;

void ExpectEachIndexOnce(WorkerPool& pool, size_t n, size_t grain) {
  std::vector<std::atomic<int>> hits(n);
  std::atomic<size_t> largest_range{0};
  pool.ParallelFor(n, grain, [&](size_t begin, size_t end) {
    ASSERT_LT(begin, end);
    ASSERT_LE(end, n);
    size_t len = end - begin, seen = largest_range.load();
    while (len > seen && !largest_range.compare_exchange_weak(seen, len)) {
    }
    for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(hits[i].load(), 1)
        << "index " << i << " n=" << n << " grain=" << grain;
  }
  EXPECT_LE(largest_range.load(), std::max<size_t>(grain, 1));
}

class WorkerPoolTest : public SeededTest {};

TEST_F(WorkerPoolTest, EveryIndexRunsExactlyOnceInRangesOfAtMostGrain) {
  for (int workers : {0, 1, 3}) {
    WorkerPool pool(workers);
    EXPECT_EQ(pool.concurrency(), workers + 1);
    for (int trial = 0; trial < 50; ++trial) {
      const size_t n = rng_() % 5000;
      const size_t grain = rng_() % 300;  // 0 counts as 1
      ExpectEachIndexOnce(pool, n, grain);
    }
  }
}

TEST_F(WorkerPoolTest, ConcurrentAndNestedCallersAllComplete) {
  WorkerPool pool(3);
  std::vector<std::thread> callers;
  std::atomic<uint64_t> total{0};
  const int kCallers = 6, kLoops = 30;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&] {
      for (int l = 0; l < kLoops; ++l) {
        pool.ParallelFor(64, 4, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) {
            // A nested loop on the same pool.
            pool.ParallelFor(
                10, 3, [&](size_t b, size_t e) { total.fetch_add(e - b); });
          }
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), uint64_t{kCallers} * kLoops * 64 * 10);
}

TEST(ParallelFor, DefaultPoolCoversTheRange) {
  std::vector<std::atomic<int>> hits(100000);
  ParallelFor(hits.size(), 1000, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << i;
  EXPECT_GE(WorkerPool::Default().concurrency(), 1);
}

// Every copy behaves the same with cached and with streaming writes.
class ParallelCopyTest : public SeededTest,
                         public ::testing::WithParamInterface<CopyWrites> {};

INSTANTIATE_TEST_SUITE_P(
    Writes, ParallelCopyTest,
    ::testing::Values(CopyWrites::kCached, CopyWrites::kStreaming),
    [](const ::testing::TestParamInfo<CopyWrites>& info) {
      return info.param == CopyWrites::kCached ? "Cached" : "Streaming";
    });

TEST_P(ParallelCopyTest, CopiesExactlyTheRangeForAnySizeAndAlignment) {
  // Sizes below, at and past the 64-byte streaming loop's step and a
  // task's 256 KiB, from sources and to destinations at unrelated
  // alignments (streaming aligns the destination, not the source).
  for (const size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{63},
                         size_t{64}, size_t{65}, size_t{4095},
                         (size_t{256} << 10) - 1, size_t{256} << 10,
                         (size_t{3} << 20) + 7}) {
    const size_t src_offset = rng_() % 16;
    const size_t offset = rng_() % 16;
    std::vector<char> src(n + 16), dst(n + 32, '\x5a');
    for (char& c : src) c = static_cast<char>(rng_());
    ParallelCopy(dst.data() + offset, src.data() + src_offset, n, GetParam());
    for (size_t i = 0; i < dst.size(); ++i) {
      const bool inside = i >= offset && i < offset + n;
      ASSERT_EQ(dst[i], inside ? src[i - offset + src_offset] : '\x5a')
          << "byte " << i << " of a " << n << "-byte copy to offset "
          << offset << " from offset " << src_offset;
    }
  }
}

TEST_P(ParallelCopyTest, GatheredPiecesLandWhereTheySayAndNowhereElse) {
  // Pieces of every size class (empty, a few bytes, across task bounds)
  // gathered from scattered sources into one destination, in order.
  const size_t kSizes[] = {0, 1, 7, 4096, (size_t{256} << 10) + 3, 0, 100,
                           (size_t{600} << 10)};
  std::vector<std::vector<char>> sources;
  size_t total = 0;
  for (const size_t n : kSizes) {
    sources.emplace_back(n);
    for (char& c : sources.back()) c = static_cast<char>(rng_());
    total += n;
  }
  std::vector<char> dst(total + 2, '\x5a');
  std::vector<CopyPiece> pieces;
  size_t at = 1;
  for (const std::vector<char>& src : sources) {
    pieces.push_back(CopyPiece{dst.data() + at, src.data(), src.size()});
    at += src.size();
  }
  ParallelCopy(pieces, GetParam());
  EXPECT_EQ(dst.front(), '\x5a');
  EXPECT_EQ(dst.back(), '\x5a');
  at = 1;
  for (const std::vector<char>& src : sources) {
    ASSERT_TRUE(std::equal(src.begin(), src.end(), dst.begin() + at))
        << "piece of " << src.size() << " bytes at " << at;
    at += src.size();
  }
}

TEST_P(ParallelCopyTest, ParallelGatherPutsPiecesEndToEndInOrder) {
  const size_t kSizes[] = {3, 0, (size_t{256} << 10) + 5, 1, 9000};
  std::vector<std::vector<std::byte>> sources;
  std::vector<std::span<const std::byte>> pieces;
  std::vector<std::byte> expected;
  for (const size_t n : kSizes) {
    sources.emplace_back(n);
    for (std::byte& b : sources.back()) b = static_cast<std::byte>(rng_());
    expected.insert(expected.end(), sources.back().begin(),
                    sources.back().end());
  }
  for (const auto& src : sources) pieces.emplace_back(src);
  std::vector<std::byte> dst(expected.size() + 1, std::byte{0x5a});
  ParallelGather(dst.data(), pieces, GetParam());
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), dst.begin()));
  EXPECT_EQ(dst.back(), std::byte{0x5a});
}

}  // namespace
}  // namespace kvq
