// The cache's operations through a real server: misses, lookups with their
// prefix, deletes, overwrites, namespaces, and pipelined puts.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_testing.h"

namespace kvq::testing {
namespace {

using ::testing::ElementsAre;

class CacheOpsTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    seed_ = FreshSeed();
    rng_.seed(seed_);
  }

  TestBlock Block(const std::string& ns, const std::string& key,
                  v1::DType dtype = v1::DTYPE_FP16,
                  v1::BlockShape shape = Shape(2, 16, 2, 64)) {
    return RandomBlock(rng_, ns, key, dtype, shape);
  }

  void PutOrFail(const TestBlock& block) {
    absl::StatusOr<PutResult> put = client_->Put(block.ToPut());
    ASSERT_TRUE(put.ok()) << put.status();
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

TEST_F(CacheOpsTest, MissIsReportedPerKeyAndHitsAroundItStillArrive) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  const TestBlock a = Block("ops", "a");
  const TestBlock c = Block("ops", "c");
  PutOrFail(a);
  PutOrFail(c);

  const std::vector<std::string> keys = {"a", "missing", "c"};
  absl::StatusOr<std::vector<GetResult>> got = client_->Get("ops", keys);
  ASSERT_TRUE(got.ok()) << got.status();  // a miss is not an RPC failure
  ASSERT_EQ(got->size(), 3u);
  EXPECT_TRUE((*got)[0].status.ok()) << (*got)[0].status;
  EXPECT_EQ((*got)[1].status.code(), absl::StatusCode::kNotFound)
      << (*got)[1].status;
  EXPECT_TRUE((*got)[1].data.empty());
  EXPECT_TRUE((*got)[2].status.ok()) << (*got)[2].status;
  EXPECT_TRUE(MatchesReference(a, a.dtype, (*got)[0].data));
  EXPECT_TRUE(MatchesReference(c, c.dtype, (*got)[2].data));

  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.gets(), 3u);
  EXPECT_EQ(stats.hits(), 2u);
  EXPECT_EQ(stats.misses(), 1u);
}

TEST_F(CacheOpsTest, LookupReportsPresenceAndTheLongestPresentPrefix) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  for (const char* key : {"k0", "k1", "k3"}) PutOrFail(Block("ops", key));
  const std::vector<std::string> keys = {"k0", "k1", "k2", "k3", "k4"};
  absl::StatusOr<LookupResult> lookup = client_->Lookup("ops", keys);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_THAT(lookup->present, ElementsAre(true, true, false, true, false));
  EXPECT_EQ(lookup->prefix_length, 2u);

  const std::vector<std::string> absent_first = {"k2", "k0"};
  lookup = client_->Lookup("ops", absent_first);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_THAT(lookup->present, ElementsAre(false, true));
  EXPECT_EQ(lookup->prefix_length, 0u);
}

TEST_F(CacheOpsTest, DeleteRemovesBlocksAndReturnsTheirPages) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  const PoolState empty = Pool();
  PutOrFail(Block("ops", "keep"));
  const PoolState one = Pool();
  PutOrFail(Block("ops", "drop"));
  ASSERT_EQ(Pool().blocks, 2u);

  const std::vector<std::string> keys = {"drop", "never-put"};
  absl::StatusOr<DeleteResult> deleted = client_->Delete("ops", keys);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted, 1u);
  EXPECT_THAT(deleted->existed, ElementsAre(true, false));
  EXPECT_EQ(Pool(), one);
  EXPECT_FALSE(Present("ops", "drop"));
  EXPECT_TRUE(Present("ops", "keep"));
  EXPECT_EQ(client_->GetOne("ops", "drop").status().code(),
            absl::StatusCode::kNotFound);

  // Deleting again is not an error; it reports nothing deleted.
  deleted = client_->Delete("ops", keys);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted, 0u);

  const std::vector<std::string> last = {"keep"};
  ASSERT_TRUE(client_->Delete("ops", last).ok());
  EXPECT_EQ(Pool(), empty);
  EXPECT_EQ(Stats().deletes(), 2u);
}

