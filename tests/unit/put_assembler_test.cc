// PutAssembler: the Put stream protocol. Every bad input of the foundation
// issue's list gets its own test: the block is refused with the right code
// and a message naming the field, and the stream goes on with the next block.

#include "server/service/put_assembler.h"

#include <algorithm>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <grpc/slice.h>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/backend/backend.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

using ::kvq::service_testing::Chunks;
using ::kvq::service_testing::RandomBlockBytes;
using ::kvq::service_testing::SeededTest;
using ::kvq::service_testing::WireHeader;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A block's bytes as one string.
std::string BytesOf(const BlockBytes& bytes) {
  std::string s(bytes.size(), '\0');
  bytes.CopyTo(reinterpret_cast<std::byte*>(s.data()));
  return s;
}

// Big enough for every block here unless a test says otherwise.
constexpr PutLimits kRoomyPool{/*page_bytes=*/4096, /*pages_total=*/1 << 16};

class PutAssemblerTest : public SeededTest {
 protected:
  // Multi-chunk blocks are assembled in buffers of a real staging pool.
  std::unique_ptr<Backend> backend_ =
      *MakeCpuBackend(ArenaOptions{/*capacity_bytes=*/4096, /*page_bytes=*/4096});
  StagingPool staging_{backend_.get(), /*budget_bytes=*/uint64_t{64} << 20};

  BlockShape RandomShape() {
    return BlockShape{static_cast<uint32_t>(Uniform(1, 4)),
                      static_cast<uint32_t>(Uniform(1, 20)),
                      static_cast<uint32_t>(Uniform(1, 4)),
                      static_cast<uint32_t>(Uniform(1, 40))};
  }
  DType RandomDType() {
    return service_testing::kAllDTypes[Uniform(0, 2)];
  }
  // Sorted distinct cut points strictly inside [0, size).
  std::vector<uint64_t> RandomCuts(uint64_t size, int max_cuts) {
    std::vector<uint64_t> cuts;
    for (int i = 0; i < max_cuts && size > 1; ++i) {
      cuts.push_back(Uniform(1, size - 1));
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    return cuts;
  }

  // `request` as the server reads it off the wire: serialized, in gRPC
  // slices cut at random places.
  PutChunk Received(const v1::PutRequest& request) {
    return service_testing::ReceivedChunk(request, rng_);
  }

  // Feeds every chunk; returns all events.
  std::vector<PutEvent> FeedAll(PutAssembler& assembler,
                                std::vector<v1::PutRequest> chunks) {
    std::vector<PutEvent> all;
    for (v1::PutRequest& chunk : chunks) {
      for (PutEvent& event : assembler.Feed(Received(chunk))) {
        all.push_back(std::move(event));
      }
    }
    return all;
  }

  // One valid block, sent as a single chunk.
  std::vector<v1::PutRequest> GoodBlock(const std::string& key,
                                        uint64_t sequence) {
    const DType dtype = RandomDType();
    const BlockShape shape = RandomShape();
    return Chunks(WireHeader("ns", key, dtype, shape),
                  RandomBlockBytes(dtype, shape.elements(), rng_), {},
                  sequence);
  }

  // Expects one refusal with `code` whose message contains `field`.
  void ExpectRefused(const std::vector<PutEvent>& events,
                     absl::StatusCode code, const std::string& field) {
    ASSERT_THAT(events, SizeIs(1));
    EXPECT_EQ(events[0].status.code(), code) << events[0].status;
    EXPECT_THAT(events[0].status.message(), HasSubstr(field));
    EXPECT_FALSE(events[0].block.has_value());
  }

  // The next block on the stream still goes through.
  void ExpectStreamGoesOn(PutAssembler& assembler) {
    std::vector<PutEvent> events = FeedAll(assembler, GoodBlock("next", 99));
    ASSERT_THAT(events, SizeIs(1));
    EXPECT_TRUE(events[0].status.ok()) << events[0].status;
    EXPECT_EQ(events[0].key, "next");
    EXPECT_EQ(events[0].sequence, 99u);
    EXPECT_TRUE(assembler.Finish().ok());
  }

  // A fresh stream's one-chunk block under `header` (16 bytes of data) is
  // refused with INVALID_ARGUMENT naming `field`, and the stream goes on.
  void ExpectHeaderRefused(const v1::BlockHeader& header,
                           const std::string& field) {
    PutAssembler assembler(kRoomyPool, &staging_);
    ExpectRefused(
        FeedAll(assembler, Chunks(header, std::string(16, 'x'), {}, 1)),
        absl::StatusCode::kInvalidArgument, field);
    ExpectStreamGoesOn(assembler);
  }
};

TEST_F(PutAssemblerTest, OneChunkBlockComesOutWithItsBytesAndHeader) {
  const DType dtype = RandomDType();
  const BlockShape shape = RandomShape();
  const std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
  PutAssembler assembler(kRoomyPool, &staging_);

  std::vector<PutEvent> events = FeedAll(
      assembler, Chunks(WireHeader("model-a", "k1", dtype, shape), data, {}, 7));

  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_EQ(events[0].sequence, 7u);
  EXPECT_EQ(events[0].key, "k1");
  const AssembledBlock& block = *events[0].block;
  EXPECT_EQ(block.sequence, 7u);
  EXPECT_EQ(block.header.ns, "model-a");
  EXPECT_EQ(block.header.key, "k1");
  EXPECT_EQ(block.header.dtype, dtype);
  EXPECT_EQ(block.header.layout.shape, shape);
  EXPECT_EQ(block.header.layout.spec.granularity, Granularity::kPerTokenHead);
  EXPECT_EQ(BytesOf(block.data()), data);
  EXPECT_TRUE(assembler.Finish().ok());
}

TEST_F(PutAssemblerTest, ChunkedBlockIsReassembledInOrder) {
  for (int trial = 0; trial < 20; ++trial) {
    const DType dtype = RandomDType();
    const BlockShape shape = RandomShape();
    const std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
    PutAssembler assembler(kRoomyPool, &staging_);
    std::vector<v1::PutRequest> chunks =
        Chunks(WireHeader("", "key", dtype, shape), data,
               RandomCuts(data.size(), 8), trial);

    std::vector<PutEvent> events;
    for (size_t i = 0; i < chunks.size(); ++i) {
      events = assembler.Feed(Received(chunks[i]));
      if (i + 1 < chunks.size()) {
        EXPECT_THAT(events, SizeIs(0)) << "chunk " << i;
        EXPECT_TRUE(assembler.inside_block());
      }
    }
    ASSERT_THAT(events, SizeIs(1));
    ASSERT_TRUE(events[0].status.ok()) << events[0].status;
    EXPECT_EQ(events[0].sequence, static_cast<uint64_t>(trial));
    EXPECT_EQ(BytesOf(events[0].block->data()), data);
    EXPECT_FALSE(assembler.inside_block());
    EXPECT_TRUE(assembler.Finish().ok());
  }
  // Every block was assembled in the same kept staging buffer, given back
  // when its event was dropped.
  EXPECT_EQ(staging_.usage().lent_bytes, 0u);
  EXPECT_EQ(staging_.usage().kept_buffers, 1u);
  EXPECT_EQ(staging_.usage().heap_buffers, 0u);
}

TEST_F(PutAssemblerTest, EmptyLastChunkAfterAllBytesCompletesTheBlock) {
  const BlockShape shape = RandomShape();
  const std::string data = RandomBlockBytes(DType::kFp16, shape.elements(), rng_);
  std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "k", DType::kFp16, shape), data, {}, 1);
  chunks[0].set_last(false);
  v1::PutRequest tail;
  tail.set_offset(data.size());
  tail.set_last(true);
  chunks.push_back(tail);
  PutAssembler assembler(kRoomyPool, &staging_);

  std::vector<PutEvent> events = FeedAll(assembler, chunks);

  ASSERT_THAT(events, SizeIs(1));
  EXPECT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_EQ(events[0].block->data().size(), data.size());
}

