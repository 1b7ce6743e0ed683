// GetChunk: the server sends Get answers with their data referenced, not
// copied. A serialized chunk must read back as the GetResponse it stands
// for with the parser every client uses, its data slice must be the block's
// own memory, and that memory must stay alive until gRPC's last slice goes.

#include "server/service/get_chunk.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/unit/wire_test_util.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

using ::kvq::wire_testing::RandomBytes;

using ::google::protobuf::util::MessageDifferencer;
using ::kvq::service_testing::SeededTest;

// A block's bytes, as the chunks' owner: `*released` turns true when the
// last reference to it goes.
struct TestBlock {
  TestBlock(std::string contents, bool* released_flag)
      : bytes(std::move(contents)), released(released_flag) {}
  ~TestBlock() { *released = true; }
  std::span<const std::byte> data() const {
    return std::as_bytes(std::span<const char>(bytes));
  }
  const std::string bytes;
  bool* const released;
};

std::vector<grpc::Slice> SlicesOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  return slices;
}

std::string BytesOf(const grpc::ByteBuffer& buffer) {
  std::string bytes;
  for (const grpc::Slice& slice : SlicesOf(buffer)) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

grpc::ByteBuffer Serialize(const GetChunk& chunk) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  EXPECT_TRUE(
      grpc::SerializationTraits<GetChunk>::Serialize(chunk, &buffer,
                                                     &own_buffer)
          .ok());
  EXPECT_TRUE(own_buffer);
  return buffer;
}

