// PageAllocator: O(1) all-or-nothing allocation of page ids, LIFO reuse, and
// no page handed out twice.

#include "server/pool/page_allocator.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace kvq {
namespace {

uint32_t FreshSeed() { return std::random_device{}(); }

TEST(PageAllocatorTest, FreshAllocatorHandsOutAscendingIds) {
  PageAllocator allocator(8);
  std::vector<uint32_t> pages;
  ASSERT_TRUE(allocator.Allocate(5, &pages));
  EXPECT_EQ(pages, (std::vector<uint32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(allocator.pages_used(), 5u);
  EXPECT_EQ(allocator.pages_free(), 3u);
  EXPECT_EQ(allocator.pages_total(), 8u);
}

TEST(PageAllocatorTest, AllocationIsAllOrNothing) {
  PageAllocator allocator(4);
  std::vector<uint32_t> pages = {77};  // Allocate appends; must not touch
  EXPECT_FALSE(allocator.Allocate(5, &pages));
  EXPECT_EQ(pages, (std::vector<uint32_t>{77}));
  EXPECT_EQ(allocator.pages_free(), 4u);
  EXPECT_TRUE(allocator.Allocate(4, &pages));
  EXPECT_EQ(pages.size(), 5u);
  EXPECT_FALSE(allocator.Allocate(1, &pages));
  EXPECT_TRUE(allocator.Allocate(0, &pages));
}

TEST(PageAllocatorTest, FreedPagesAreReusedFirst) {
  PageAllocator allocator(16);
  std::vector<uint32_t> pages;
  ASSERT_TRUE(allocator.Allocate(10, &pages));
  const std::vector<uint32_t> freed = {3, 7};
  allocator.Free(freed);
  std::vector<uint32_t> again;
  ASSERT_TRUE(allocator.Allocate(2, &again));
  std::sort(again.begin(), again.end());
  EXPECT_EQ(again, freed);
}

TEST(PageAllocatorTest, NoPageIsHandedOutTwiceUntilFreed) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const uint32_t total = 1 + rng() % 512;
  PageAllocator allocator(total);
  std::vector<std::vector<uint32_t>> held;
  absl::flat_hash_set<uint32_t> in_use;
  for (int step = 0; step < 5000; ++step) {
    if (held.empty() || rng() % 2 == 0) {
      const uint64_t count = rng() % (total / 4 + 2);
      std::vector<uint32_t> pages;
      const bool ok = allocator.Allocate(count, &pages);
      ASSERT_EQ(ok, count <= total - in_use.size()) << "step " << step;
      if (!ok) continue;
      ASSERT_EQ(pages.size(), count);
      for (uint32_t page : pages) {
        ASSERT_LT(page, total);
        ASSERT_TRUE(in_use.insert(page).second) << "page " << page << " twice";
      }
      held.push_back(std::move(pages));
    } else {
      const size_t victim = rng() % held.size();
      allocator.Free(held[victim]);
      for (uint32_t page : held[victim]) in_use.erase(page);
      held.erase(held.begin() + victim);
    }
    ASSERT_EQ(allocator.pages_used(), in_use.size());
  }
  for (const auto& pages : held) allocator.Free(pages);
  EXPECT_EQ(allocator.pages_used(), 0u);
}

TEST(PageAllocatorTest, ConcurrentAllocateAndFreeKeepPagesDistinct) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  constexpr uint32_t kTotal = 256;
  constexpr int kThreads = 4;
  PageAllocator allocator(kTotal);
  std::vector<std::vector<uint32_t>> kept(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed + t);
      std::vector<std::vector<uint32_t>> held;
      for (int step = 0; step < 4000; ++step) {
        if (held.empty() || rng() % 2 == 0) {
          std::vector<uint32_t> pages;
          if (allocator.Allocate(1 + rng() % 8, &pages)) {
            held.push_back(std::move(pages));
          }
        } else {
          const size_t victim = rng() % held.size();
          allocator.Free(held[victim]);
          held.erase(held.begin() + victim);
        }
      }
      for (auto& pages : held) {
        kept[t].insert(kept[t].end(), pages.begin(), pages.end());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  absl::flat_hash_set<uint32_t> all;
  for (const auto& pages : kept) {
    for (uint32_t page : pages) {
      EXPECT_TRUE(all.insert(page).second) << "page " << page << " twice";
    }
  }
  EXPECT_EQ(allocator.pages_used(), all.size());
  for (const auto& pages : kept) allocator.Free(pages);
  EXPECT_EQ(allocator.pages_used(), 0u);
}

TEST(PageAllocatorDeathTest, FreeingAPageTwiceAborts) {
  PageAllocator allocator(4);
  std::vector<uint32_t> pages;
  ASSERT_TRUE(allocator.Allocate(2, &pages));
  allocator.Free(pages);
  EXPECT_DEATH(allocator.Free(pages), "not allocated");
}

TEST(PageAllocatorDeathTest, FreeingAnUnknownPageAborts) {
  PageAllocator allocator(4);
  const std::vector<uint32_t> foreign = {4};
  EXPECT_DEATH(allocator.Free(foreign), "out of range");
}

}  // namespace
}  // namespace kvq
