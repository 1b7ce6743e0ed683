// Bad input through a real server: every malformed block gets the right code
// and a message naming the field, stores nothing, leaks no page, and leaves
// what was stored before untouched.
//
// Each test starts with one valid block ("resident") in the pool and checks,
// after the bad request, that Stats shows the same blocks, pages and logical
// bytes, that the bad key is absent, and that "resident" is still there.

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/element_codec.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "kernels/format.h"
#include "kvq/v1/kvcache.grpc.pb.h"
#include "tests/integration/integration_testing.h"

namespace kvq::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kNs[] = "bad";

class BadInputTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    seed_ = FreshSeed();
    rng_.seed(seed_);
    resident_ =
        RandomBlock(rng_, kNs, "resident", v1::DTYPE_FP16, Shape(2, 16, 4, 64));
    ASSERT_TRUE(client_->Put(resident_.ToPut()).ok());
    before_ = Pool();
  }

  // A valid block to break: FP16 2 x 16 x 4 x 64 (16 KiB).
  TestBlock Valid(const std::string& key) {
    return RandomBlock(rng_, kNs, key, v1::DTYPE_FP16, Shape(2, 16, 4, 64));
  }

  // How a raw stream was refused: the first non-OK block result, else the
  // status the RPC ended with.
  static absl::Status Refusal(const RawPutOutcome& outcome) {
    for (const v1::PutResponse& response : outcome.responses) {
      if (response.code() != 0) {
        return FromRpcCode(response.code(), response.message());
      }
    }
    return FromGrpcStatus(outcome.status);
  }

  // The checks every bad input must pass. `key` is looked up unless empty
  // (a key that is itself invalid cannot be looked up).
  void ExpectRefusedAndNothingChanged(const absl::Status& refusal,
                                      absl::StatusCode code,
                                      const std::string& field,
                                      const std::string& key) {
    SCOPED_TRACE(absl::StrCat("seed ", seed_));
    EXPECT_EQ(refusal.code(), code) << refusal;
    EXPECT_THAT(std::string(refusal.message()), HasSubstr(field));
    EXPECT_EQ(Pool(), before_) << "the refused block changed the pool";
    if (!key.empty()) {
      EXPECT_FALSE(Present(kNs, key));
    }
    EXPECT_TRUE(Present(kNs, "resident"));
  }

  // Puts `block` through the SDK and checks the refusal.
  void ExpectPutRefused(const TestBlock& block, absl::StatusCode code,
                        const std::string& field, bool lookup_key = true) {
    absl::StatusOr<PutResult> put = client_->Put(block.ToPut());
    ASSERT_FALSE(put.ok()) << "stored a bad block";
    ExpectRefusedAndNothingChanged(put.status(), code, field,
                                   lookup_key ? block.key : "");
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  TestBlock resident_;
  PoolState before_;
};

TEST_F(BadInputTest, FewerBytesThanDTypeTimesShapeAreRefused) {
  TestBlock block = Valid("short");
  block.data.resize(block.data.size() - 2);
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "data");
}

TEST_F(BadInputTest, MoreBytesThanDTypeTimesShapeAreRefused) {
  TestBlock block = Valid("long");
  block.data.append(2, '\0');
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "data");
}

TEST_F(BadInputTest, BytesOfAnotherDTypeAreRefused) {
  TestBlock block = Valid("fp32-bytes-as-fp16");
  block.data.append(block.data);  // FP32-sized data under an FP16 header
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "data");
}

class ZeroDimensionTest : public BadInputTest,
                          public ::testing::WithParamInterface<int> {};

TEST_P(ZeroDimensionTest, ZeroDimensionIsRefusedNamingIt) {
  static const char* const kFields[] = {"planes", "tokens", "heads",
                                        "head_dim"};
  TestBlock block = Valid("zero-dim");
  v1::BlockShape& shape = block.shape;
  switch (GetParam()) {
    case 0:
      shape.set_planes(0);
      break;
    case 1:
      shape.set_tokens(0);
      break;
    case 2:
      shape.set_heads(0);
      break;
    case 3:
      shape.set_head_dim(0);
      break;
  }
  block.data.clear();  // matches the (empty) shape
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   absl::StrCat("header.shape.", kFields[GetParam()]));
}

