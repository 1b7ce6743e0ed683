// Round trips through a real server: what is put comes back as the reference
// quantization says, for every dtype, granularity and size, and in other
// dtypes when asked.

#include <algorithm>
#include <chrono>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/element_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_testing.h"

namespace kvq::testing {
namespace {

using ::testing::HasSubstr;

class RoundTripTest
    : public ServerTest,
      public ::testing::WithParamInterface<WireDTypeAndGranularity> {};

TEST_P(RoundTripTest, EveryBlockComesBackAsTheReferenceWithinTheBound) {
  const auto [dtype, granularity] = GetParam();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);

  // head_dim 72 is not a multiple of 8 or 16: vector paths meet their tails.
  const uint32_t group_size = granularity == v1::GRANULARITY_GROUP ? 24 : 0;
  std::vector<TestBlock> blocks;
  for (Values values :
       {Values::kNormal, Values::kOutlierChannels, Values::kWideRange}) {
    blocks.push_back(RandomBlock(
        rng, "roundtrip", absl::StrCat("block-", blocks.size()), dtype,
        Shape(2, 24, 4, 72), Quant(granularity, group_size), values));
  }
  std::vector<BlockToPut> puts;
  for (const TestBlock& block : blocks) puts.push_back(block.ToPut());
  absl::StatusOr<std::vector<PutResult>> stored = client_->PutMany(puts);
  ASSERT_TRUE(stored.ok()) << stored.status();
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE((*stored)[i].status.ok()) << (*stored)[i].status;
    EXPECT_EQ((*stored)[i].key, blocks[i].key);
    EXPECT_EQ((*stored)[i].logical_bytes, blocks[i].data.size());
    absl::StatusOr<BlockLayout> layout = KernelLayout(blocks[i]);
    ASSERT_TRUE(layout.ok());
    EXPECT_EQ((*stored)[i].stored_bytes, layout->payload_bytes);
  }

  std::vector<std::string> keys;
  for (const TestBlock& block : blocks) keys.push_back(block.key);
  absl::StatusOr<std::vector<GetResult>> got = client_->Get("roundtrip", keys);
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < blocks.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("block ", i));
    const GetResult& result = (*got)[i];
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_EQ(result.header.key(), blocks[i].key);
    EXPECT_EQ(result.header.dtype(), dtype);
    EXPECT_EQ(result.header.shape().SerializeAsString(),
              blocks[i].shape.SerializeAsString());
    EXPECT_EQ(result.header.quantization().granularity(), granularity);
    EXPECT_TRUE(MatchesReference(blocks[i], dtype, result.data));
  }
}

KVQ_INSTANTIATE_FOR_EVERY_WIRE_DTYPE_AND_GRANULARITY(RoundTripTest);

TEST_F(ServerTest, BlocksFrom4KiBTo64MiBComeBackWholeThroughChunks) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  // FP16 blocks of 4 KiB, 64 KiB, exactly one 1 MiB chunk, 1 MiB and a
  // partial chunk, 12 MiB (over the server's 8 MiB message limit: only
  // chunking carries it) and 64 MiB (once: it is the slow one).
  struct Case {
    v1::BlockShape shape;
    uint64_t bytes;
  };
  const Case cases[] = {
      {Shape(2, 4, 2, 128), 4096},
      {Shape(2, 16, 8, 128), 65536},
      {Shape(2, 64, 32, 128), 1 << 20},
      {Shape(2, 65, 32, 128), (1 << 20) + (16 << 10)},
      {Shape(2, 96, 32, 1024), 12 << 20},
      {Shape(2, 1024, 128, 128), 64 << 20},
  };
  uint64_t logical = 0;
  for (const Case& c : cases) {
    const TestBlock block = RandomBlock(
        rng, "sizes", absl::StrCat("block-", c.bytes), v1::DTYPE_FP16, c.shape);
    SCOPED_TRACE(block.key);
    ASSERT_EQ(block.data.size(), c.bytes);
    absl::StatusOr<PutResult> put = client_->Put(block.ToPut());
    ASSERT_TRUE(put.ok()) << put.status();
    EXPECT_EQ(put->logical_bytes, c.bytes);
    logical += c.bytes;

    absl::StatusOr<GetResult> got = client_->GetOne(block.ns, block.key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(MatchesReference(block, v1::DTYPE_FP16, got->data));
  }
  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.blocks(), std::size(cases));
  EXPECT_EQ(stats.logical_bytes(), logical);
}

