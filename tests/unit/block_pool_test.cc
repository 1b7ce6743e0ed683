// BlockPool: pages, block index, LRU eviction, pins and atomic commits.
//
// Sizes are in pages of 256 bytes unless a test says otherwise; payloads are
// drawn so that they end anywhere inside their last page.

#include "server/pool/block_pool.h"

#include <algorithm>
#include <iterator>
#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvq {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

constexpr uint64_t kPage = 256;

uint32_t FreshSeed() { return std::random_device{}(); }

std::unique_ptr<BlockPool> NewPool(uint64_t pages,
                                   EvictionPolicy policy = EvictionPolicy::kLru,
                                   uint64_t page_bytes = kPage) {
  auto pool = BlockPool::Create(PoolOptions{pages * page_bytes, page_bytes,
                                            policy});
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

BlockMeta MetaWithTag(uint64_t tag) {
  BlockMeta meta;
  meta.dtype = DType::kFp16;
  meta.logical_bytes = tag;  // unique per put: tells versions apart
  meta.absmax = static_cast<float>(tag % 1000) + 0.5f;
  return meta;
}

// A payload of exactly `pages` pages, ending anywhere in the last one.
uint64_t PayloadOfPages(uint64_t pages, std::mt19937& rng) {
  if (pages == 0) return 0;
  return (pages - 1) * kPage + 1 + rng() % kPage;
}

// Reserves `pages` pages and commits them under (ns, key).
absl::Status Put(BlockPool& pool, std::string_view ns, std::string_view key,
                 uint64_t pages, uint64_t tag) {
  absl::StatusOr<Reservation> reservation = pool.Reserve(pages * kPage);
  if (!reservation.ok()) return reservation.status();
  pool.Commit(*std::move(reservation), ns, key, MetaWithTag(tag));
  return absl::OkStatus();
}

std::vector<uint32_t> PagesOf(BlockPool& pool, std::string_view ns,
                              std::string_view key) {
  std::optional<PinnedBlock> pin = pool.Pin(ns, key);
  if (!pin) return {};
  return {pin->pages().begin(), pin->pages().end()};
}

// ---- Create and ParseEvictionPolicy ----

TEST(BlockPoolCreateTest, RejectsPageBytesThatAreNotAPositiveMultipleOf256) {
  for (uint64_t page_bytes : {0, 100, 257, 65535}) {
    auto pool = BlockPool::Create(PoolOptions{1 << 20, page_bytes});
    ASSERT_FALSE(pool.ok()) << page_bytes;
    EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(pool.status().message(), HasSubstr("page_bytes"));
    EXPECT_THAT(pool.status().message(), HasSubstr(absl::StrCat(page_bytes)));
  }
}

TEST(BlockPoolCreateTest, RejectsACapacityBelowOnePage) {
  auto pool = BlockPool::Create(PoolOptions{4095, 4096});
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pool.status().message(), HasSubstr("--pool_bytes"));
}

TEST(BlockPoolCreateTest, RoundsCapacityDownToWholePages) {
  std::mt19937 rng(FreshSeed());
  const uint64_t pages = 1 + rng() % 1000;
  auto pool = BlockPool::Create(
      PoolOptions{pages * kPage + rng() % kPage, kPage,
                  EvictionPolicy::kReject});
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ((*pool)->pages_total(), pages);
  EXPECT_EQ((*pool)->page_bytes(), kPage);
  EXPECT_EQ((*pool)->eviction(), EvictionPolicy::kReject);
  const PoolStats stats = (*pool)->Stats();
  EXPECT_EQ(stats.pages_total, pages);
  EXPECT_EQ(stats.page_bytes, kPage);
  EXPECT_EQ(stats.pages_used, 0u);
  EXPECT_EQ(stats.blocks, 0u);
}

TEST(ParseEvictionPolicyTest, AcceptsLruAndRejectAndRoundTripsNames) {
  for (EvictionPolicy policy : {EvictionPolicy::kLru, EvictionPolicy::kReject}) {
    auto parsed = ParseEvictionPolicy(EvictionPolicyName(policy));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, policy);
  }
  EXPECT_EQ(*ParseEvictionPolicy("lru"), EvictionPolicy::kLru);
  EXPECT_EQ(*ParseEvictionPolicy("reject"), EvictionPolicy::kReject);
}

TEST(ParseEvictionPolicyTest, RejectsOtherNamesNamingTheFlagAndTheValue) {
  for (std::string_view name : {"", "LRU", "fifo", "lru "}) {
    auto parsed = ParseEvictionPolicy(name);
    ASSERT_FALSE(parsed.ok()) << name;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr("--eviction"));
    EXPECT_THAT(parsed.status().message(),
                HasSubstr(absl::StrCat("\"", std::string(name), "\"")));
  }
}

// ---- Allocation and reuse ----

TEST(BlockPoolTest, ReserveTakesCeilOfPayloadOverPageBytesDistinctPages) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const uint64_t total = 64 + rng() % 64;
  auto pool = NewPool(total);
  std::vector<Reservation> held;
  absl::flat_hash_set<uint32_t> seen;
  uint64_t used = 0;
  while (true) {
    const uint64_t pages = 1 + rng() % 8;
    if (used + pages > total) break;
    const uint64_t payload = PayloadOfPages(pages, rng);
    auto reservation = pool->Reserve(payload);
    ASSERT_TRUE(reservation.ok()) << reservation.status();
    ASSERT_EQ(reservation->pages().size(), pages) << "payload " << payload;
    EXPECT_EQ(reservation->payload_bytes(), payload);
    for (uint32_t page : reservation->pages()) {
      EXPECT_LT(page, total);
      EXPECT_TRUE(seen.insert(page).second) << "page " << page << " twice";
    }
    used += pages;
    held.push_back(*std::move(reservation));
    EXPECT_EQ(pool->Stats().pages_used, used);
  }
  EXPECT_EQ(pool->Stats().blocks, 0u);  // reserved, not visible
}