INSTANTIATE_TEST_SUITE_P(EveryDimension, ZeroDimensionTest,
                         ::testing::Range(0, 4));

TEST_F(BadInputTest, AbsurdDimensionIsRefusedBeforeAnyDataArrives) {
  // Each header alone is refused: the (small) data never matters.
  TestBlock block = Valid("absurd");
  block.shape.set_tokens(kMaxTokens + 1);
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   "header.shape.tokens");

  block = Valid("absurd");
  block.shape.set_head_dim(kMaxHeadDim + 1);
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   "header.shape.head_dim");

  // Every dimension within its limit, the product (2^33 values) not.
  block = Valid("absurd");
  block.shape = Shape(kMaxPlanes, kMaxTokens, 1, 2);
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "header.shape");
}

TEST_F(BadInputTest, UnknownOrMissingDTypeIsRefused) {
  TestBlock block = Valid("dtype");
  block.dtype = static_cast<v1::DType>(7);
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "header.dtype");
  block.dtype = v1::DTYPE_UNSPECIFIED;
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "header.dtype");
}

TEST_F(BadInputTest, UnknownGranularityIsRefused) {
  TestBlock block = Valid("granularity");
  block.quantization.set_granularity(static_cast<v1::Granularity>(9));
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   "header.quantization.granularity");
}

TEST_F(BadInputTest, GroupSizeNotDividingHeadDimIsRefused) {
  TestBlock block = Valid("group");  // head_dim 64
  block.quantization = Quant(v1::GRANULARITY_GROUP, 24);
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   "header.quantization.group_size");
  block.quantization = Quant(v1::GRANULARITY_GROUP, 0);
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   "header.quantization.group_size");
}

TEST_F(BadInputTest, NaNOrInfInTheDataIsRefusedNamingTheElement) {
  for (v1::DType dtype : {v1::DTYPE_FP16, v1::DTYPE_BF16, v1::DTYPE_FP32}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                      std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      SCOPED_TRACE(absl::StrCat(v1::DType_Name(dtype), " ", bad));
      TestBlock block =
          RandomBlock(rng_, kNs, "non-finite", dtype, Shape(2, 16, 4, 64));
      std::vector<float> values = *wire::DecodeFloats(dtype, block.data);
      const uint64_t at = rng_() % values.size();
      values[at] = bad;
      block.data = wire::EncodeFloats(dtype, values);
      ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                       absl::StrCat("data[", at, "]"));
    }
  }
}

TEST_F(BadInputTest, EmptyOrOverlongKeyIsRefused) {
  TestBlock block = Valid("");
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "header.key",
                   /*lookup_key=*/false);
  block.key = std::string(1025, 'k');
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument, "header.key",
                   /*lookup_key=*/false);
  block.key = std::string(1024, 'k');  // the longest allowed key is fine
  EXPECT_TRUE(client_->Put(block.ToPut()).ok());
}

TEST_F(BadInputTest, OverlongOrUnprintableNamespaceIsRefused) {
  TestBlock block = Valid("ns");
  block.ns = std::string(129, 'n');
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   "header.namespace", /*lookup_key=*/false);
  block.ns = std::string("tab\there");
  ExpectPutRefused(block, absl::StatusCode::kInvalidArgument,
                   "header.namespace", /*lookup_key=*/false);
}

TEST_F(BadInputTest, ChunksOutOfOrderAreRefused) {
  const TestBlock block = Valid("out-of-order");
  const v1::BlockHeader header = HeaderOf(block);
  const std::string& d = block.data;
  const size_t third = d.size() / 3;
  // Chunk 1, then chunk 3 where chunk 2 belongs.
  const RawPutOutcome outcome =
      RawPut(client_->channel(),
             {Chunk(&header, 0, d.substr(0, third), false),
              Chunk(nullptr, 2 * third, d.substr(2 * third), true),
              Chunk(nullptr, third, d.substr(third, third), false)});
  ExpectRefusedAndNothingChanged(Refusal(outcome),
                                 absl::StatusCode::kInvalidArgument, "offset",
                                 block.key);
}