TEST_F(PutAssemblerTest, BlocksComeOutInStreamOrder) {
  PutAssembler assembler(kRoomyPool, &staging_);
  std::vector<v1::PutRequest> stream;
  for (uint64_t s = 0; s < 10; ++s) {
    const DType dtype = RandomDType();
    const BlockShape shape = RandomShape();
    const std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
    for (auto& chunk :
         Chunks(WireHeader("", "key" + std::to_string(s), dtype, shape), data,
                RandomCuts(data.size(), 3), 100 + s)) {
      stream.push_back(std::move(chunk));
    }
  }
  std::vector<PutEvent> events = FeedAll(assembler, stream);
  ASSERT_THAT(events, SizeIs(10));
  for (uint64_t s = 0; s < 10; ++s) {
    EXPECT_TRUE(events[s].status.ok()) << events[s].status;
    EXPECT_EQ(events[s].sequence, 100 + s);
    EXPECT_EQ(events[s].key, "key" + std::to_string(s));
  }
}

TEST_F(PutAssemblerTest, GroupGranularityWithDividingGroupSizeIsAccepted) {
  const BlockShape shape{2, 3, 2, 64};
  const std::string data = RandomBlockBytes(DType::kBf16, shape.elements(), rng_);
  PutAssembler assembler(kRoomyPool, &staging_);
  std::vector<PutEvent> events = FeedAll(
      assembler,
      Chunks(WireHeader("", "k", DType::kBf16, shape,
                        QuantSpec{Granularity::kGroup, 16}),
             data, {}, 1));
  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_EQ(events[0].block->header.layout.spec.group_size, 16u);
  EXPECT_EQ(events[0].block->header.layout.groups, shape.elements() / 16);
}

// --- Bad input: the byte count ---