TEST(BlockPoolTest, ZeroByteReservationHoldsNoPages) {
  auto pool = NewPool(2);
  auto reservation = pool->Reserve(0);
  ASSERT_TRUE(reservation.ok()) << reservation.status();
  EXPECT_TRUE(reservation->pages().empty());
  pool->Commit(*std::move(reservation), "ns", "empty", MetaWithTag(1));
  EXPECT_TRUE(pool->Contains("ns", "empty"));
  EXPECT_EQ(pool->Stats().pages_used, 0u);
}

TEST(BlockPoolTest, ReservationDroppedUncommittedReturnsItsPages) {
  std::mt19937 rng(FreshSeed());
  const uint64_t total = 16 + rng() % 16;
  auto pool = NewPool(total);
  {
    auto reservation = pool->Reserve(PayloadOfPages(total, rng));
    ASSERT_TRUE(reservation.ok()) << reservation.status();
    EXPECT_EQ(pool->Stats().pages_used, total);
  }
  EXPECT_EQ(pool->Stats().pages_used, 0u);
  EXPECT_EQ(pool->Stats().evictions, 0u);
  // The whole pool is free again.
  EXPECT_TRUE(pool->Reserve(total * kPage).ok());
}

TEST(BlockPoolTest, MovedReservationReturnsItsPagesExactlyOnce) {
  auto pool = NewPool(8);
  auto first = pool->Reserve(3 * kPage);
  auto second = pool->Reserve(2 * kPage);
  ASSERT_TRUE(first.ok() && second.ok());
  Reservation moved(*std::move(first));
  EXPECT_TRUE(first->pages().empty());
  EXPECT_EQ(moved.pages().size(), 3u);
  EXPECT_EQ(pool->Stats().pages_used, 5u);
  moved = *std::move(second);  // returns the 3 pages `moved` held
  EXPECT_EQ(pool->Stats().pages_used, 2u);
  moved = Reservation();
  EXPECT_EQ(pool->Stats().pages_used, 0u);
}

TEST(BlockPoolTest, BlockIsInvisibleUntilCommitted) {
  auto pool = NewPool(8);
  auto reservation = pool->Reserve(2 * kPage);
  ASSERT_TRUE(reservation.ok());
  EXPECT_FALSE(pool->Contains("ns", "key"));
  EXPECT_FALSE(pool->Pin("ns", "key").has_value());
  EXPECT_EQ(pool->Stats().blocks, 0u);
  pool->Commit(*std::move(reservation), "ns", "key", MetaWithTag(7));
  EXPECT_TRUE(pool->Contains("ns", "key"));
  EXPECT_EQ(pool->Stats().blocks, 1u);
}

TEST(BlockPoolTest, CommittedBlockKeepsItsReservedPagesAndMeta) {
  std::mt19937 rng(FreshSeed());
  auto pool = NewPool(32);
  const uint64_t payload = PayloadOfPages(1 + rng() % 8, rng);
  auto reservation = pool->Reserve(payload);
  ASSERT_TRUE(reservation.ok());
  const std::vector<uint32_t> pages(reservation->pages().begin(),
                                    reservation->pages().end());
  BlockMeta meta = MetaWithTag(1000 + rng() % 1000);
  meta.dtype = DType::kBf16;
  pool->Commit(*std::move(reservation), "model-a", std::string("k\0y", 3),
               meta);
  auto pin = pool->Pin("model-a", std::string("k\0y", 3));
  ASSERT_TRUE(pin.has_value());
  EXPECT_EQ(std::vector<uint32_t>(pin->pages().begin(), pin->pages().end()),
            pages);
  EXPECT_EQ(pin->meta().dtype, DType::kBf16);
  EXPECT_EQ(pin->meta().logical_bytes, meta.logical_bytes);
  EXPECT_EQ(pin->meta().absmax, meta.absmax);
  EXPECT_EQ(pin->ns(), "model-a");
  EXPECT_EQ(pin->key(), std::string("k\0y", 3));
  EXPECT_EQ(pin->payload_bytes(), payload);
  EXPECT_FALSE(pool->Contains("model-a", "k"));  // keys are opaque bytes
}

TEST(BlockPoolTest, SameKeyInTwoNamespacesIsTwoBlocks) {
  auto pool = NewPool(8);
  ASSERT_TRUE(Put(*pool, "a", "key", 1, 1).ok());
  ASSERT_TRUE(Put(*pool, "b", "key", 2, 2).ok());
  EXPECT_EQ(pool->Stats().blocks, 2u);
  EXPECT_EQ(pool->Pin("a", "key")->meta().logical_bytes, 1u);
  EXPECT_EQ(pool->Pin("b", "key")->meta().logical_bytes, 2u);
  EXPECT_TRUE(pool->Erase("a", "key"));
  EXPECT_FALSE(pool->Contains("a", "key"));
  EXPECT_TRUE(pool->Contains("b", "key"));
}

