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
#include "grpcpp/grpcpp.h"
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

// A Get's answer to one key as it came over the wire: each chunk's length,
// and the data put back together.
struct WireAnswer {
  std::vector<uint64_t> chunk_lengths;
  std::string data;
};

// The answers to a Get of `keys` in `ns`, in chunks of `chunk_bytes` asked.
std::vector<WireAnswer> GetOverTheWire(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& ns,
    const std::vector<std::string>& keys, uint32_t chunk_bytes) {
  auto stub = v1::KVCache::NewStub(channel);
  grpc::ClientContext context;
  v1::GetRequest request;
  request.set_namespace_(ns);
  for (const std::string& key : keys) request.add_keys(key);
  request.set_chunk_bytes(chunk_bytes);
  auto reader = stub->Get(&context, request);
  std::vector<WireAnswer> answers(keys.size());
  v1::GetResponse response;
  size_t answered = 0;
  while (answered < keys.size() && reader->Read(&response)) {
    EXPECT_EQ(response.code(), 0) << response.message();
    EXPECT_EQ(response.key_index(), answered);  // keys in the order asked
    WireAnswer& answer = answers[answered];
    EXPECT_EQ(response.has_header(), answer.chunk_lengths.empty());
    EXPECT_EQ(response.offset(), answer.data.size());
    answer.chunk_lengths.push_back(response.data().size());
    answer.data.append(response.data());
    answered += response.last();
  }
  EXPECT_EQ(answered, keys.size());
  EXPECT_FALSE(reader->Read(&response));  // nothing after the last chunk
  EXPECT_TRUE(reader->Finish().ok());
  return answers;
}

// The chunk lengths of a block of `bytes` in chunks of `chunk_bytes`.
std::vector<uint64_t> ChunksOf(uint64_t bytes, uint64_t chunk_bytes) {
  std::vector<uint64_t> lengths(bytes / chunk_bytes, chunk_bytes);
  if (bytes % chunk_bytes != 0) lengths.push_back(bytes % chunk_bytes);
  return lengths;
}

// The first key of a Get that is the server's only call goes out in four
// chunks if it is a block of up to four, so that its front leaves while
// the rest is still being read back; later keys (whose fetch overlaps the
// send of the key before), bigger blocks, and every block while another
// call is in flight go out in the chunks asked for. Either way the data is
// the block's, and a stalled call, cancelled, ends and gives back all it
// held.
TEST_F(ServerTest, AGetAloneAnswersASmallFirstBlockInFourChunksOthersAsAsked) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  constexpr uint64_t kKiB = 1024;
  constexpr uint32_t kAsked = 1 << 20;
  constexpr char kNs[] = "answer-chunks";
  struct Case {
    uint32_t tokens;  // of 16 FP16 heads of 128: 4 KiB each
    std::vector<uint64_t> first_alone;
  };
  const std::vector<Case> cases = {
      {16, {64 * kKiB}},  // under the 256 KiB least: one chunk
      {256, std::vector<uint64_t>(4, 256 * kKiB)},  // 1 MiB
      {768, std::vector<uint64_t>(4, 768 * kKiB)},  // 3 MiB
      {1300, ChunksOf(1300 * 4 * kKiB, kAsked)},  // 5200 KiB: as asked
  };
  std::vector<TestBlock> blocks;
  for (const Case& c : cases) {
    blocks.push_back(RandomBlock(rng, kNs, absl::StrCat("t", c.tokens),
                                 v1::DTYPE_FP16, Shape(1, c.tokens, 16, 128)));
    ASSERT_TRUE(client_->Put(blocks.back().ToPut()).ok());
  }
  auto expect_answers = [&](const std::vector<size_t>& order,
                            bool first_in_four) {
    std::vector<std::string> keys;
    for (size_t i : order) keys.push_back(blocks[i].key);
    const std::vector<WireAnswer> answers =
        GetOverTheWire(client_->channel(), kNs, keys, kAsked);
    ASSERT_EQ(answers.size(), order.size());
    for (size_t k = 0; k < order.size(); ++k) {
      const TestBlock& block = blocks[order[k]];
      SCOPED_TRACE(absl::StrCat("key ", k, ": ", block.data.size(), " bytes"));
      EXPECT_EQ(answers[k].chunk_lengths,
                k == 0 && first_in_four ? cases[order[k]].first_alone
                                        : ChunksOf(block.data.size(), kAsked));
      EXPECT_TRUE(MatchesReference(block, v1::DTYPE_FP16, answers[k].data));
    }
  };
  {
    SCOPED_TRACE("alone, one key a call");
    for (size_t i = 0; i < cases.size(); ++i) expect_answers({i}, true);
  }
  {
    SCOPED_TRACE("alone, the 1 MiB block first of three");
    expect_answers({1, 2, 0}, true);
  }
  {
    // 64 MiB asked for and not read: more than flow control lets through.
    const StalledGet other(server_->grpc_address(), kNs, blocks[1].key, 64);
    ASSERT_TRUE(other.started());
    SCOPED_TRACE("another call in flight");
    for (size_t i = 0; i < cases.size(); ++i) expect_answers({i}, false);
  }
  // Its handler has returned and every staging byte is back.
  EXPECT_EQ(GaugeOnceZero(*server_, "kvq_rpcs_in_flight", "rpc", "get"), 0);
  EXPECT_EQ(GaugeOnceZero(*server_, "kvq_staging_bytes", "state", "lent"), 0);
  SCOPED_TRACE("alone again");
  expect_answers({1}, true);
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