TEST_F(PutAssemblerTest, TooFewBytesForDtypeTimesShapeIsInvalidArgument) {
  const DType dtype = RandomDType();
  const BlockShape shape = RandomShape();
  std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
  data.resize(data.size() - Uniform(1, data.size()));
  PutAssembler assembler(kRoomyPool, &staging_);
  ExpectRefused(
      FeedAll(assembler, Chunks(WireHeader("", "k", dtype, shape), data, {}, 1)),
      absl::StatusCode::kInvalidArgument, "dtype x shape");
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, TooManyBytesForDtypeTimesShapeIsInvalidArgument) {
  const DType dtype = RandomDType();
  const BlockShape shape = RandomShape();
  std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
  data += std::string(Uniform(1, 64), 'x');
  PutAssembler assembler(kRoomyPool, &staging_);
  ExpectRefused(
      FeedAll(assembler, Chunks(WireHeader("", "k", dtype, shape), data, {}, 1)),
      absl::StatusCode::kInvalidArgument, "more than the header declares");
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, DataBeyondTheDeclaredSizeInALaterChunkIsRefused) {
  const DType dtype = RandomDType();
  const BlockShape shape = RandomShape();
  std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
  const uint64_t declared = data.size();
  data += std::string(Uniform(1, 64), 'x');
  PutAssembler assembler(kRoomyPool, &staging_);
  ExpectRefused(FeedAll(assembler,
                        Chunks(WireHeader("", "k", dtype, shape), data,
                               {declared / 2 + (declared == 1)}, 1)),
                absl::StatusCode::kInvalidArgument, "past the block's declared size");
  ExpectStreamGoesOn(assembler);
}

// --- Bad input: dimensions, dtype, granularity, format, group size ---

TEST_F(PutAssemblerTest, ZeroDimensionIsInvalidArgumentNamingIt) {
  const char* names[] = {"header.shape.planes", "header.shape.tokens",
                         "header.shape.heads", "header.shape.head_dim"};
  for (int dim = 0; dim < 4; ++dim) {
    BlockShape shape{2, 4, 2, 8};
    uint32_t* dims[] = {&shape.planes, &shape.tokens, &shape.heads,
                        &shape.head_dim};
    *dims[dim] = 0;
    ExpectHeaderRefused(WireHeader("", "k", DType::kFp16, shape), names[dim]);
  }
}

TEST_F(PutAssemblerTest, AbsurdDimensionIsInvalidArgumentNamingIt) {
  const char* names[] = {"header.shape.planes", "header.shape.tokens",
                         "header.shape.heads", "header.shape.head_dim"};
  const uint32_t limits[] = {kMaxPlanes, kMaxTokens, kMaxHeads, kMaxHeadDim};
  for (int dim = 0; dim < 4; ++dim) {
    BlockShape shape{1, 1, 1, 1};
    uint32_t* dims[] = {&shape.planes, &shape.tokens, &shape.heads,
                        &shape.head_dim};
    *dims[dim] = limits[dim] + static_cast<uint32_t>(Uniform(1, 1000));
    ExpectHeaderRefused(WireHeader("", "k", DType::kFp16, shape), names[dim]);
  }
}

TEST_F(PutAssemblerTest, TooManyValuesInAllIsInvalidArgumentNamingShape) {
  // Each dimension is within its limit, the product is not.
  const BlockShape shape{kMaxPlanes, kMaxTokens, 1, 2};
  ExpectHeaderRefused(WireHeader("", "k", DType::kFp16, shape),
                      "header.shape");
}

TEST_F(PutAssemblerTest, UnknownOrMissingDtypeIsInvalidArgument) {
  for (int wire : {0, 4, 77, -1}) {
    v1::BlockHeader header = WireHeader("", "k", DType::kFp16, {1, 1, 1, 8});
    header.set_dtype(static_cast<v1::DType>(wire));
    ExpectHeaderRefused(header, "header.dtype");
  }
}

TEST_F(PutAssemblerTest, UnknownGranularityIsInvalidArgument) {
  v1::BlockHeader header = WireHeader("", "k", DType::kFp16, {1, 1, 1, 8});
  header.mutable_quantization()->set_granularity(
      static_cast<v1::Granularity>(5 + Uniform(0, 100)));
  ExpectHeaderRefused(header, "header.quantization.granularity");
}

TEST_F(PutAssemblerTest, UnknownFormatIsInvalidArgument) {
  v1::BlockHeader header = WireHeader("", "k", DType::kFp16, {1, 1, 1, 8});
  header.mutable_quantization()->set_format(
      static_cast<v1::Format>(2 + Uniform(0, 100)));
  ExpectHeaderRefused(header, "header.quantization.format");
}

TEST_F(PutAssemblerTest, GroupSizeNotDividingHeadDimIsInvalidArgument) {
  const uint32_t head_dim = 48;
  for (uint32_t group : {0u, 5u, 7u, 96u}) {
    PutAssembler assembler(kRoomyPool, &staging_);
    ExpectRefused(
        FeedAll(assembler,
                Chunks(WireHeader("", "k", DType::kFp16, {1, 1, 1, head_dim},
                                  QuantSpec{Granularity::kGroup, group}),
                       std::string(2 * head_dim, 'x'), {}, 1)),
        absl::StatusCode::kInvalidArgument, "header.quantization.group_size");
    ExpectStreamGoesOn(assembler);
  }
}