TEST(BlockPoolTest, EraseReturnsFalseForAMissingKeyAndChangesNothing) {
  auto pool = NewPool(4);
  ASSERT_TRUE(Put(*pool, "ns", "present", 2, 1).ok());
  EXPECT_FALSE(pool->Erase("ns", "absent"));
  EXPECT_FALSE(pool->Erase("other", "present"));
  EXPECT_EQ(pool->Stats().blocks, 1u);
  EXPECT_EQ(pool->Stats().pages_used, 2u);
  EXPECT_TRUE(pool->Erase("ns", "present"));
  EXPECT_FALSE(pool->Erase("ns", "present"));
  EXPECT_EQ(pool->Stats().pages_used, 0u);
}

TEST(BlockPoolTest, PagesOfAnErasedBlockAreReusedWithoutEviction) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const uint64_t per_block = 1 + rng() % 4;
  const int blocks = 4 + rng() % 8;
  auto pool = NewPool(per_block * blocks);
  for (int i = 0; i < blocks; ++i) {
    ASSERT_TRUE(Put(*pool, "ns", absl::StrCat(i), per_block, i).ok());
  }
  ASSERT_EQ(pool->Stats().pages_used, pool->pages_total());
  const std::string victim = absl::StrCat(rng() % blocks);
  const std::vector<uint32_t> freed = PagesOf(*pool, "ns", victim);
  ASSERT_TRUE(pool->Erase("ns", victim));
  auto reservation = pool->Reserve(per_block * kPage);
  ASSERT_TRUE(reservation.ok()) << reservation.status();
  EXPECT_THAT(std::vector<uint32_t>(reservation->pages().begin(),
                                    reservation->pages().end()),
              UnorderedElementsAreArray(freed));
  EXPECT_EQ(pool->Stats().evictions, 0u);
  EXPECT_EQ(pool->Stats().blocks, static_cast<uint64_t>(blocks - 1));
}

// ---- LRU order ----

TEST(BlockPoolLruTest, EvictsTheLeastRecentlyUsedBlockFirst) {
  auto pool = NewPool(4);
  for (const char* key : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(Put(*pool, "ns", key, 1, 1).ok());
  }
  // Recency now (most recent first): d c b a.
  pool->Pin("ns", "a");           // a pin touches: a d c b
  EXPECT_TRUE(pool->Contains("ns", "b"));  // Contains does not touch
  auto first = pool->Reserve(kPage);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(pool->Contains("ns", "b"));
  EXPECT_TRUE(pool->Contains("ns", "a"));
  EXPECT_TRUE(pool->Contains("ns", "c"));
  auto second = pool->Reserve(kPage);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(pool->Contains("ns", "c"));
  EXPECT_TRUE(pool->Contains("ns", "a"));
  EXPECT_TRUE(pool->Contains("ns", "d"));
  EXPECT_EQ(pool->Stats().evictions, 2u);
  EXPECT_EQ(pool->Stats().blocks, 2u);
}

TEST(BlockPoolLruTest, CommitMakesABlockMostRecentlyUsed) {
  auto pool = NewPool(4);
  for (const char* key : {"a", "b", "c"}) {
    ASSERT_TRUE(Put(*pool, "ns", key, 1, 1).ok());
  }
  // Recency: c b a. Overwriting a (into the free page) makes it a c b.
  ASSERT_TRUE(Put(*pool, "ns", "a", 1, 2).ok());
  EXPECT_EQ(pool->Stats().evictions, 0u);
  ASSERT_TRUE(Put(*pool, "ns", "d", 1, 3).ok());  // old a's page: d a c b
  EXPECT_EQ(pool->Stats().evictions, 0u);
  ASSERT_TRUE(Put(*pool, "ns", "e", 1, 4).ok());  // evicts b
  EXPECT_FALSE(pool->Contains("ns", "b"));
  ASSERT_TRUE(Put(*pool, "ns", "f", 1, 5).ok());  // evicts c
  EXPECT_FALSE(pool->Contains("ns", "c"));
  EXPECT_TRUE(pool->Contains("ns", "a"));
  EXPECT_EQ(pool->Pin("ns", "a")->meta().logical_bytes, 2u);
  EXPECT_EQ(pool->Stats().evictions, 2u);
}

TEST(BlockPoolLruTest, EvictsOnlyAsManyBlocksAsTheReservationNeeds) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const int blocks = 4 + rng() % 12;
  const uint64_t per_block = 1 + rng() % 3;
  auto pool = NewPool(blocks * per_block);
  for (int i = 0; i < blocks; ++i) {
    ASSERT_TRUE(Put(*pool, "ns", absl::StrCat(i), per_block, i).ok());
  }
  const uint64_t needed = 1 + rng() % (blocks * per_block);
  const uint64_t expected_evictions = (needed + per_block - 1) / per_block;
  auto reservation = pool->Reserve(PayloadOfPages(needed, rng));
  ASSERT_TRUE(reservation.ok()) << reservation.status();
  EXPECT_EQ(pool->Stats().evictions, expected_evictions);
  for (int i = 0; i < blocks; ++i) {
    EXPECT_EQ(pool->Contains("ns", absl::StrCat(i)),
              i >= static_cast<int>(expected_evictions))
        << "block " << i << ", needed " << needed;
  }
}

// ---- Pins ----

TEST(BlockPoolPinTest, PinnedBlocksAreNeverEvicted) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const int total = 8 + rng() % 24;
  auto pool = NewPool(total);
  std::vector<PinnedBlock> pins;
  std::vector<std::string> pinned_keys;
  for (int i = 0; i < total; ++i) {
    const std::string key = absl::StrCat("old", i);
    ASSERT_TRUE(Put(*pool, "ns", key, 1, i).ok());
    if (rng() % 3 == 0) {
      pins.push_back(*pool->Pin("ns", key));
      pinned_keys.push_back(key);
    }
  }
  for (int i = 0; i < 4 * total; ++i) {
    const uint64_t pages = 1 + rng() % (total - pinned_keys.size());
    ASSERT_TRUE(Put(*pool, "ns", absl::StrCat("new", i), pages, i).ok());
    for (const std::string& key : pinned_keys) {
      ASSERT_TRUE(pool->Contains("ns", key)) << key << " evicted while pinned";
    }
  }
  EXPECT_EQ(pool->Stats().pages_pinned, pinned_keys.size());
}