// What a client reads from `buffer`: gRPC's own protobuf deserializer.
v1::GetResponse ReadAsClient(grpc::ByteBuffer buffer) {
  v1::GetResponse response;
  const grpc::Status status =
      grpc::SerializationTraits<v1::GetResponse>::Deserialize(&buffer,
                                                              &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

class GetChunkTest : public SeededTest {
 protected:
  v1::BlockHeader RandomHeader() {
    v1::BlockHeader header;
    header.set_namespace_("ns");
    header.set_key(RandomBytes(Uniform(1, 40), rng_));
    header.set_dtype(v1::DTYPE_BF16);
    header.mutable_shape()->set_tokens(static_cast<uint32_t>(Uniform(1, 99)));
    header.mutable_shape()->set_heads(8);
    return header;
  }

  // Every field but data, each set or left default at random.
  v1::GetResponse RandomFields() {
    v1::GetResponse fields;
    if (Uniform(0, 1)) fields.set_key_index(static_cast<uint32_t>(rng_()));
    if (Uniform(0, 1)) *fields.mutable_header() = RandomHeader();
    if (Uniform(0, 1)) fields.set_offset(rng_());
    fields.set_last(Uniform(0, 1));
    if (Uniform(0, 3) == 0) {
      fields.set_code(static_cast<int32_t>(Uniform(1, 16)));
      fields.set_message("why " + std::to_string(rng_()));  // UTF-8
    }
    return fields;
  }

  static void ExpectEqual(const v1::GetResponse& got,
                          const v1::GetResponse& expected) {
    EXPECT_TRUE(MessageDifferencer::Equals(got, expected))
        << "got " << got.ShortDebugString().substr(0, 500) << "\nexpected "
        << expected.ShortDebugString().substr(0, 500);
    EXPECT_TRUE(got.data() == expected.data());  // bytes, beyond the print
  }
};

TEST_F(GetChunkTest, SerializedChunkReadsAsTheGetResponseItStandsFor) {
  for (int trial = 0; trial < 300; ++trial) {
    v1::GetResponse expected = RandomFields();
    auto block = std::make_shared<const std::string>(
        RandomBytes(Uniform(0, 1) ? Uniform(0, 5000) : Uniform(0, 3), rng_));
    GetChunk chunk;
    chunk.fields() = expected;
    chunk.set_data(std::as_bytes(std::span<const char>(*block)), block);
    expected.set_data(*block);

    const grpc::ByteBuffer buffer = Serialize(chunk);
    // Both of a client's ways to read it: gRPC's deserializer (slices as
    // they are) and a plain parse of the bytes.
    ExpectEqual(ReadAsClient(buffer), expected);
    v1::GetResponse parsed;
    ASSERT_TRUE(parsed.ParseFromString(BytesOf(buffer)));
    ExpectEqual(parsed, expected);
  }
}

TEST_F(GetChunkTest, MegabytesOfDataReadBackExactly) {
  auto block =
      std::make_shared<const std::string>(RandomBytes((size_t{3} << 20) + 7, rng_));
  GetChunk chunk;
  chunk.fields().set_key_index(3);
  chunk.fields().set_offset(uint64_t{1} << 33);
  chunk.fields().set_last(true);
  chunk.set_data(std::as_bytes(std::span<const char>(*block)), block);
  const v1::GetResponse got = ReadAsClient(Serialize(chunk));
  EXPECT_EQ(got.key_index(), 3u);
  EXPECT_EQ(got.offset(), uint64_t{1} << 33);
  EXPECT_TRUE(got.last());
  EXPECT_TRUE(got.data() == *block);
}

TEST_F(GetChunkTest, WithoutDataItIsOneSliceOfExactlyWhatProtobufWrites) {
  // A miss or an error: every field but data.
  v1::GetResponse miss;
  miss.set_key_index(7);
  miss.set_last(true);
  miss.set_code(5);
  miss.set_message("keys[7]=\"k\": not found");
  GetChunk chunk;
  chunk.fields() = miss;
  const grpc::ByteBuffer buffer = Serialize(chunk);
  EXPECT_EQ(SlicesOf(buffer).size(), 1u);
  EXPECT_EQ(BytesOf(buffer), miss.SerializeAsString());
  ExpectEqual(ReadAsClient(buffer), miss);

  // Empty data with an owner sends no data field either, as protobuf does
  // for an empty bytes field.
  auto empty = std::make_shared<const std::string>();
  chunk.set_data({}, empty);
  EXPECT_EQ(BytesOf(Serialize(chunk)), miss.SerializeAsString());

  // Nothing set at all: the empty message.
  EXPECT_EQ(Serialize(GetChunk()).Length(), 0u);
}

TEST_F(GetChunkTest, DataSliceIsTheBlocksMemoryNotACopy) {
  bool released = false;
  auto block = std::make_shared<const TestBlock>(RandomBytes(100000, rng_),
                                                 &released);
  const std::span<const std::byte> part = block->data().subspan(4096, 65536);
  GetChunk chunk;
  chunk.fields().set_offset(4096);
  chunk.set_data(part, block);
  const std::vector<grpc::Slice> slices = SlicesOf(Serialize(chunk));
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(static_cast<const void*>(slices[1].begin()),
            static_cast<const void*>(part.data()));
  EXPECT_EQ(slices[1].size(), part.size());
  // The first slice ends with data's tag (field 4, length-delimited) and
  // length (65536 = varint 80 80 04).
  const std::string head(reinterpret_cast<const char*>(slices[0].begin()),
                         slices[0].size());
  EXPECT_THAT(head, ::testing::EndsWith(std::string("\x22\x80\x80\x04", 4)));
}

TEST_F(GetChunkTest, OwnerLivesUntilTheLastSliceGoesNotJustTheChunk) {
  bool released = false;
  auto block = std::make_shared<const TestBlock>(RandomBytes(5000, rng_), &released);
  const std::weak_ptr<const TestBlock> watch = block;
  grpc::ByteBuffer buffer;
  {
    GetChunk chunk;
    chunk.fields().set_last(true);
    const std::span<const std::byte> data = block->data();
    chunk.set_data(data, std::move(block));
    buffer = Serialize(chunk);
    EXPECT_EQ(watch.use_count(), 2);  // the chunk and the data slice
  }
  // The chunk is gone, as a handler's is once Write() returns; gRPC may
  // still hold the message.
  EXPECT_FALSE(released);
  EXPECT_EQ(watch.use_count(), 1);

  // gRPC takes the slices out of the buffer (as its transport does) and
  // drops the buffer: the slices alone keep the block.
  std::vector<grpc::Slice> slices = SlicesOf(buffer);
  buffer.Clear();
  EXPECT_FALSE(released);
  grpc::Slice data_slice = slices[1];
  slices.clear();
  EXPECT_FALSE(released);
  EXPECT_EQ(static_cast<const void*>(data_slice.begin()),
            static_cast<const void*>(watch.lock()->bytes.data()));
  data_slice = grpc::Slice();
  EXPECT_TRUE(released);
  EXPECT_TRUE(watch.expired());
}

TEST_F(GetChunkTest, BlockChunksCoverABlockThatIsNotAMultipleOfTheChunk) {
  bool released = false;
  const uint64_t chunk_bytes = 1000;
  auto block = std::make_shared<const TestBlock>(
      RandomBytes(10 * chunk_bytes + 37, rng_), &released);
  const std::span<const std::byte> data = block->data();
  const v1::BlockHeader header = RandomHeader();

  std::vector<grpc::ByteBuffer> messages;
  std::vector<const std::byte*> data_pointers;
  ASSERT_TRUE(ForEachBlockChunk(
      /*key_index=*/4, header, data, block, chunk_bytes,
      [&](const GetChunk& chunk) {
        data_pointers.push_back(chunk.data().data());
        messages.push_back(Serialize(chunk));
        return true;
      }));
  ASSERT_EQ(messages.size(), 11u);
  // Only the messages still hold the block, one reference each.
  EXPECT_EQ(block.use_count(), 1 + static_cast<long>(messages.size()));

  std::string reassembled;
  for (size_t i = 0; i < messages.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "chunk " << i);
    EXPECT_EQ(data_pointers[i], data.data() + i * chunk_bytes);
    const v1::GetResponse got = ReadAsClient(messages[i]);
    EXPECT_EQ(got.key_index(), 4u);
    EXPECT_EQ(got.offset(), i * chunk_bytes);
    EXPECT_EQ(got.data().size(), i < 10 ? chunk_bytes : 37u);
    EXPECT_EQ(got.last(), i == 10);
    EXPECT_EQ(got.code(), 0);
    EXPECT_EQ(got.has_header(), i == 0);
    if (i == 0) {
      EXPECT_TRUE(MessageDifferencer::Equals(got.header(), header));
    }
    reassembled += got.data();
  }
  EXPECT_TRUE(reassembled == block->bytes);

  const std::weak_ptr<const TestBlock> watch = block;
  block.reset();
  EXPECT_FALSE(released);
  messages.clear();
  EXPECT_TRUE(released);
  EXPECT_TRUE(watch.expired());
}

TEST_F(GetChunkTest, BlockChunksOfASmallOrEmptyBlockAndAWriteThatFails) {
  auto block = std::make_shared<const std::string>(RandomBytes(999, rng_));
  const std::span<const std::byte> data =
      std::as_bytes(std::span<const char>(*block));
  const v1::BlockHeader header = RandomHeader();

  // Smaller than a chunk: one message, header and last.
  int writes = 0;
  ASSERT_TRUE(ForEachBlockChunk(0, header, data, block, 1000,
                                [&](const GetChunk& chunk) {
                                  ++writes;
                                  const v1::GetResponse got =
                                      ReadAsClient(Serialize(chunk));
                                  EXPECT_TRUE(got.has_header());
                                  EXPECT_TRUE(got.last());
                                  EXPECT_TRUE(got.data() == *block);
                                  return true;
                                }));
  EXPECT_EQ(writes, 1);

  // An exact multiple: no empty chunk at the end.
  writes = 0;
  ASSERT_TRUE(ForEachBlockChunk(0, header, data, block, 333,
                                [&](const GetChunk& chunk) {
                                  ++writes;
                                  EXPECT_EQ(chunk.data().size(), 333u);
                                  EXPECT_EQ(chunk.fields().last(), writes == 3);
                                  return true;
                                }));
  EXPECT_EQ(writes, 3);

  // An empty block has no chunk.
  writes = 0;
  EXPECT_TRUE(ForEachBlockChunk(0, header, {}, block, 333,
                                [&](const GetChunk&) {
                                  ++writes;
                                  return true;
                                }));
  EXPECT_EQ(writes, 0);

  // The client gone: no write after the one that failed.
  writes = 0;
  EXPECT_FALSE(ForEachBlockChunk(0, header, data, block, 100,
                                 [&](const GetChunk&) { return ++writes < 2; }));
  EXPECT_EQ(writes, 2);
}

TEST_F(GetChunkTest, BlockChunksGoOutAsTheirBytesBecomeFinalNeverBefore) {
  const uint64_t chunk_bytes = Uniform(50, 200);
  const uint64_t size =
      chunk_bytes * Uniform(3, 8) + Uniform(1, chunk_bytes - 1);
  const auto block = std::make_shared<const std::string>(RandomBytes(size, rng_));
  const std::span<const std::byte> data =
      std::as_bytes(std::span<const char>(*block));
  const v1::BlockHeader header = RandomHeader();
  BlockChunks chunks(/*key_index=*/2, header, data, block, chunk_bytes);
  std::vector<v1::GetResponse> sent;
  auto write = [&](const GetChunk& chunk) {
    sent.push_back(ReadAsClient(Serialize(chunk)));
    return true;
  };

  // Readiness in steps that do not fall on chunk ends: each step sends the
  // whole chunks it completes, and nothing of the chunk it cuts.
  uint64_t ready = 0;
  while (ready < size) {
    ready = std::min<uint64_t>(size, ready + Uniform(1, 2 * chunk_bytes));
    ASSERT_TRUE(chunks.WriteReady(ready, write));
    const uint64_t whole =
        ready == size ? size : ready / chunk_bytes * chunk_bytes;
    uint64_t covered = 0;
    for (const v1::GetResponse& got : sent) covered += got.data().size();
    EXPECT_EQ(covered, whole) << "ready " << ready;
  }
  const size_t chunks_sent = sent.size();
  ASSERT_TRUE(chunks.WriteReady(size, write));  // again: nothing new
  EXPECT_EQ(sent.size(), chunks_sent);

  std::string reassembled;
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(sent[i].key_index(), 2u);
    EXPECT_EQ(sent[i].offset(), reassembled.size());
    EXPECT_EQ(sent[i].has_header(), i == 0);
    EXPECT_EQ(sent[i].last(), i + 1 == sent.size());
    reassembled += sent[i].data();
  }
  EXPECT_TRUE(reassembled == *block);
}