TEST_F(CacheOpsTest, OverwriteReplacesTheBlockAndItsPages) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  const PoolState empty = Pool();
  const TestBlock small = Block("ops", "k", v1::DTYPE_FP32, Shape(2, 8, 2, 64));
  const TestBlock large =
      Block("ops", "k", v1::DTYPE_BF16, Shape(2, 64, 8, 128));
  PutOrFail(large);
  const PoolState large_only = Pool();
  const std::vector<std::string> all = {"k"};
  ASSERT_TRUE(client_->Delete("ops", all).ok());
  ASSERT_EQ(Pool(), empty);

  PutOrFail(small);
  PutOrFail(large);  // replaces `small`
  EXPECT_EQ(Pool(), large_only);
  absl::StatusOr<GetResult> got = client_->GetOne("ops", "k");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->header.dtype(), v1::DTYPE_BF16);
  EXPECT_EQ(got->header.shape().tokens(), 64u);
  EXPECT_TRUE(MatchesReference(large, v1::DTYPE_BF16, got->data));

  PutOrFail(small);  // and back
  got = client_->GetOne("ops", "k");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->header.dtype(), v1::DTYPE_FP32);
  EXPECT_TRUE(MatchesReference(small, v1::DTYPE_FP32, got->data));
  EXPECT_EQ(Pool().blocks, 1u);
}

TEST_F(CacheOpsTest, NamespacesKeepEqualKeysApart) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  const TestBlock in_a = Block("model-a", "prefix-hash");
  const TestBlock in_b = Block("model-b", "prefix-hash");
  PutOrFail(in_a);
  PutOrFail(in_b);
  absl::StatusOr<GetResult> got = client_->GetOne("model-a", "prefix-hash");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MatchesReference(in_a, in_a.dtype, got->data));
  got = client_->GetOne("model-b", "prefix-hash");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MatchesReference(in_b, in_b.dtype, got->data));
  EXPECT_FALSE(Present("model-c", "prefix-hash"));

  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.blocks(), 2u);
  ASSERT_EQ(stats.namespaces_size(), 2);
  for (const v1::NamespaceStats& ns : stats.namespaces()) {
    EXPECT_EQ(ns.blocks(), 1u) << ns.namespace_();
    EXPECT_EQ(ns.logical_bytes(), in_a.data.size()) << ns.namespace_();
  }
}

TEST_F(CacheOpsTest, BinaryKeysAreOpaqueBytes) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  std::string key(32, '\0');
  for (char& c : key) c = static_cast<char>(rng_());
  key[0] = '\0';  // a NUL byte is just a byte
  const TestBlock block = Block("ops", key);
  PutOrFail(block);
  absl::StatusOr<GetResult> got = client_->GetOne("ops", key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->header.key(), key);
  EXPECT_TRUE(MatchesReference(block, block.dtype, got->data));
  EXPECT_FALSE(Present("ops", key.substr(0, 31)));
}

// A pipelining client (PutMany) has many blocks in flight on one stream;
// the server stores each while it receives the next, and still answers
// every block in the order sent, refusals among them.
TEST_F(CacheOpsTest, PipelinedPutAnswersEveryBlockInOrderAndStoresTheGoodOnes) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  constexpr int kBlocks = 48;
  std::vector<TestBlock> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    const v1::DType dtype = i % 2 ? v1::DTYPE_FP16 : v1::DTYPE_FP32;
    TestBlock block =
        Block("pipe", absl::StrCat("b", i), dtype, Shape(2, 16 + i, 4, 64));
    if (i % 7 == 3) block.shape.set_heads(0);  // refused, the stream goes on
    blocks.push_back(std::move(block));
  }
  std::vector<BlockToPut> puts;
  for (const TestBlock& b : blocks) puts.push_back(b.ToPut());
  absl::StatusOr<std::vector<PutResult>> results = client_->PutMany(puts);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), blocks.size());
  int stored = 0;
  for (int i = 0; i < kBlocks; ++i) {
    const PutResult& r = (*results)[i];
    EXPECT_EQ(r.key, blocks[i].key) << "result " << i << " out of order";
    if (i % 7 == 3) {
      EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument)
          << blocks[i].key << ": " << r.status;
      continue;
    }
    ASSERT_TRUE(r.status.ok()) << blocks[i].key << ": " << r.status;
    EXPECT_EQ(r.logical_bytes, blocks[i].data.size());
    ++stored;
    absl::StatusOr<GetResult> got = client_->GetOne("pipe", blocks[i].key);
    ASSERT_TRUE(got.ok()) << blocks[i].key << ": " << got.status();
    EXPECT_TRUE(MatchesReference(blocks[i], blocks[i].dtype, got->data))
        << blocks[i].key;
  }
  EXPECT_EQ(Stats().blocks(), static_cast<uint64_t>(stored));
}