TEST(BlockPoolPinTest, ResourceExhaustedWhenOnlyPinnedBlocksRemain) {
  auto pool = NewPool(12);
  std::vector<PinnedBlock> pins;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Put(*pool, "ns", absl::StrCat(i), 3, i).ok());
    pins.push_back(*pool->Pin("ns", absl::StrCat(i)));
  }
  auto reservation = pool->Reserve(4 * kPage);
  ASSERT_FALSE(reservation.ok());
  EXPECT_EQ(reservation.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(reservation.status().message(),
              HasSubstr("pool full: 3 pages free, 4 needed, 9 held by pinned "
                        "blocks"));
  EXPECT_EQ(pool->Stats().evictions, 0u);
  EXPECT_EQ(pool->Stats().blocks, 3u);
  EXPECT_TRUE(pool->Reserve(3 * kPage).ok());  // what is free still works
  pins.pop_back();  // one block becomes evictable
  EXPECT_TRUE(pool->Reserve(4 * kPage).ok());
  EXPECT_EQ(pool->Stats().evictions, 1u);
}

TEST(BlockPoolPinTest, DoesNotEvictWhenEvictingCouldNotSatisfyTheRequest) {
  auto pool = NewPool(8);
  ASSERT_TRUE(Put(*pool, "ns", "small", 2, 1).ok());
  ASSERT_TRUE(Put(*pool, "ns", "big", 5, 2).ok());
  auto pin = pool->Pin("ns", "big");
  // 1 free + 2 evictable < 4 needed: evicting "small" would be for nothing.
  auto reservation = pool->Reserve(4 * kPage);
  ASSERT_FALSE(reservation.ok());
  EXPECT_EQ(reservation.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(pool->Contains("ns", "small"));
  EXPECT_EQ(pool->Stats().evictions, 0u);
}

TEST(BlockPoolPinTest, ErasingAPinnedBlockDefersFreeingItsPages) {
  std::mt19937 rng(FreshSeed());
  const uint64_t pages = 1 + rng() % 8;
  auto pool = NewPool(pages);
  ASSERT_TRUE(Put(*pool, "ns", "key", pages, 42).ok());
  std::optional<PinnedBlock> pin = pool->Pin("ns", "key");
  ASSERT_TRUE(pin.has_value());
  const std::vector<uint32_t> held(pin->pages().begin(), pin->pages().end());
  EXPECT_TRUE(pool->Erase("ns", "key"));
  EXPECT_FALSE(pool->Contains("ns", "key"));
  PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.blocks, 0u);
  EXPECT_EQ(stats.logical_bytes, 0u);
  EXPECT_EQ(stats.pages_used, pages);    // still held by the reader
  EXPECT_EQ(stats.pages_pinned, pages);
  EXPECT_EQ(std::vector<uint32_t>(pin->pages().begin(), pin->pages().end()),
            held);
  EXPECT_EQ(pin->meta().logical_bytes, 42u);
  auto refused = pool->Reserve(kPage);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  pin.reset();
  EXPECT_EQ(pool->Stats().pages_used, 0u);
  EXPECT_EQ(pool->Stats().pages_pinned, 0u);
  EXPECT_TRUE(pool->Reserve(pages * kPage).ok());
}

TEST(BlockPoolPinTest, PagesReturnOnlyWhenTheLastOfSeveralPinsDrops) {
  auto pool = NewPool(4);
  ASSERT_TRUE(Put(*pool, "ns", "key", 3, 1).ok());
  std::optional<PinnedBlock> first = pool->Pin("ns", "key");
  std::optional<PinnedBlock> second = pool->Pin("ns", "key");
  ASSERT_TRUE(first && second);
  PinnedBlock moved = *std::move(second);
  second.reset();  // a moved-from PinnedBlock holds no pin
  EXPECT_TRUE(pool->Erase("ns", "key"));
  first.reset();
  EXPECT_EQ(pool->Stats().pages_used, 3u);
  EXPECT_EQ(pool->Stats().pages_pinned, 3u);
  ASSERT_TRUE(Put(*pool, "ns", "other", 1, 2).ok());
  moved = *pool->Pin("ns", "other");  // releases the last pin of "key"
  EXPECT_EQ(moved.key(), "other");
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.pages_used, 1u);
  EXPECT_EQ(stats.pages_pinned, 1u);
}

TEST(BlockPoolPinTest, PinnedBlockAndReservationMayOutliveThePool) {
  auto pool = NewPool(4);
  ASSERT_TRUE(Put(*pool, "ns", "key", 2, 9).ok());
  std::optional<PinnedBlock> pin = pool->Pin("ns", "key");
  auto reservation = pool->Reserve(kPage);
  ASSERT_TRUE(pin && reservation.ok());
  pool.reset();
  EXPECT_EQ(pin->meta().logical_bytes, 9u);
  EXPECT_EQ(pin->pages().size(), 2u);
  pin.reset();          // must not touch the destroyed pool
  reservation = Reservation();
}

// ---- Overwrite ----

