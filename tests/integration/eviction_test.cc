// A full pool through a real server: LRU eviction (order observable through
// Lookup), the reject policy, and blocks that can never fit.
//
// The pool here is 4 pages of 64 KiB. An FP16 block of 2 x 16 x 8 x 128
// (64 KiB as sent) quantizes to 32 KiB + 1 KiB of scales: one page.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_testing.h"

namespace kvq::testing {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kPageBytes = 65536;
constexpr uint64_t kPoolPages = 4;

class SmallPoolTest : public ServerTest {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {absl::StrCat("--pool_bytes=", kPoolPages * kPageBytes),
            absl::StrCat("--page_bytes=", kPageBytes),
            absl::StrCat("--eviction=", policy())};
  }
  virtual std::string policy() const { return "lru"; }

  void SetUp() override {
    ServerTest::SetUp();
    seed_ = FreshSeed();
    rng_.seed(seed_);
  }

  // FP16 2 x tokens x 8 x 128: payload tokens * 2 KiB + scales, so 16
  // tokens take one page, 32 tokens two (64 KiB + 2 KiB of scales), 128
  // tokens five.
  TestBlock Block(const std::string& key, uint32_t tokens = 16) {
    return RandomBlock(rng_, "small", key, v1::DTYPE_FP16,
                       Shape(2, tokens, 8, 128));
  }

  absl::Status Put(const TestBlock& block) {
    return client_->Put(block.ToPut()).status();
  }

  std::vector<bool> Presence(const std::vector<std::string>& keys) {
    absl::StatusOr<LookupResult> lookup = client_->Lookup("small", keys);
    EXPECT_TRUE(lookup.ok()) << lookup.status();
    return lookup.ok() ? lookup->present : std::vector<bool>();
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

TEST_F(SmallPoolTest, FullPoolEvictsTheLeastRecentlyUsedBlocks) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  const TestBlock a = Block("a"), b = Block("b"), c = Block("c"),
                  d = Block("d");
  for (const TestBlock* block : {&a, &b, &c, &d}) {
    ASSERT_TRUE(Put(*block).ok());
  }
  ASSERT_EQ(Pool().pages_used, kPoolPages);

  // Reading `a` makes it the most recently used; `b` is now the oldest.
  ASSERT_TRUE(client_->GetOne("small", "a").ok());
  ASSERT_TRUE(Put(Block("e")).ok());
  EXPECT_THAT(Presence({"a", "b", "c", "d", "e"}),
              ElementsAre(true, false, true, true, true));

  // Lookup does not count as a use: `c` stays the oldest and goes next.
  EXPECT_THAT(Presence({"c"}), ElementsAre(true));
  ASSERT_TRUE(Put(Block("f")).ok());
  EXPECT_THAT(Presence({"a", "c", "d", "e", "f"}),
              ElementsAre(true, false, true, true, true));

  // A two-page block evicts the two oldest: `d`, then `a`.
  ASSERT_TRUE(Put(Block("g", 32)).ok());
  EXPECT_THAT(Presence({"a", "d", "e", "f", "g"}),
              ElementsAre(false, false, true, true, true));

  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.evictions(), 4u);
  EXPECT_EQ(stats.blocks(), 3u);
  EXPECT_EQ(stats.pages_used(), kPoolPages);

  // What survived is intact.
  absl::StatusOr<GetResult> got = client_->GetOne("small", "a");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  got = client_->GetOne("small", "e");
  ASSERT_TRUE(got.ok()) << got.status();
}

TEST_F(SmallPoolTest, SurvivorsOfEvictionReadBackIntact) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  std::vector<TestBlock> blocks;
  for (int i = 0; i < 10; ++i) {
    blocks.push_back(Block(absl::StrCat("k", i)));
    ASSERT_TRUE(Put(blocks.back()).ok()) << i;
  }
  // The last four put are the ones held.
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<GetResult> got = client_->GetOne("small", blocks[i].key);
    if (i < 6) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << i;
    } else {
      ASSERT_TRUE(got.ok()) << i << ": " << got.status();
      EXPECT_TRUE(MatchesReference(blocks[i], v1::DTYPE_FP16, got->data)) << i;
    }
  }
  EXPECT_EQ(Stats().evictions(), 6u);
}

TEST_F(SmallPoolTest, BlockBiggerThanThePoolIsRefusedAndEvictsNothing) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  ASSERT_TRUE(Put(Block("a")).ok());
  ASSERT_TRUE(Put(Block("b")).ok());
  const PoolState before = Pool();

  // 5 pages of payload in a 4-page pool.
  const TestBlock huge = Block("huge", 128);
  const absl::Status status = Put(huge);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("pool"));
  EXPECT_EQ(Pool(), before);
  EXPECT_THAT(Presence({"a", "b", "huge"}), ElementsAre(true, true, false));
  EXPECT_EQ(Stats().evictions(), 0u);
}

class RejectPolicyTest : public SmallPoolTest {
 protected:
  std::string policy() const override { return "reject"; }
};

TEST_F(RejectPolicyTest, FullPoolRefusesNewBlocksAndKeepsTheOldOnes) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  for (const char* key : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(Put(Block(key)).ok()) << key;
  }
  const PoolState full = Pool();
  const absl::Status refused = Put(Block("e"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_EQ(Pool(), full);
  EXPECT_THAT(Presence({"a", "b", "c", "d", "e"}),
              ElementsAre(true, true, true, true, false));
  EXPECT_EQ(Stats().evictions(), 0u);

  // Room made by a delete is used.
  const std::vector<std::string> drop = {"b"};
  ASSERT_TRUE(client_->Delete("small", drop).ok());
  EXPECT_TRUE(Put(Block("e")).ok());
  EXPECT_THAT(Presence({"a", "b", "c", "d", "e"}),
              ElementsAre(true, false, true, true, true));
}

}  // namespace
}  // namespace kvq::testing