TEST_F(PutAssemblerTest, GroupSizeWithoutGroupGranularityIsInvalidArgument) {
  PutAssembler assembler(kRoomyPool, &staging_);
  ExpectRefused(
      FeedAll(assembler,
              Chunks(WireHeader("", "k", DType::kFp16, {1, 1, 1, 8},
                                QuantSpec{Granularity::kPerChannel, 4}),
                     std::string(16, 'x'), {}, 1)),
      absl::StatusCode::kInvalidArgument, "header.quantization.group_size");
}

// --- Bad input: key and namespace ---

TEST_F(PutAssemblerTest, EmptyKeyIsInvalidArgument) {
  PutAssembler assembler(kRoomyPool, &staging_);
  std::vector<PutEvent> events = FeedAll(
      assembler, Chunks(WireHeader("", "", DType::kFp16, {1, 1, 1, 8}),
                        std::string(16, 'x'), {}, 5));
  ExpectRefused(events, absl::StatusCode::kInvalidArgument, "header.key");
  EXPECT_EQ(events[0].sequence, 5u);
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, OverLongKeyIsInvalidArgumentAndNotEchoed) {
  PutAssembler assembler(kRoomyPool, &staging_);
  const std::string key(kMaxKeyBytes + Uniform(1, 4096), 'k');
  std::vector<PutEvent> events = FeedAll(
      assembler, Chunks(WireHeader("", key, DType::kFp16, {1, 1, 1, 8}),
                        std::string(16, 'x'), {}, 1));
  ExpectRefused(events, absl::StatusCode::kInvalidArgument, "header.key");
  EXPECT_EQ(events[0].key, "");
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, KeyOfExactlyTheLimitIsAccepted) {
  std::string key(kMaxKeyBytes, '\0');
  for (char& c : key) c = static_cast<char>(Uniform(0, 255));  // binary is fine
  PutAssembler assembler(kRoomyPool, &staging_);
  std::vector<PutEvent> events = FeedAll(
      assembler, Chunks(WireHeader("", key, DType::kFp16, {1, 1, 1, 8}),
                        RandomBlockBytes(DType::kFp16, 8, rng_), {}, 1));
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_EQ(events[0].key, key);
}

TEST_F(PutAssemblerTest, BadNamespaceIsInvalidArgumentAndEchoesTheKey) {
  const std::string too_long(kMaxNamespaceBytes + Uniform(1, 100), 'n');
  const std::string control = std::string("model") + char(Uniform(0, 0x1f));
  // Non-ASCII but valid UTF-8 (invalid UTF-8 never parses: put_chunk_test).
  const std::string high = "mod\xc3\xa9";
  for (const std::string& ns : {too_long, control, high}) {
    PutAssembler assembler(kRoomyPool, &staging_);
    std::vector<PutEvent> events = FeedAll(
        assembler, Chunks(WireHeader(ns, "the-key", DType::kFp16, {1, 1, 1, 8}),
                          std::string(16, 'x'), {}, 1));
    ExpectRefused(events, absl::StatusCode::kInvalidArgument,
                  "header.namespace");
    EXPECT_EQ(events[0].key, "the-key");
    ExpectStreamGoesOn(assembler);
  }
}

// --- Bad input: chunks out of order or missing ---

TEST_F(PutAssemblerTest, ChunkAtTheWrongOffsetIsRefusedAndTheRestSkipped) {
  const DType dtype = RandomDType();
  const BlockShape shape{2, 8, 2, 16};
  const std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
  std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "k", dtype, shape), data,
             {data.size() / 4, data.size() / 2, 3 * data.size() / 4}, 3);
  std::swap(chunks[1], chunks[2]);  // out of order
  PutAssembler assembler(kRoomyPool, &staging_);

  std::vector<PutEvent> events = FeedAll(assembler, chunks);

  ExpectRefused(events, absl::StatusCode::kInvalidArgument, "offset");
  EXPECT_EQ(events[0].sequence, 3u);
  EXPECT_EQ(events[0].key, "k");
  EXPECT_FALSE(assembler.inside_block());
  EXPECT_EQ(staging_.usage().lent_bytes, 0u) << "the refused block's buffer";
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, FirstChunkWithNonZeroOffsetIsRefused) {
  std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "k", DType::kFp16, {1, 1, 1, 8}),
             RandomBlockBytes(DType::kFp16, 8, rng_), {}, 1);
  chunks[0].set_offset(Uniform(1, 100));
  PutAssembler assembler(kRoomyPool, &staging_);
  ExpectRefused(FeedAll(assembler, chunks), absl::StatusCode::kInvalidArgument,
                "offset");
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, MissingMiddleChunkIsRefused) {
  const BlockShape shape{2, 8, 2, 16};
  const std::string data = RandomBlockBytes(DType::kFp32, shape.elements(), rng_);
  std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "k", DType::kFp32, shape), data,
             {data.size() / 3, 2 * data.size() / 3}, 1);
  chunks.erase(chunks.begin() + 1);
  PutAssembler assembler(kRoomyPool, &staging_);
  ExpectRefused(FeedAll(assembler, chunks), absl::StatusCode::kInvalidArgument,
                "offset");
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, LastSetBeforeAllBytesArrivedIsRefused) {
  const BlockShape shape{2, 8, 2, 16};
  const std::string data = RandomBlockBytes(DType::kBf16, shape.elements(), rng_);
  std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "k", DType::kBf16, shape), data,
             {data.size() / 3, 2 * data.size() / 3}, 1);
  chunks.pop_back();
  chunks.back().set_last(true);
  PutAssembler assembler(kRoomyPool, &staging_);
  ExpectRefused(FeedAll(assembler, chunks), absl::StatusCode::kInvalidArgument,
                "last is set after");
  EXPECT_FALSE(assembler.inside_block());
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, NewHeaderBeforeTheLastChunkRefusesTheOpenBlock) {
  const BlockShape shape{1, 8, 2, 16};
  const std::string data = RandomBlockBytes(DType::kFp16, shape.elements(), rng_);
  std::vector<v1::PutRequest> first =
      Chunks(WireHeader("", "open", DType::kFp16, shape), data,
             {data.size() / 2}, 1);
  first.pop_back();  // its last chunk never comes
  PutAssembler assembler(kRoomyPool, &staging_);
  EXPECT_THAT(FeedAll(assembler, first), SizeIs(0));

  std::vector<PutEvent> events = FeedAll(assembler, GoodBlock("second", 2));

  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(events[0].status.message(), HasSubstr("missing"));
  EXPECT_EQ(events[0].key, "open");
  EXPECT_EQ(events[0].sequence, 1u);
  EXPECT_TRUE(events[1].status.ok()) << events[1].status;
  EXPECT_EQ(events[1].key, "second");
}