TEST(BlockPoolOverwriteTest, ReplacesAtomicallyAndFreesTheOldPages) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  auto pool = NewPool(16);
  const uint64_t old_pages = 1 + rng() % 8;
  const uint64_t new_pages = 1 + rng() % 8;
  ASSERT_TRUE(Put(*pool, "ns", "key", old_pages, 1).ok());
  auto reservation = pool->Reserve(new_pages * kPage);
  ASSERT_TRUE(reservation.ok());
  const std::vector<uint32_t> new_page_ids(reservation->pages().begin(),
                                           reservation->pages().end());
  // Until Commit, readers see the old version.
  EXPECT_EQ(pool->Pin("ns", "key")->meta().logical_bytes, 1u);
  EXPECT_EQ(pool->Stats().pages_used, old_pages + new_pages);
  pool->Commit(*std::move(reservation), "ns", "key", MetaWithTag(2));
  auto pin = pool->Pin("ns", "key");
  ASSERT_TRUE(pin.has_value());
  EXPECT_EQ(pin->meta().logical_bytes, 2u);
  EXPECT_EQ(std::vector<uint32_t>(pin->pages().begin(), pin->pages().end()),
            new_page_ids);
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.pages_used, new_pages);
  EXPECT_EQ(stats.blocks, 1u);
  EXPECT_EQ(stats.logical_bytes, 2u);
  EXPECT_EQ(stats.stored_bytes, new_pages * kPage);
  EXPECT_EQ(stats.evictions, 0u);  // a replaced block is not an eviction
}

TEST(BlockPoolOverwriteTest, OldVersionStaysReadableWhilePinned) {
  auto pool = NewPool(16);
  ASSERT_TRUE(Put(*pool, "ns", "key", 3, 1).ok());
  std::optional<PinnedBlock> old_pin = pool->Pin("ns", "key");
  const std::vector<uint32_t> old_pages(old_pin->pages().begin(),
                                        old_pin->pages().end());
  ASSERT_TRUE(Put(*pool, "ns", "key", 5, 2).ok());
  EXPECT_EQ(old_pin->meta().logical_bytes, 1u);
  EXPECT_EQ(std::vector<uint32_t>(old_pin->pages().begin(),
                                  old_pin->pages().end()),
            old_pages);
  EXPECT_EQ(pool->Pin("ns", "key")->meta().logical_bytes, 2u);
  EXPECT_EQ(pool->Stats().pages_used, 8u);
  EXPECT_EQ(pool->Stats().blocks, 1u);
  old_pin.reset();
  EXPECT_EQ(pool->Stats().pages_used, 5u);
  EXPECT_EQ(pool->Stats().pages_pinned, 0u);
  EXPECT_TRUE(pool->Contains("ns", "key"));
}

// ---- Policy and limits ----

TEST(BlockPoolPolicyTest, RejectPolicyRefusesWhenFullAndKeepsEveryBlock) {
  auto pool = NewPool(4, EvictionPolicy::kReject);
  for (const char* key : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(Put(*pool, "ns", key, 1, 1).ok());
  }
  auto reservation = pool->Reserve(kPage);
  ASSERT_FALSE(reservation.ok());
  EXPECT_EQ(reservation.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(reservation.status().message(),
              HasSubstr("pool full: 0 pages free, 1 needed, 0 held by pinned "
                        "blocks"));
  EXPECT_THAT(reservation.status().message(), HasSubstr("--eviction=reject"));
  EXPECT_EQ(pool->Stats().blocks, 4u);
  EXPECT_EQ(pool->Stats().evictions, 0u);
  ASSERT_TRUE(pool->Erase("ns", "c"));
  EXPECT_TRUE(pool->Reserve(kPage).ok());
}

TEST(BlockPoolPolicyTest, BlockBiggerThanTheWholePoolIsRefusedWithSizes) {
  for (EvictionPolicy policy : {EvictionPolicy::kLru, EvictionPolicy::kReject}) {
    auto pool = NewPool(16, policy, 65536);
    auto reservation = pool->Reserve(40 * 65536);
    ASSERT_FALSE(reservation.ok());
    EXPECT_EQ(reservation.status().code(),
              absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(reservation.status().message(),
              "block needs 40 pages (2.5 MiB) but the pool has 16 pages "
              "(1 MiB) in total; raise --pool_bytes");
    EXPECT_FALSE(pool->Reserve(16 * 65536 + 1).ok());
    EXPECT_TRUE(pool->Reserve(16 * 65536).ok());
  }
}

TEST(BlockPoolPolicyTest, ABlockAsLargeAsThePoolEvictsEverythingUnderLru) {
  std::mt19937 rng(FreshSeed());
  const uint64_t total = 4 + rng() % 16;
  auto pool = NewPool(total);
  for (uint64_t i = 0; i < total; ++i) {
    ASSERT_TRUE(Put(*pool, "ns", absl::StrCat(i), 1, i).ok());
  }
  ASSERT_TRUE(Put(*pool, "ns", "whole", total, 99).ok());
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.blocks, 1u);
  EXPECT_EQ(stats.evictions, total);
  EXPECT_EQ(stats.pages_used, total);
}

// ---- Stats ----

TEST(BlockPoolStatsTest, CountsVisibleBlocksPerNamespace) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  auto pool = NewPool(1024);
  std::map<std::string, NamespaceUsage> expected;
  for (int i = 0; i < 40; ++i) {
    const std::string ns = absl::StrCat("model-", rng() % 4);
    const uint64_t payload = PayloadOfPages(1 + rng() % 8, rng);
    const uint64_t logical = 1 + rng() % 100000;
    auto reservation = pool->Reserve(payload);
    ASSERT_TRUE(reservation.ok());
    BlockMeta meta = MetaWithTag(logical);
    pool->Commit(*std::move(reservation), ns, absl::StrCat(i), meta);
    NamespaceUsage& usage = expected[ns];
    usage.ns = ns;
    ++usage.blocks;
    usage.logical_bytes += logical;
    usage.stored_bytes += payload;
  }
  auto check = [&] {
    const PoolStats stats = pool->Stats();
    ASSERT_EQ(stats.namespaces.size(), expected.size());
    uint64_t blocks = 0, logical = 0, stored = 0;
    auto it = expected.begin();
    for (const NamespaceUsage& usage : stats.namespaces) {  // sorted by ns
      EXPECT_EQ(usage.ns, it->second.ns);
      EXPECT_EQ(usage.blocks, it->second.blocks);
      EXPECT_EQ(usage.logical_bytes, it->second.logical_bytes);
      EXPECT_EQ(usage.stored_bytes, it->second.stored_bytes);
      blocks += usage.blocks;
      logical += usage.logical_bytes;
      stored += usage.stored_bytes;
      ++it;
    }
    EXPECT_EQ(stats.blocks, blocks);
    EXPECT_EQ(stats.logical_bytes, logical);
    EXPECT_EQ(stats.stored_bytes, stored);
  };
  check();
  // Erasing every block of one namespace removes it from the list.
  const std::string gone = expected.begin()->first;
  for (int i = 0; i < 40; ++i) pool->Erase(gone, absl::StrCat(i));
  expected.erase(gone);
  check();
}