TEST_F(BadInputTest, FirstChunkAtNonZeroOffsetIsRefused) {
  const TestBlock block = Valid("late-start");
  const v1::BlockHeader header = HeaderOf(block);
  const RawPutOutcome outcome = RawPut(
      client_->channel(), {Chunk(&header, 8, block.data.substr(8), true)});
  ExpectRefusedAndNothingChanged(Refusal(outcome),
                                 absl::StatusCode::kInvalidArgument, "offset",
                                 block.key);
}

TEST_F(BadInputTest, ChunkWithoutAHeaderIsRefused) {
  const TestBlock block = Valid("headless");
  const RawPutOutcome outcome =
      RawPut(client_->channel(), {Chunk(nullptr, 0, block.data, true)});
  ExpectRefusedAndNothingChanged(Refusal(outcome),
                                 absl::StatusCode::kInvalidArgument, "header",
                                 block.key);
}

TEST_F(BadInputTest, MissingMiddleChunkIsRefused) {
  const TestBlock block = Valid("missing-middle");
  const v1::BlockHeader header = HeaderOf(block);
  const std::string& d = block.data;
  const size_t third = d.size() / 3;
  const RawPutOutcome outcome =
      RawPut(client_->channel(),
             {Chunk(&header, 0, d.substr(0, third), false),
              Chunk(nullptr, 2 * third, d.substr(2 * third), true)});
  ExpectRefusedAndNothingChanged(Refusal(outcome),
                                 absl::StatusCode::kInvalidArgument, "offset",
                                 block.key);
}

TEST_F(BadInputTest, MissingLastChunkBeforeTheNextHeaderRefusesOnlyThatBlock) {
  const TestBlock cut = Valid("cut-short");
  const TestBlock next = Valid("next");
  const v1::BlockHeader cut_header = HeaderOf(cut);
  const v1::BlockHeader next_header = HeaderOf(next);
  const RawPutOutcome outcome = RawPut(
      client_->channel(),
      {Chunk(&cut_header, 0, cut.data.substr(0, cut.data.size() / 2), false,
             /*sequence=*/1),
       Chunk(&next_header, 0, next.data, true, /*sequence=*/2)});
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_EQ(outcome.responses.size(), 2u);
  EXPECT_EQ(outcome.responses[0].sequence(), 1u);
  EXPECT_EQ(outcome.responses[0].code(), 3) << outcome.responses[0].message();
  EXPECT_THAT(outcome.responses[0].message(), HasSubstr("last"));
  EXPECT_EQ(outcome.responses[1].sequence(), 2u);
  EXPECT_EQ(outcome.responses[1].code(), 0) << outcome.responses[1].message();
  EXPECT_FALSE(Present(kNs, cut.key));
  EXPECT_TRUE(Present(kNs, next.key));
  EXPECT_EQ(Pool().blocks, before_.blocks + 1);
}

TEST_F(BadInputTest, StreamEndingInsideABlockFailsTheRpcAndStoresNothing) {
  const TestBlock block = Valid("unfinished");
  const v1::BlockHeader header = HeaderOf(block);
  const RawPutOutcome outcome = RawPut(
      client_->channel(),
      {Chunk(&header, 0, block.data.substr(0, block.data.size() / 2), false)});
  EXPECT_TRUE(outcome.responses.empty());
  ExpectRefusedAndNothingChanged(FromGrpcStatus(outcome.status),
                                 absl::StatusCode::kInvalidArgument, "last",
                                 block.key);
}