TEST_F(PutAssemblerTest, ChunkWithoutAnyHeaderIsRefused) {
  v1::PutRequest orphan;
  orphan.set_offset(0);
  orphan.set_data("abcd");
  orphan.set_sequence(12);
  PutAssembler assembler(kRoomyPool, &staging_);
  std::vector<PutEvent> events = assembler.Feed(Received(orphan));
  ExpectRefused(events, absl::StatusCode::kInvalidArgument, "header");
  EXPECT_EQ(events[0].key, "");
  // Its continuation is skipped silently, up to its last chunk.
  v1::PutRequest more;
  more.set_offset(4);
  more.set_data("efgh");
  more.set_last(true);
  EXPECT_THAT(assembler.Feed(Received(more)), SizeIs(0));
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, RefusedBlockSkipsItsRemainingChunksUntilTheNextHeader) {
  const BlockShape shape{2, 8, 2, 16};
  const std::string data = RandomBlockBytes(DType::kFp16, shape.elements(), rng_);
  v1::BlockHeader bad = WireHeader("", "k", DType::kFp16, shape);
  bad.set_dtype(static_cast<v1::DType>(9));
  std::vector<v1::PutRequest> chunks =
      Chunks(bad, data, {data.size() / 4, data.size() / 2}, 1);
  PutAssembler assembler(kRoomyPool, &staging_);

  std::vector<PutEvent> events = FeedAll(assembler, chunks);

  ExpectRefused(events, absl::StatusCode::kInvalidArgument, "header.dtype");
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, StreamEndingInsideABlockFailsAndDropsIt) {
  const BlockShape shape{2, 8, 2, 16};
  const std::string data = RandomBlockBytes(DType::kFp16, shape.elements(), rng_);
  std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "cut", DType::kFp16, shape), data,
             {data.size() / 3, 2 * data.size() / 3}, 4);
  chunks.resize(Uniform(1, 2));
  PutAssembler assembler(kRoomyPool, &staging_);
  EXPECT_THAT(FeedAll(assembler, chunks), SizeIs(0));
  EXPECT_TRUE(assembler.inside_block());

  absl::Status status = assembler.Finish();

  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("\"cut\""));
  EXPECT_THAT(status.message(), HasSubstr("sequence 4"));
  EXPECT_THAT(status.message(), HasSubstr("nothing was stored"));
  EXPECT_FALSE(assembler.inside_block());
  EXPECT_EQ(staging_.usage().lent_bytes, 0u) << "the dropped block's buffer";
}

TEST_F(PutAssemblerTest, StreamEndingBetweenBlocksIsFine) {
  PutAssembler assembler(kRoomyPool, &staging_);
  EXPECT_TRUE(assembler.Finish().ok());
  FeedAll(assembler, GoodBlock("a", 1));
  EXPECT_TRUE(assembler.Finish().ok());
}

// --- A block bigger than the whole pool ---

TEST_F(PutAssemblerTest, BlockLargerThanThePoolIsResourceExhausted) {
  // A 1 Gi-value block against a 64-page pool: refused from the header
  // alone, before a byte of staging is allocated.
  const BlockShape shape{2, 1 << 14, 8, 4096};
  PutAssembler assembler(PutLimits{4096, 64}, &staging_);
  std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "huge", DType::kFp32, shape), std::string(1024, 'x'),
             {512}, 1);
  chunks.back().set_last(false);  // more would follow
  std::vector<PutEvent> events = FeedAll(assembler, chunks);
  ExpectRefused(events, absl::StatusCode::kResourceExhausted, "whole pool");
  EXPECT_EQ(events[0].key, "huge");
  ExpectStreamGoesOn(assembler);
}