TEST_F(ServerTest, BlocksWithAnOwnerAreSentFromTheirMemoryAndComeBackWhole) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  // One chunk, a partial last chunk, and many chunks, pipelined in one
  // PutMany; each block's bytes live only in what its owner holds.
  const v1::BlockShape shapes[] = {Shape(2, 16, 8, 128), Shape(2, 65, 32, 128),
                                   Shape(2, 96, 32, 1024)};
  std::vector<TestBlock> blocks;
  blocks.reserve(std::size(shapes));  // the puts view their names
  std::vector<BlockToPut> puts;
  std::vector<std::weak_ptr<const std::string>> owners;
  for (const v1::BlockShape& shape : shapes) {
    blocks.push_back(RandomBlock(rng, "owned",
                                 absl::StrCat("block-", puts.size()),
                                 v1::DTYPE_FP16, shape));
    auto bytes = std::make_shared<const std::string>(blocks.back().data);
    BlockToPut put = blocks.back().ToPut();
    put.data = *bytes;
    put.data_owner = bytes;
    owners.push_back(bytes);
    puts.push_back(std::move(put));
  }
  absl::StatusOr<std::vector<PutResult>> results = client_->PutMany(puts);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const PutResult& result : *results) EXPECT_TRUE(result.status.ok());
  puts.clear();  // only gRPC may hold the owners now, and not for long
  for (int wait_ms = 0; wait_ms < 5000; wait_ms += 10) {
    if (std::all_of(owners.begin(), owners.end(),
                    [](const auto& owner) { return owner.expired(); })) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (const auto& owner : owners) EXPECT_TRUE(owner.expired());

  for (const TestBlock& block : blocks) {
    absl::StatusOr<GetResult> got = client_->GetOne(block.ns, block.key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(MatchesReference(block, v1::DTYPE_FP16, got->data));
  }
}

TEST_F(ServerTest, OddChunkSizesReassembleExactlyInBothDirections) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  // 4099 bytes divides neither the block nor an element: chunks end inside
  // FP32 values, and the last chunk is short.
  ClientOptions options;
  options.chunk_bytes = 4099;
  std::unique_ptr<Client> client = NewClient(options);
  ASSERT_NE(client, nullptr);
  const TestBlock block = RandomBlock(rng, "chunks", "odd", v1::DTYPE_FP32,
                                      Shape(2, 32, 4, 128));  // 128 KiB
  absl::StatusOr<PutResult> put = client->Put(block.ToPut());
  ASSERT_TRUE(put.ok()) << put.status();
  absl::StatusOr<GetResult> got = client->GetOne(block.ns, block.key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MatchesReference(block, v1::DTYPE_FP32, got->data));
}

