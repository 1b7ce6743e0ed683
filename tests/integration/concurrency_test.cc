// Many clients at once against a real server: each on its own connection,
// putting and getting distinct keys and keys they all share, while one of
// them deletes and re-puts the shared keys. Every answer must be a whole,
// correct block or a miss: never a torn or mixed block.

#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_testing.h"

namespace kvq::testing {
namespace {

constexpr int kClients = 8;
constexpr int kOwnBlocks = 6;
constexpr int kSharedBlocks = 4;
constexpr int kReadRounds = 3;
constexpr char kNs[] = "concurrent";

TEST_F(ServerTest, EightClientsPutAndGetDistinctAndSharedKeysConcurrently) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const v1::DType dtypes[] = {v1::DTYPE_FP16, v1::DTYPE_BF16, v1::DTYPE_FP32};

  // Shared blocks: every client puts the same bytes under the same key.
  std::vector<TestBlock> shared;
  for (int j = 0; j < kSharedBlocks; ++j) {
    shared.push_back(RandomBlock(rng, kNs, absl::StrCat("shared-", j),
                                 dtypes[j % 3], Shape(2, 16, 4, 64), {},
                                 Values::kOutlierChannels));
  }
  std::vector<std::vector<TestBlock>> own(kClients);
  for (int i = 0; i < kClients; ++i) {
    for (int j = 0; j < kOwnBlocks; ++j) {
      own[i].push_back(RandomBlock(rng, kNs, absl::StrCat("client-", i, "-", j),
                                   dtypes[(i + j) % 3],
                                   Shape(2, 8 + 8 * j, 4, 64)));
    }
  }
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(NewClient());
    ASSERT_NE(clients.back(), nullptr);
  }

  std::latch start(kClients), puts_done(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Client& client = *clients[i];
      std::vector<BlockToPut> puts;
      for (const TestBlock& block : own[i]) puts.push_back(block.ToPut());
      for (const TestBlock& block : shared) puts.push_back(block.ToPut());
      start.arrive_and_wait();

      absl::StatusOr<std::vector<PutResult>> stored = client.PutMany(puts);
      EXPECT_TRUE(stored.ok()) << "client " << i << ": " << stored.status();
      if (stored.ok()) {
        for (const PutResult& result : *stored) {
          EXPECT_TRUE(result.status.ok())
              << "client " << i << ", " << result.key << ": " << result.status;
        }
      }
      puts_done.arrive_and_wait();

      std::vector<std::string> keys;
      std::vector<const TestBlock*> expected;
      for (const TestBlock& block : own[i]) {
        keys.push_back(block.key);
        expected.push_back(&block);
      }
      for (const TestBlock& block : shared) {
        keys.push_back(block.key);
        expected.push_back(&block);
      }
      for (int round = 0; round < kReadRounds; ++round) {
        if (i == 0) {
          // Client 0 churns the shared keys while the others read them.
          std::vector<std::string> shared_keys;
          for (const TestBlock& block : shared)
            shared_keys.push_back(block.key);
          EXPECT_TRUE(client.Delete(kNs, shared_keys).ok());
          std::vector<BlockToPut> again;
          for (const TestBlock& block : shared) again.push_back(block.ToPut());
          EXPECT_TRUE(client.PutMany(again).ok());
          continue;
        }
        absl::StatusOr<std::vector<GetResult>> got = client.Get(kNs, keys);
        ASSERT_TRUE(got.ok()) << "client " << i << ": " << got.status();
        for (size_t k = 0; k < keys.size(); ++k) {
          const GetResult& result = (*got)[k];
          const bool is_shared = k >= own[i].size();
          if (is_shared &&
              result.status.code() == absl::StatusCode::kNotFound) {
            continue;  // caught between client 0's delete and re-put
          }
          ASSERT_TRUE(result.status.ok())
              << "client " << i << ", " << keys[k] << ": " << result.status;
          EXPECT_TRUE(
              MatchesReference(*expected[k], expected[k]->dtype, result.data))
              << "client " << i << ", " << keys[k];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  // Afterwards every block is held, whole.
  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.blocks(), uint64_t{kClients * kOwnBlocks + kSharedBlocks});
  uint64_t logical = 0;
  for (const auto& blocks : own) {
    for (const TestBlock& block : blocks) logical += block.data.size();
  }
  for (const TestBlock& block : shared) logical += block.data.size();
  EXPECT_EQ(stats.logical_bytes(), logical);
  EXPECT_EQ(stats.evictions(), 0u);
  for (const TestBlock& block : shared) {
    absl::StatusOr<GetResult> got = client_->GetOne(kNs, block.key);
    ASSERT_TRUE(got.ok()) << block.key << ": " << got.status();
    EXPECT_TRUE(MatchesReference(block, block.dtype, got->data));
  }
}

}  // namespace
}  // namespace kvq::testing