TEST_F(PutAssemblerTest, BlockFillingThePoolExactlyIsAccepted) {
  // payload = 16 values rounded to 16 + one 4-byte scale = 20 bytes.
  const BlockShape shape{1, 1, 1, 16};
  PutAssembler assembler(PutLimits{256, 1}, &staging_);
  std::vector<PutEvent> events = FeedAll(
      assembler, Chunks(WireHeader("", "fits", DType::kFp16, shape),
                        RandomBlockBytes(DType::kFp16, 16, rng_), {}, 1));
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_TRUE(events[0].status.ok()) << events[0].status;
}

// A backend that reads puts where gRPC received them (the CUDA backend with
// the process heap registered) gets the block's pieces, no staging used
// (only pieces small enough for gRPC to inline in a slice are copied).
TEST_F(PutAssemblerTest, InPlaceBlockKeepsGrpcsPiecesAndCopiesNothing) {
  for (int trial = 0; trial < 20; ++trial) {
    const DType dtype = RandomDType();
    const BlockShape shape = RandomShape();
    const std::string data = RandomBlockBytes(dtype, shape.elements(), rng_);
    PutAssembler assembler(kRoomyPool, &staging_,
                           [](ConstBytes) { return true; });
    std::vector<PutEvent> events;
    for (const v1::PutRequest& chunk :
         Chunks(WireHeader("", "key", dtype, shape), data,
                RandomCuts(data.size(), 8), trial)) {
      PutChunk received = Received(chunk);
      events = assembler.Feed(received);
      received.ReleaseData();  // as the service does: the block holds them
    }
    ASSERT_THAT(events, SizeIs(1));
    ASSERT_TRUE(events[0].status.ok()) << events[0].status;
    const AssembledBlock& block = *events[0].block;
    EXPECT_EQ(BytesOf(block.data()), data);
    EXPECT_EQ(staging_.usage().lent_bytes, 0u);
    EXPECT_EQ(staging_.usage().kept_buffers, 0u);
  }
}

TEST_F(PutAssemblerTest, InPlaceBlockCopiesAChunkThatLiesElsewhere) {
  const BlockShape shape{1, 64, 2, 32};
  const std::string data =
      RandomBlockBytes(DType::kFp32, shape.elements(), rng_);
  bool in_place = true;
  PutAssembler assembler(kRoomyPool, &staging_,
                         [&in_place](ConstBytes) { return in_place; });
  const std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "mixed", DType::kFp32, shape), data,
             {data.size() / 3, 2 * data.size() / 3}, 5);
  ASSERT_THAT(chunks, SizeIs(3));
  std::vector<PutEvent> events;
  for (size_t i = 0; i < chunks.size(); ++i) {
    in_place = i != 1;  // the middle chunk lies outside
    PutChunk received = Received(chunks[i]);
    events = assembler.Feed(received);
    received.ReleaseData();
  }
  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_FALSE(events[0].block->data().contiguous());
  EXPECT_EQ(BytesOf(events[0].block->data()), data);
  EXPECT_EQ(staging_.usage().lent_bytes, 0u);
}

TEST_F(PutAssemblerTest, BlockWhoseFirstChunkIsNotInPlaceIsAssembledInStaging) {
  const BlockShape shape{1, 64, 2, 32};
  const std::string data =
      RandomBlockBytes(DType::kFp16, shape.elements(), rng_);
  bool in_place = false;
  PutAssembler assembler(kRoomyPool, &staging_,
                         [&in_place](ConstBytes) { return in_place; });
  const std::vector<v1::PutRequest> chunks =
      Chunks(WireHeader("", "staged", DType::kFp16, shape), data,
             {data.size() / 2}, 6);
  std::vector<PutEvent> events = assembler.Feed(Received(chunks[0]));
  in_place = true;  // too late: the block is already in staging
  events = assembler.Feed(Received(chunks[1]));
  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_TRUE(events[0].block->data().contiguous());
  EXPECT_EQ(BytesOf(events[0].block->data()), data);
  EXPECT_GT(staging_.usage().lent_bytes, 0u);
}

TEST_F(PutAssemblerTest,
       InPlaceBlockAtTheWrongOffsetIsRefusedAndTheStreamGoesOn) {
  const BlockShape shape{1, 16, 2, 32};
  const std::string data =
      RandomBlockBytes(DType::kFp16, shape.elements(), rng_);
  PutAssembler assembler(kRoomyPool, &staging_,
                         [](ConstBytes) { return true; });
  std::vector<v1::PutRequest> chunks = Chunks(
      WireHeader("", "bad", DType::kFp16, shape), data, {data.size() / 2}, 8);
  chunks[1].set_offset(chunks[1].offset() + 2);
  ExpectRefused(FeedAll(assembler, chunks), absl::StatusCode::kInvalidArgument,
                "offset");
  ExpectStreamGoesOn(assembler);
}