// GetInto writes each hit into the caller's memory, in the dtype asked,
// chunk by chunk; a miss and a destination of the wrong size leave their
// memory as it was.
TEST_F(ServerTest, GetIntoWritesEachBlockIntoItsDestinationAndNothingElse) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::vector<TestBlock> blocks = {
      RandomBlock(rng, "into", "small", v1::DTYPE_FP16, Shape(1, 16, 4, 64)),
      // 2.5 MiB as FP32: three chunks of the client's 1 MiB.
      RandomBlock(rng, "into", "chunks", v1::DTYPE_FP16, Shape(2, 80, 8, 128)),
      RandomBlock(rng, "into", "wrong-size", v1::DTYPE_BF16,
                  Shape(1, 32, 2, 128)),
  };
  for (const TestBlock& block : blocks) {
    ASSERT_TRUE(client_->Put(block.ToPut()).ok());
  }
  const std::vector<std::string> keys = {"small", "chunks", "absent",
                                         "wrong-size"};
  constexpr char kPoison = '\x5a';
  auto fp32_bytes = [](const TestBlock& block) {
    return block.elements() * wire::ElementBytes(v1::DTYPE_FP32);
  };
  std::vector<std::string> memory = {
      std::string(fp32_bytes(blocks[0]), kPoison),
      std::string(fp32_bytes(blocks[1]), kPoison),
      std::string(4096, kPoison),
      std::string(fp32_bytes(blocks[2]) - 4, kPoison),  // 4 bytes short
  };
  std::vector<std::span<std::byte>> destinations;
  for (std::string& m : memory) {
    destinations.push_back(std::as_writable_bytes(std::span<char>(m)));
  }

  absl::StatusOr<std::vector<GetResult>> got =
      client_->GetInto("into", keys, destinations, v1::DTYPE_FP32);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), keys.size());
  for (int i : {0, 1}) {
    SCOPED_TRACE(keys[i]);
    EXPECT_TRUE((*got)[i].status.ok()) << (*got)[i].status;
    EXPECT_EQ((*got)[i].header.key(), keys[i]);
    EXPECT_EQ((*got)[i].header.dtype(), v1::DTYPE_FP32);
    EXPECT_TRUE((*got)[i].data.empty());
    EXPECT_TRUE(MatchesReference(blocks[i], v1::DTYPE_FP32, memory[i]));
  }
  EXPECT_EQ((*got)[2].status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*got)[3].status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT((*got)[3].status.message(), HasSubstr("destination"));
  for (int i : {2, 3}) {
    EXPECT_EQ(memory[i].find_first_not_of(kPoison), std::string::npos)
        << keys[i] << ": its memory was written";
  }

  // As many destinations as keys, or nothing is asked.
  EXPECT_EQ(client_->GetInto("into", keys, std::span(destinations).first(2))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, Fp32BlockReadsBackAsFp16AndBf16) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block =
      RandomBlock(rng, "dtypes", "fp32-block", v1::DTYPE_FP32,
                  Shape(2, 16, 4, 64), {}, Values::kOutlierChannels);
  ASSERT_TRUE(client_->Put(block.ToPut()).ok());

  for (v1::DType out : {v1::DTYPE_FP16, v1::DTYPE_BF16, v1::DTYPE_FP32,
                        v1::DTYPE_UNSPECIFIED}) {
    SCOPED_TRACE(v1::DType_Name(out));
    absl::StatusOr<GetResult> got = client_->GetOne(block.ns, block.key, out);
    ASSERT_TRUE(got.ok()) << got.status();
    const v1::DType returned =
        out == v1::DTYPE_UNSPECIFIED ? v1::DTYPE_FP32 : out;
    EXPECT_EQ(got->header.dtype(), returned);
    EXPECT_EQ(got->data.size(),
              block.elements() * wire::ElementBytes(returned));
    EXPECT_TRUE(MatchesReference(block, returned, got->data));
  }
}

TEST_F(ServerTest, Fp16BlockReadsBackAsFp32Exactly) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block = RandomBlock(rng, "dtypes", "fp16-block",
                                      v1::DTYPE_FP16, Shape(2, 8, 2, 128));
  ASSERT_TRUE(client_->Put(block.ToPut()).ok());
  absl::StatusOr<GetResult> got =
      client_->GetOne(block.ns, block.key, v1::DTYPE_FP32);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->header.dtype(), v1::DTYPE_FP32);
  EXPECT_TRUE(MatchesReference(block, v1::DTYPE_FP32, got->data));
}

TEST_F(ServerTest, Fp32BlockBeyondFp16RangeIsRefusedAsFp16ButServedOtherwise) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block = RandomBlock(rng, "dtypes", "large", v1::DTYPE_FP32,
                                      Shape(2, 8, 2, 64), {}, Values::kLarge);
  ASSERT_TRUE(client_->Put(block.ToPut()).ok());

  const std::string keys[] = {block.key};
  absl::StatusOr<std::vector<GetResult>> as_fp16 =
      client_->Get(block.ns, keys, v1::DTYPE_FP16);
  ASSERT_TRUE(as_fp16.ok())
      << as_fp16.status();  // a per-key error, not the RPC
  const absl::Status& refused = (*as_fp16)[0].status;
  EXPECT_EQ(refused.code(), absl::StatusCode::kOutOfRange) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("dtype"));
  EXPECT_TRUE((*as_fp16)[0].data.empty());

  for (v1::DType out : {v1::DTYPE_BF16, v1::DTYPE_FP32}) {
    absl::StatusOr<GetResult> got = client_->GetOne(block.ns, block.key, out);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(MatchesReference(block, out, got->data));
  }
  EXPECT_EQ(Stats().blocks(), 1u);  // the refusal changed nothing
}

}  // namespace
}  // namespace kvq::testing