// ---- Random cycles against a model ----

// A straightforward model of the pool's contract: blocks by id, an LRU list
// of unpinned visible blocks, and the page each id owns. The pool must agree
// with it after every operation, under both policies.
class PoolModel {
 public:
  struct Block {
    std::string ns, key;
    std::vector<uint32_t> pages;
    uint64_t payload = 0;
    uint64_t tag = 0;
    int pins = 0;
    bool visible = false;
  };

  PoolModel(uint64_t total, EvictionPolicy policy)
      : total_(total), policy_(policy), owner_(total, kNone) {}

  // What Reserve must do: returns false if it must refuse; otherwise evicts
  // (in the model) what the pool must evict and returns true.
  bool Reserve(uint64_t needed) {
    if (needed > total_) return false;
    if (free() >= needed) return true;
    if (policy_ == EvictionPolicy::kReject) return false;
    if (free() + lru_pages() < needed) return false;
    while (free() < needed) {
      const int victim = lru_.back();
      Unpublish(victim);
      ++evictions_;
    }
    return true;
  }

  // Records pages handed out by the pool; false if one was not free.
  bool Take(std::span<const uint32_t> pages, int id) {
    for (uint32_t page : pages) {
      if (page >= total_ || owner_[page] != kNone) return false;
      owner_[page] = id;
    }
    return true;
  }
  void Give(std::span<const uint32_t> pages) {
    for (uint32_t page : pages) owner_[page] = kNone;
  }

  void Commit(int id, Block block) {
    auto it = index_.find({block.ns, block.key});
    if (it != index_.end()) Unpublish(it->second);
    block.visible = true;
    index_[{block.ns, block.key}] = id;
    lru_.push_front(id);
    blocks_[id] = std::move(block);
  }

  std::optional<int> Find(const std::string& ns, const std::string& key) const {
    auto it = index_.find({ns, key});
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }

  void Pin(int id) {
    if (blocks_[id].pins++ == 0) lru_.remove(id);
  }
  void Unpin(int id) {
    Block& block = blocks_[id];
    if (--block.pins > 0) return;
    if (block.visible) {
      lru_.push_front(id);
    } else {
      Release(id);
    }
  }
  bool Erase(const std::string& ns, const std::string& key) {
    auto id = Find(ns, key);
    if (id) Unpublish(*id);
    return id.has_value();
  }

  // (ns, key) of a random visible block, if any.
  std::optional<std::pair<std::string, std::string>> AnyVisible(
      std::mt19937& rng) const {
    if (index_.empty()) return std::nullopt;
    return std::next(index_.begin(), rng() % index_.size())->first;
  }

  const Block& block(int id) const { return blocks_.at(id); }
  uint64_t used() const { return total_ - free(); }
  uint64_t evictions() const { return evictions_; }
  uint64_t visible_blocks() const { return index_.size(); }
  uint64_t pinned_pages() const {
    uint64_t pages = 0;
    for (const auto& [id, block] : blocks_) {
      if (block.pins > 0) pages += block.pages.size();
    }
    return pages;
  }
  uint64_t stored_bytes() const {
    uint64_t bytes = 0;
    for (const auto& [key, id] : index_) bytes += blocks_.at(id).payload;
    return bytes;
  }
  uint64_t logical_bytes() const {
    uint64_t bytes = 0;
    for (const auto& [key, id] : index_) bytes += blocks_.at(id).tag;
    return bytes;
  }
  // Visible blocks per namespace, sorted by namespace as Stats() lists them.
  std::vector<NamespaceUsage> namespaces() const {
    std::map<std::string, NamespaceUsage> by_ns;
    for (const auto& [key, id] : index_) {
      const Block& block = blocks_.at(id);
      NamespaceUsage& usage = by_ns[block.ns];
      usage.ns = block.ns;
      ++usage.blocks;
      usage.logical_bytes += block.tag;
      usage.stored_bytes += block.payload;
    }
    std::vector<NamespaceUsage> list;
    for (auto& [ns, usage] : by_ns) list.push_back(usage);
    return list;
  }

 private:
  static constexpr int kNone = -1;