// A backend upload that reads nothing until told to (as the GPU reads an
// append some time after it is handed over): it then copies the oldest
// appends' bytes from the caller's memory, which must still hold them.
class LazyUpload final : public BlockUpload {
 public:
  struct Log {
    std::string bytes;            // what was read, in order
    int appends = 0;
    int fail_at_append = -1;      // that Append returns INTERNAL
    bool destroyed = false;
    int live_slices_at_destruction = -1;
    const int* live_slices = nullptr;  // the test's count
  };
  explicit LazyUpload(Log* log) : log_(log) {}
  ~LazyUpload() override {
    log_->destroyed = true;
    log_->live_slices_at_destruction = *log_->live_slices;
  }

  absl::Status Append(std::span<const ConstBytes> pieces) override {
    if (log_->appends++ == log_->fail_at_append) {
      return absl::InternalError("device fault (injected)");
    }
    pending_.emplace_back(pieces.begin(), pieces.end());
    for (ConstBytes piece : pieces) bytes_appended_ += piece.size();
    return absl::OkStatus();
  }
  uint64_t appends_read() override { return read_; }

  // Reads every append so far.
  void ReadAll() {
    for (; read_ < pending_.size(); ++read_) {
      for (ConstBytes piece : pending_[read_]) {
        log_->bytes.append(reinterpret_cast<const char*>(piece.data()),
                           piece.size());
      }
    }
  }

 private:
  Log* const log_;
  std::vector<std::vector<ConstBytes>> pending_;
  uint64_t read_ = 0;
};

// Slices whose memory lives as long as gRPC's would: until the last
// reference goes; `live` counts those not yet gone.
std::vector<grpc::Slice> TrackedSlices(const std::string& bytes,
                                       std::mt19937_64& rng, int* live) {
  struct Owned {
    std::string bytes;
    int* live;
  };
  std::vector<grpc::Slice> tracked;
  for (const grpc::Slice& slice : service_testing::RandomSlices(bytes, rng)) {
    auto* owned = new Owned{
        std::string(reinterpret_cast<const char*>(slice.begin()),
                    slice.size()),
        live};
    ++*live;
    tracked.emplace_back(
        grpc_slice_new_with_user_data(
            owned->bytes.data(), owned->bytes.size(),
            [](void* p) {
              auto* o = static_cast<Owned*>(p);
              --*o->live;
              delete o;
            },
            owned),
        grpc::Slice::STEAL_REF);
  }
  return tracked;
}

class UploadingPutAssemblerTest : public PutAssemblerTest {
 protected:
  UploadingPutAssemblerTest() { log_.live_slices = &live_; }

  PutAssembler MakeAssembler(bool uploads_available = true) {
    return PutAssembler(
        kRoomyPool, &staging_, [](ConstBytes) { return true; },
        [this, uploads_available](const BlockLayout&, DType)
            -> absl::StatusOr<std::unique_ptr<BlockUpload>> {
          ++started_;
          if (!uploads_available) {
            return absl::UnavailableError("every upload context is taken");
          }
          auto upload = std::make_unique<LazyUpload>(&log_);
          upload_ = upload.get();
          return upload;
        });
  }

  // Feeds `chunk` as the service does: received in tracked slices, which
  // the chunk itself lets go of after Feed.
  std::vector<PutEvent> FeedTracked(PutAssembler& assembler,
                                    const v1::PutRequest& chunk) {
    PutChunk received;
    std::vector<grpc::Slice> slices =
        TrackedSlices(chunk.SerializeAsString(), rng_, &live_);
    last_slices_ = static_cast<int>(slices.size());
    EXPECT_TRUE(received.Parse(std::move(slices)).ok());
    std::vector<PutEvent> events = assembler.Feed(received);
    received.ReleaseData();
    return events;
  }

  // A random multi-chunk block: its bytes and chunks.
  std::string data_;
  std::vector<v1::PutRequest> RandomChunkedBlock(const std::string& key,
                                                 int cuts) {
    const DType dtype = RandomDType();
    BlockShape shape = RandomShape();
    shape.tokens += 20;  // room for the cuts
    data_ = RandomBlockBytes(dtype, shape.elements(), rng_);
    std::vector<uint64_t> at;
    for (int i = 1; i <= cuts; ++i) at.push_back(i * data_.size() / (cuts + 1));
    return Chunks(WireHeader("", key, dtype, shape), data_, at, 3);
  }

  int live_ = 0;  // tracked slices not yet let go of
  int last_slices_ = 0;  // how many the last chunk fed came in
  int started_ = 0;
  LazyUpload::Log log_;
  LazyUpload* upload_ = nullptr;
};