TEST_F(BadInputTest, MessageThatIsNotAPutRequestEndsTheStreamStoringNothing) {
  // A namespace that is not UTF-8 makes the whole message unparseable as a
  // proto3 PutRequest (the C++ client only logs it when sending), here in
  // the middle of a block.
  const TestBlock block = Valid("interrupted");
  const v1::BlockHeader header = HeaderOf(block);
  v1::BlockHeader not_utf8 = HeaderOf(Valid("not-utf8"));
  not_utf8.set_namespace_(std::string("ns\xff", 3));
  const RawPutOutcome outcome = RawPut(
      client_->channel(),
      {Chunk(&header, 0, block.data.substr(0, 1024), false),
       Chunk(&not_utf8, 0, block.data, true)});
  EXPECT_TRUE(outcome.responses.empty());
  ExpectRefusedAndNothingChanged(FromGrpcStatus(outcome.status),
                                 absl::StatusCode::kInvalidArgument,
                                 "not a valid kvq.v1.PutRequest", block.key);
}

TEST_F(BadInputTest, GetRequestThatDoesNotParseIsInvalidAndAnswersNoKey) {
  // The server's Get reads its request itself (it is registered as a split
  // stream); one that does not parse is INVALID_ARGUMENT, like a Put message
  // that does not parse. A namespace that is not UTF-8 makes a proto3
  // GetRequest unparseable (the C++ client only logs it).
  v1::GetRequest request;
  request.set_namespace_(std::string("bad\xff", 4));
  request.add_keys("resident");
  std::unique_ptr<v1::KVCache::Stub> stub =
      v1::KVCache::NewStub(client_->channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  std::unique_ptr<grpc::ClientReader<v1::GetResponse>> reader =
      stub->Get(&context, request);
  v1::GetResponse response;
  int answers = 0;
  while (reader->Read(&response)) ++answers;
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(answers, 0);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_THAT(status.error_message(),
              HasSubstr("not a valid kvq.v1.GetRequest"));
  // The server goes on.
  absl::StatusOr<GetResult> got = client_->GetOne(kNs, "resident");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MatchesReference(resident_, resident_.dtype, got->data));
}

TEST_F(BadInputTest, RefusedBlockDoesNotEndTheStream) {
  TestBlock bad = Valid("bad-first");
  bad.shape.set_heads(0);
  bad.data.clear();
  const TestBlock good = Valid("good-second");
  const BlockToPut blocks[] = {bad.ToPut(), good.ToPut()};
  absl::StatusOr<std::vector<PutResult>> results = client_->PutMany(blocks);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*results)[1].status.ok()) << (*results)[1].status;
  absl::StatusOr<GetResult> got = client_->GetOne(kNs, good.key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MatchesReference(good, good.dtype, got->data));
}

TEST_F(BadInputTest, MessageOverTheServersLimitIsResourceExhausted) {
  // The server's default --max_message_bytes is 8 MiB; send 9 MiB in one
  // message (a client configured past it).
  ClientOptions options;
  options.chunk_bytes = 9 << 20;
  options.max_message_bytes = 16 << 20;
  std::unique_ptr<Client> client = NewClient(options);
  ASSERT_NE(client, nullptr);
  const TestBlock block = RandomBlock(rng_, kNs, "too-big-message",
                                      v1::DTYPE_FP16, Shape(2, 72, 32, 1024));
  ASSERT_GT(block.data.size(), 8u << 20);
  absl::StatusOr<PutResult> put = client->Put(block.ToPut());
  ASSERT_FALSE(put.ok());
  // gRPC's own message: "Received message larger than max (N vs. M)".
  ExpectRefusedAndNothingChanged(put.status(),
                                 absl::StatusCode::kResourceExhausted,
                                 "larger than max", block.key);
  // The same block in chunks under the limit is fine.
  EXPECT_TRUE(client_->Put(block.ToPut()).ok());
}

// Waits (bounded) until the pool is back to `before_`: the server learns of a
// cancelled stream on its own schedule. No timing is asserted: the wait only
// ends early; the caller then checks the exact state.
void WaitForPoolToSettle(const std::function<PoolState()>& pool,
                         const PoolState& expected) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (pool() != expected && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
}