  uint64_t free() const {
    return std::count(owner_.begin(), owner_.end(), kNone);
  }
  uint64_t lru_pages() const {
    uint64_t pages = 0;
    for (int id : lru_) pages += blocks_.at(id).pages.size();
    return pages;
  }
  void Unpublish(int id) {
    Block& block = blocks_[id];
    index_.erase({block.ns, block.key});
    block.visible = false;
    if (block.pins == 0) {
      lru_.remove(id);
      Release(id);
    }
  }
  void Release(int id) {
    Give(blocks_[id].pages);
    blocks_.erase(id);
  }

  const uint64_t total_;
  const EvictionPolicy policy_;
  std::vector<int> owner_;  // block id by page, or kNone
  std::map<int, Block> blocks_;  // live: visible or pinned
  std::map<std::pair<std::string, std::string>, int> index_;
  std::list<int> lru_;  // front = most recent
  uint64_t evictions_ = 0;
};

class BlockPoolRandomTest : public testing::TestWithParam<EvictionPolicy> {};

TEST_P(BlockPoolRandomTest, ThousandsOfCyclesAgreeWithTheModelAndLeakNothing) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const uint64_t total = 16 + rng() % 48;
  auto pool = NewPool(total, GetParam());
  PoolModel model(total, GetParam());
  struct Held {
    PinnedBlock pin;
    int id;
  };
  std::vector<Held> held;
  int next_id = 0;
  auto random_name = [&](const char* prefix, int n) {
    return absl::StrCat(prefix, rng() % n);
  };

  for (int step = 0; step < 6000; ++step) {
    SCOPED_TRACE(testing::Message() << "step " << step);
    std::string ns = random_name("ns", 3);
    std::string key = random_name("key", 12);
    const int op = rng() % 16;
    if (op >= 6 && rng() % 4 != 0) {  // reads and erases mostly hit
      if (auto visible = model.AnyVisible(rng)) std::tie(ns, key) = *visible;
    }
    switch (op) {
      case 0:
      case 1:
      case 2:
      case 3:
      case 4:
      case 5: {  // put (or overwrite), sometimes abandoned before commit
        // Now and then a block too big for what is evictable, or the pool.
        const uint64_t needed =
            rng() % 64 == 0 ? total - 2 + rng() % 4 : 1 + rng() % (total / 4);
        const uint64_t payload = PayloadOfPages(needed, rng);
        const bool expect_ok = model.Reserve(needed);
        auto reservation = pool->Reserve(payload);
        ASSERT_EQ(reservation.ok(), expect_ok) << reservation.status();
        if (!reservation.ok()) {
          ASSERT_EQ(reservation.status().code(),
                    absl::StatusCode::kResourceExhausted);
          break;
        }
        const int id = next_id++;
        ASSERT_TRUE(model.Take(reservation->pages(), id))
            << "pool handed out a page that is in use";
        if (rng() % 6 == 0) {
          model.Give(reservation->pages());  // dropped uncommitted
          break;
        }
        PoolModel::Block block{ns, key,
                               {reservation->pages().begin(),
                                reservation->pages().end()},
                               payload, 1 + rng() % 100000};
        pool->Commit(*std::move(reservation), ns, key, MetaWithTag(block.tag));
        model.Commit(id, std::move(block));
        break;
      }
      case 6:
      case 7:
      case 8:
      case 9: {  // pin, and hold the pin a while
        std::optional<PinnedBlock> pin = pool->Pin(ns, key);
        const std::optional<int> id = model.Find(ns, key);
        ASSERT_EQ(pin.has_value(), id.has_value());
        if (!pin) break;
        const PoolModel::Block& block = model.block(*id);
        ASSERT_EQ(pin->meta().logical_bytes, block.tag);
        ASSERT_EQ(std::vector<uint32_t>(pin->pages().begin(),
                                        pin->pages().end()),
                  block.pages);
        ASSERT_EQ(pin->payload_bytes(), block.payload);
        model.Pin(*id);
        if (held.size() >= 8 || rng() % 3 == 0) {  // a quick read
          pin.reset();
          model.Unpin(*id);
        } else {
          held.push_back(Held{*std::move(pin), *id});
        }
        break;
      }
      case 10:
      case 11: {  // release a held pin
        if (held.empty()) break;
        const size_t i = rng() % held.size();
        const int id = held[i].id;
        held.erase(held.begin() + i);
        model.Unpin(id);
        break;
      }
      case 12:
      case 13: {  // erase
        ASSERT_EQ(pool->Erase(ns, key), model.Erase(ns, key));
        break;
      }
      default: {  // contains: must not change anything
        ASSERT_EQ(pool->Contains(ns, key), model.Find(ns, key).has_value());
        break;
      }
    }
    const PoolStats stats = pool->Stats();
    ASSERT_EQ(stats.pages_used, model.used());
    ASSERT_EQ(stats.pages_pinned, model.pinned_pages());
    ASSERT_EQ(stats.blocks, model.visible_blocks());
    ASSERT_EQ(stats.evictions, model.evictions());
    ASSERT_EQ(stats.stored_bytes, model.stored_bytes());
    ASSERT_EQ(stats.logical_bytes, model.logical_bytes());
    const std::vector<NamespaceUsage> expected = model.namespaces();
    ASSERT_EQ(stats.namespaces.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_EQ(stats.namespaces[i].ns, expected[i].ns);
      ASSERT_EQ(stats.namespaces[i].blocks, expected[i].blocks);
      ASSERT_EQ(stats.namespaces[i].logical_bytes, expected[i].logical_bytes);
      ASSERT_EQ(stats.namespaces[i].stored_bytes, expected[i].stored_bytes);
    }
  }

  held.clear();
  for (int n = 0; n < 3; ++n) {
    for (int k = 0; k < 12; ++k) {
      pool->Erase(absl::StrCat("ns", n), absl::StrCat("key", k));
    }
  }
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.pages_used, 0u);
  EXPECT_EQ(stats.pages_pinned, 0u);
  EXPECT_EQ(stats.blocks, 0u);
  EXPECT_EQ(stats.logical_bytes, 0u);
  EXPECT_EQ(stats.stored_bytes, 0u);
  EXPECT_TRUE(stats.namespaces.empty());
}