// A block of several chunks read in place goes to the backend chunk by
// chunk, and each chunk's buffers are let go of once the backend read them,
// not when the block is stored.
TEST_F(UploadingPutAssemblerTest, ChunksGoBackOnceTheBackendReadThem) {
  PutAssembler assembler = MakeAssembler();
  const std::vector<v1::PutRequest> chunks = RandomChunkedBlock("k", 4);
  ASSERT_THAT(chunks, SizeIs(5));
  std::vector<PutEvent> events;
  for (size_t i = 0; i < chunks.size(); ++i) {
    events = FeedTracked(assembler, chunks[i]);
    ASSERT_NE(upload_, nullptr);
    // Only the chunk just appended is still held: the ones before it were
    // read (below) and went back when it was fed.
    EXPECT_EQ(live_, last_slices_) << "chunk " << i;
    upload_->ReadAll();
    EXPECT_EQ(live_, last_slices_) << "nothing goes back between feeds";
    if (i + 1 < chunks.size()) {
      EXPECT_THAT(events, SizeIs(0));
    }
  }
  EXPECT_EQ(started_, 1);
  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_EQ(events[0].block->upload(), upload_);
  EXPECT_EQ(log_.bytes, data_);
  EXPECT_EQ(upload_->bytes_appended(), data_.size());
  EXPECT_EQ(staging_.usage().lent_bytes, 0u);
  events.clear();  // the block, its upload first, then its last chunk
  EXPECT_TRUE(log_.destroyed);
  EXPECT_GT(log_.live_slices_at_destruction, 0);
  EXPECT_EQ(live_, 0);
}

TEST_F(UploadingPutAssemblerTest, UnreadChunksAreHeldUntilTheBackendReadsThem) {
  PutAssembler assembler = MakeAssembler();
  const std::vector<v1::PutRequest> chunks = RandomChunkedBlock("k", 3);
  std::vector<PutEvent> events;
  int fed_slices = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    events = FeedTracked(assembler, chunks[i]);
    fed_slices += last_slices_;
    // Nothing is read yet: every chunk so far is held.
    EXPECT_EQ(live_, fed_slices) << "chunk " << i;
  }
  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  upload_->ReadAll();  // reads memory the block kept alive
  EXPECT_EQ(log_.bytes, data_);
  events.clear();
  EXPECT_EQ(live_, 0);
}

TEST_F(UploadingPutAssemblerTest, WithoutAnUploadToBeHadTheBlockIsHeldWhole) {
  PutAssembler assembler = MakeAssembler(/*uploads_available=*/false);
  const std::vector<v1::PutRequest> chunks = RandomChunkedBlock("k", 2);
  std::vector<PutEvent> events;
  for (const v1::PutRequest& chunk : chunks) {
    events = FeedTracked(assembler, chunk);
  }
  EXPECT_EQ(started_, 1);
  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_EQ(events[0].block->upload(), nullptr);
  EXPECT_EQ(BytesOf(events[0].block->data()), data_);
}

TEST_F(UploadingPutAssemblerTest, OneChunkBlocksAreNotUploaded) {
  PutAssembler assembler = MakeAssembler();
  std::vector<PutEvent> events =
      FeedTracked(assembler, RandomChunkedBlock("k", 0)[0]);
  EXPECT_EQ(started_, 0);
  ASSERT_THAT(events, SizeIs(1));
  ASSERT_TRUE(events[0].status.ok()) << events[0].status;
  EXPECT_EQ(BytesOf(events[0].block->data()), data_);
}

TEST_F(UploadingPutAssemblerTest,
       RefusedBlockDropsItsUploadBeforeTheBuffersItMayRead) {
  PutAssembler assembler = MakeAssembler();
  std::vector<v1::PutRequest> chunks = RandomChunkedBlock("bad", 3);
  chunks[2].set_offset(chunks[2].offset() + 1);
  std::vector<PutEvent> events;
  for (const v1::PutRequest& chunk : chunks) {
    for (PutEvent& e : FeedTracked(assembler, chunk)) {
      events.push_back(std::move(e));
    }
  }
  ExpectRefused(events, absl::StatusCode::kInvalidArgument, "offset");
  EXPECT_TRUE(log_.destroyed);
  EXPECT_GT(log_.live_slices_at_destruction, 0);  // still held while it ran
  EXPECT_EQ(live_, 0);
  ExpectStreamGoesOn(assembler);
}

TEST_F(UploadingPutAssemblerTest,
       FailedAppendRefusesTheBlockAndTheStreamGoesOn) {
  PutAssembler assembler = MakeAssembler();
  log_.fail_at_append = 1;
  const std::vector<v1::PutRequest> chunks = RandomChunkedBlock("k", 3);
  std::vector<PutEvent> events;
  for (const v1::PutRequest& chunk : chunks) {
    for (PutEvent& e : FeedTracked(assembler, chunk)) {
      events.push_back(std::move(e));
    }
  }
  ExpectRefused(events, absl::StatusCode::kInternal, "device fault");
  EXPECT_EQ(events[0].key, "k");
  EXPECT_TRUE(log_.destroyed);
  EXPECT_EQ(live_, 0);
  ExpectStreamGoesOn(assembler);
}

TEST_F(UploadingPutAssemblerTest, StreamEndingInsideAnUploadedBlockDropsIt) {
  PutAssembler assembler = MakeAssembler();
  const std::vector<v1::PutRequest> chunks = RandomChunkedBlock("k", 3);
  EXPECT_THAT(FeedTracked(assembler, chunks[0]), SizeIs(0));
  EXPECT_THAT(FeedTracked(assembler, chunks[1]), SizeIs(0));
  EXPECT_EQ(assembler.Finish().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(log_.destroyed);
  EXPECT_EQ(live_, 0);
}

}  // namespace
}  // namespace kvq