// A block whose fetch nothing else overlaps, of up to four chunks, goes
// out in four, of at least 256 KiB in whole 4 KiB steps and never more than
// asked; any other block in the chunks asked for.
TEST_F(GetChunkTest, AnswerChunkBytesSplitsASmallBlockInFourOnlyWhenAlone) {
  constexpr uint64_t kKiB = 1024, kMiB = kKiB * kKiB;
  struct Case {
    uint64_t block_bytes, chunk_bytes;
    bool front_alone;
    uint64_t want;
  };
  for (const Case& c : {
           Case{1 * kMiB, 1 * kMiB, true, 256 * kKiB},  // four of a quarter
           Case{1 * kMiB, 1 * kMiB, false, 1 * kMiB},   // not alone: as asked
           Case{3 * kMiB, 1 * kMiB, true, 768 * kKiB},
           Case{4 * kMiB, 1 * kMiB, true, 1 * kMiB},  // four chunks already
           Case{4 * kMiB + 1, 1 * kMiB, true, 1 * kMiB},  // over four: as asked
           Case{64 * kKiB, 1 * kMiB, true, 256 * kKiB},   // one chunk either way
           Case{1 * kMiB, 128 * kKiB, true, 128 * kKiB},  // never over the ask
           Case{1 * kMiB + 1, 1 * kMiB, true, 260 * kKiB},  // quarter rounded up
       }) {
    EXPECT_EQ(AnswerChunkBytes(c.block_bytes, c.chunk_bytes, c.front_alone),
              c.want)
        << c.block_bytes << " bytes in chunks of " << c.chunk_bytes
        << (c.front_alone ? ", alone" : ", not alone");
  }

  // Over random sizes: alone, a block of up to four chunks goes out in at
  // most four (at least 256 KiB each, 4 KiB-aligned below the ask); not
  // alone, and bigger blocks, in the chunks asked for.
  for (int trial = 0; trial < 2000; ++trial) {
    const uint64_t chunk_bytes = Uniform(1, 16 * kMiB);
    const uint64_t block_bytes = Uniform(1, 6 * chunk_bytes);
    const bool front_alone = Uniform(0, 1) == 1;
    const uint64_t got = AnswerChunkBytes(block_bytes, chunk_bytes, front_alone);
    SCOPED_TRACE(::testing::Message()
                 << block_bytes << " bytes in chunks of " << chunk_bytes
                 << (front_alone ? ", alone: " : ", not alone: ") << got);
    ASSERT_LE(got, chunk_bytes);
    if (!front_alone || block_bytes > 4 * chunk_bytes) {
      ASSERT_EQ(got, chunk_bytes);
    } else if (got < chunk_bytes) {
      ASSERT_GE(got, 256 * kKiB);
      ASSERT_EQ(got % (4 * kKiB), 0u);
      ASSERT_LE((block_bytes + got - 1) / got, 4u);
    }
  }
}

TEST_F(GetChunkTest, IsNeverDeserialized) {
  const std::string bytes = v1::GetResponse().SerializeAsString();
  grpc::Slice slice(bytes.data(), bytes.size());
  grpc::ByteBuffer buffer(&slice, 1);
  GetChunk chunk;
  EXPECT_EQ(grpc::SerializationTraits<GetChunk>::Deserialize(&buffer, &chunk)
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace kvq