INSTANTIATE_TEST_SUITE_P(
    BothPolicies, BlockPoolRandomTest,
    testing::Values(EvictionPolicy::kLru, EvictionPolicy::kReject),
    [](const testing::TestParamInfo<EvictionPolicy>& info) {
      return std::string(EvictionPolicyName(info.param));
    });

// ---- Concurrency ----

// Several threads reserve, commit, overwrite, pin, read and erase at random.
// While a thread pins a block, every page of it must still carry the tag its
// writer stamped (no page handed to two blocks); at the end, the books must
// balance and erasing everything must return every page.
TEST(BlockPoolConcurrencyTest, RandomOperationsFromManyThreadsKeepTheBooks) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  constexpr uint64_t kTotal = 96;
  constexpr int kThreads = 6;
  constexpr int kKeys = 24;
  auto pool = NewPool(kTotal);
  std::vector<std::atomic<uint64_t>> stamp(kTotal);
  std::atomic<uint64_t> next_tag{1};
  std::atomic<int> torn_reads{0};
  std::atomic<int> unexpected_errors{0};

  auto pages_carry = [&](const PinnedBlock& pin) {
    for (uint32_t page : pin.pages()) {
      if (stamp[page].load() != pin.meta().logical_bytes) return false;
    }
    return true;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed + t);
      std::vector<PinnedBlock> held;
      for (int step = 0; step < 4000; ++step) {
        const std::string ns = absl::StrCat("ns", rng() % 2);
        const std::string key = absl::StrCat("key", rng() % kKeys);
        switch (rng() % 6) {
          case 0:
          case 1: {
            auto reservation = pool->Reserve(PayloadOfPages(1 + rng() % 8, rng));
            if (!reservation.ok()) {
              if (reservation.status().code() !=
                  absl::StatusCode::kResourceExhausted) {
                ++unexpected_errors;
              }
              break;
            }
            const uint64_t tag = next_tag++;
            for (uint32_t page : reservation->pages()) stamp[page] = tag;
            if (rng() % 5 == 0) break;  // abandoned put
            pool->Commit(*std::move(reservation), ns, key, MetaWithTag(tag));
            break;
          }
          case 2: {
            std::optional<PinnedBlock> pin = pool->Pin(ns, key);
            if (!pin) break;
            if (!pages_carry(*pin)) ++torn_reads;
            if (held.size() < 2 && rng() % 2 == 0) {
              held.push_back(*std::move(pin));
            }
            break;
          }
          case 3:
            if (!held.empty()) {
              if (!pages_carry(held.back())) ++torn_reads;
              held.pop_back();
            }
            break;
          case 4:
            pool->Erase(ns, key);
            break;
          case 5:
            pool->Contains(ns, key);
            break;
        }
      }
      for (const PinnedBlock& pin : held) {
        if (!pages_carry(pin)) ++torn_reads;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(torn_reads.load(), 0);
  EXPECT_EQ(unexpected_errors.load(), 0);
  // Nothing is pinned or reserved now: every used page belongs to exactly one
  // visible block.
  PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.pages_pinned, 0u);
  uint64_t visible_pages = 0, visible_blocks = 0, stored = 0;
  absl::flat_hash_set<uint32_t> pages_seen;
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < kKeys; ++k) {
      auto pin = pool->Pin(absl::StrCat("ns", n), absl::StrCat("key", k));
      if (!pin) continue;
      ++visible_blocks;
      visible_pages += pin->pages().size();
      stored += pin->payload_bytes();
      for (uint32_t page : pin->pages()) {
        EXPECT_TRUE(pages_seen.insert(page).second) << "page " << page;
      }
    }
  }
  stats = pool->Stats();
  EXPECT_EQ(stats.pages_used, visible_pages);
  EXPECT_EQ(stats.blocks, visible_blocks);
  EXPECT_EQ(stats.stored_bytes, stored);
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < kKeys; ++k) {
      pool->Erase(absl::StrCat("ns", n), absl::StrCat("key", k));
    }
  }
  stats = pool->Stats();
  EXPECT_EQ(stats.pages_used, 0u);
  EXPECT_EQ(stats.blocks, 0u);
  EXPECT_EQ(stats.logical_bytes, 0u);
  EXPECT_TRUE(stats.namespaces.empty());
}

// ---- Commit misuse ----

TEST(BlockPoolDeathTest, CommittingAnEmptyReservationAborts) {
  auto pool = NewPool(4);
  EXPECT_DEATH(pool->Commit(Reservation(), "ns", "key", MetaWithTag(1)),
               "empty");
}

TEST(BlockPoolDeathTest, CommittingAnotherPoolsReservationAborts) {
  auto pool = NewPool(4);
  auto other = NewPool(4);
  EXPECT_DEATH(
      pool->Commit(*other->Reserve(kPage), "ns", "key", MetaWithTag(1)),
      "another pool");
}

}  // namespace
}  // namespace kvq