// A Get of many keys answers every key in the order asked, whatever each
// one is: a hit (of several sizes and dtypes, some asked for twice), a miss,
// or a key that is not valid; none of them ends the call.
TEST_F(CacheOpsTest, GetOfManyKeysAnswersEveryKeyInOrderHitsMissesAndBadKeys) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  std::vector<TestBlock> blocks;
  for (int i = 0; i < 6; ++i) {
    const v1::DType dtype = i % 2 ? v1::DTYPE_FP16 : v1::DTYPE_FP32;
    blocks.push_back(Block("many", absl::StrCat("b", i), dtype,
                           Shape(2, 8 + 24 * i, 4, 64)));
    PutOrFail(blocks.back());
  }
  // What each key should come back as: a block's index, or a code.
  struct Expected {
    std::string key;
    int block = -1;
    absl::StatusCode code = absl::StatusCode::kOk;
  };
  const std::vector<Expected> expected = {
      {"b0", 0},
      {"b1", 1},
      {"gone", -1, absl::StatusCode::kNotFound},
      {"b2", 2},
      {"", -1, absl::StatusCode::kInvalidArgument},
      {"b3", 3},
      {"b3", 3},
      {"b4", 4},
      {"gone-too", -1, absl::StatusCode::kNotFound},
      {"gone-as-well", -1, absl::StatusCode::kNotFound},
      {"b5", 5},
      {"b0", 0},
  };
  std::vector<std::string> keys;
  for (const Expected& e : expected) keys.push_back(e.key);
  absl::StatusOr<std::vector<GetResult>> got = client_->Get("many", keys);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("keys[", i, "] = \"", expected[i].key, "\""));
    const GetResult& result = (*got)[i];
    EXPECT_EQ(result.status.code(), expected[i].code) << result.status;
    if (expected[i].block < 0) {
      EXPECT_TRUE(result.data.empty());
      continue;
    }
    const TestBlock& block = blocks[expected[i].block];
    EXPECT_EQ(result.header.key(), block.key);
    EXPECT_TRUE(MatchesReference(block, block.dtype, result.data));
  }
  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.hits(), 8u);
  EXPECT_EQ(stats.misses(), 3u);
}

TEST_F(CacheOpsTest, StatsCountMemoryAsStoredInPages) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  const TestBlock block = Block("ops", "k", v1::DTYPE_FP16,
                                Shape(2, 64, 8, 128));  // 256 KiB as FP16
  PutOrFail(block);
  absl::StatusOr<BlockLayout> layout = KernelLayout(block);
  ASSERT_TRUE(layout.ok());
  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.backend(), TestDevice());
  EXPECT_FALSE(stats.device_name().empty());
  EXPECT_EQ(stats.page_bytes(), 65536u);
  EXPECT_EQ(stats.pool_capacity_bytes(), 64u << 20);
  EXPECT_EQ(stats.pages_total(), (64u << 20) / 65536);
  const uint64_t pages = (layout->payload_bytes + 65535) / 65536;
  EXPECT_EQ(stats.pages_used(), pages);
  EXPECT_EQ(stats.pool_used_bytes(), pages * 65536);
  EXPECT_EQ(stats.blocks(), 1u);
  EXPECT_EQ(stats.logical_bytes(), block.data.size());
  EXPECT_EQ(stats.stored_bytes(), layout->payload_bytes);
  EXPECT_EQ(stats.bytes_saved(), block.data.size() - pages * 65536);
  EXPECT_DOUBLE_EQ(stats.compression_ratio(),
                   static_cast<double>(block.data.size()) / (pages * 65536));
  EXPECT_EQ(stats.puts(), 1u);
  EXPECT_FALSE(stats.version().empty());
}

}  // namespace
}  // namespace kvq::testing