TEST_F(BadInputTest, DeadlineExpiringMidStreamStoresNothing) {
  ClientOptions options;
  options.deadline = absl::Milliseconds(1);
  std::unique_ptr<Client> hasty = NewClient(options);
  ASSERT_NE(hasty, nullptr);
  const TestBlock block = RandomBlock(rng_, kNs, "hasty", v1::DTYPE_FP16,
                                      Shape(2, 96, 32, 1024));  // 12 MiB
  absl::StatusOr<PutResult> put = hasty->Put(block.ToPut());
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), absl::StatusCode::kDeadlineExceeded)
      << put.status();
  WaitForPoolToSettle([&] { return Pool(); }, before_);
  EXPECT_EQ(Pool(), before_);
  EXPECT_FALSE(Present(kNs, block.key));
}

TEST_F(BadInputTest, ClientVanishingMidBlockLeavesNothingAndHoldsNoPage) {
  // A large block, so that its staging and the pages it would need matter.
  const TestBlock block = RandomBlock(rng_, kNs, "abandoned", v1::DTYPE_FP16,
                                      Shape(2, 64, 32, 128));  // 1 MiB
  const v1::BlockHeader header = HeaderOf(block);
  auto stub = v1::KVCache::NewStub(client_->channel());
  {
    grpc::ClientContext context;
    auto stream = stub->Put(&context);
    const size_t half = block.data.size() / 2;
    ASSERT_TRUE(stream->Write(
        Chunk(&header, 0, block.data.substr(0, half / 2), false)));
    ASSERT_TRUE(stream->Write(Chunk(
        nullptr, half / 2, block.data.substr(half / 2, half / 2), false)));
    // Half the block is on its way; now the client vanishes.
    context.TryCancel();
    v1::PutResponse response;
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  WaitForPoolToSettle([&] { return Pool(); }, before_);
  EXPECT_EQ(Pool(), before_);
  EXPECT_FALSE(Present(kNs, block.key));
  EXPECT_TRUE(Present(kNs, "resident"));
  // And the server is fine afterwards: the same block goes through whole.
  EXPECT_TRUE(client_->Put(block.ToPut()).ok());
}

// A client that goes away in the middle of a Get of many keys leaves no
// call and no block behind: the handler returns, and every staging buffer
// the call used is back (the ones gRPC still held as slices of chunks in
// flight included).
TEST_F(BadInputTest, ClientVanishingMidGetOfManyKeysLeavesNoCallNorStaging) {
  std::vector<std::string> keys;
  for (int i = 0; i < 8; ++i) {
    const TestBlock block = RandomBlock(rng_, kNs, absl::StrCat("many-", i),
                                        v1::DTYPE_FP16, Shape(2, 64, 32, 128));
    ASSERT_TRUE(client_->Put(block.ToPut()).ok());  // 1 MiB each
    keys.push_back(block.key);
  }
  auto stub = v1::KVCache::NewStub(client_->channel());
  {
    grpc::ClientContext context;
    v1::GetRequest request;
    request.set_namespace_(kNs);
    for (const std::string& key : keys) request.add_keys(key);
    request.set_chunk_bytes(64 << 10);
    auto reader = stub->Get(&context, request);
    v1::GetResponse response;
    ASSERT_TRUE(reader->Read(&response));  // the first chunk of the first key
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(GaugeOnceZero(*server_, "kvq_staging_bytes", "state", "lent"), 0);
  EXPECT_EQ(GaugeOnceZero(*server_, "kvq_rpcs_in_flight", "rpc", "get"), 0);
  // And every key still comes back whole.
  absl::StatusOr<std::vector<GetResult>> got = client_->Get(kNs, keys);
  ASSERT_TRUE(got.ok()) << got.status();
  for (const GetResult& result : *got) {
    EXPECT_TRUE(result.status.ok()) << result.status;
    EXPECT_EQ(result.data.size(), size_t{1} << 20);
  }
}

}  // namespace
}  // namespace kvq::testing
