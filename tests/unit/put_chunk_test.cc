// PutChunk: the server reads Put messages with their data left in gRPC's
// slices. Every field parses as protobuf would parse a PutRequest, wherever
// the slices are cut, and the data comes out byte for byte.

#include "server/service/put_chunk.h"

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/unit/wire_test_util.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

using ::kvq::wire_testing::RandomBytes;

using ::kvq::service_testing::RandomSlices;
using ::kvq::service_testing::SeededTest;
using ::testing::HasSubstr;

class PutChunkTest : public SeededTest {
 protected:
  v1::PutRequest RandomRequest(size_t data_bytes) {
    v1::PutRequest request;
    if (Uniform(0, 1)) {
      v1::BlockHeader* header = request.mutable_header();
      header->set_namespace_("ns");
      header->set_key(RandomBytes(Uniform(1, 40), rng_));
      header->set_dtype(v1::DTYPE_BF16);
      header->mutable_shape()->set_tokens(
          static_cast<uint32_t>(Uniform(1, 99)));
      request.set_sequence(rng_());
    }
    request.set_offset(Uniform(0, 1) ? 0 : rng_());
    request.set_data(RandomBytes(data_bytes, rng_));
    request.set_last(Uniform(0, 1));
    return request;
  }

  // Expects `chunk` to hold `request`: its fields, and its data.
  static void ExpectHolds(const PutChunk& chunk,
                          const v1::PutRequest& request) {
    ASSERT_TRUE(chunk.parse_status().ok()) << chunk.parse_status();
    v1::PutRequest without_data = request;
    without_data.clear_data();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        chunk.fields(), without_data))
        << chunk.fields().DebugString() << " vs " << without_data.DebugString();
    EXPECT_TRUE(chunk.fields().data().empty());
    ASSERT_EQ(chunk.data_size(), request.data().size());
    std::string copied(chunk.data_size() + 2, '\x5a');
    chunk.CopyDataTo(reinterpret_cast<std::byte*>(copied.data()) + 1);
    EXPECT_EQ(copied.front(), '\x5a');
    EXPECT_EQ(copied.back(), '\x5a');
    EXPECT_TRUE(copied.substr(1, chunk.data_size()) == request.data());
  }
};

TEST_F(PutChunkTest, ParsesEveryFieldAndCopiesTheDataWhereverSlicesAreCut) {
  for (int trial = 0; trial < 200; ++trial) {
    const v1::PutRequest request = RandomRequest(Uniform(0, 5000));
    PutChunk chunk;
    ASSERT_TRUE(
        chunk.Parse(RandomSlices(request.SerializeAsString(), rng_, 12)).ok());
    ExpectHolds(chunk, request);
  }
}

TEST_F(PutChunkTest, MegabytesOfDataOverHundredsOfSlicesCopyExactly) {
  const v1::PutRequest request = RandomRequest((size_t{3} << 20) + 123);
  PutChunk chunk;
  ASSERT_TRUE(
      chunk.Parse(RandomSlices(request.SerializeAsString(), rng_, 300)).ok());
  ExpectHolds(chunk, request);
}

TEST_F(PutChunkTest, FieldsInAnyOrderAndRepeatedOnesResolveAsProtobufDoes) {
  // Hand-made wire bytes: fields out of order, data twice (the last wins),
  // the header twice (merged).
  auto field = [](const v1::PutRequest& r) { return r.SerializeAsString(); };
  v1::PutRequest last_and_sequence, first_data, offset, second_data, key, shape;
  last_and_sequence.set_last(true);
  last_and_sequence.set_sequence(77);
  first_data.set_data(RandomBytes(100, rng_));
  offset.set_offset(4096);
  second_data.set_data(RandomBytes(300, rng_));
  key.mutable_header()->set_key("k");
  shape.mutable_header()->mutable_shape()->set_heads(8);
  const std::string wire = field(last_and_sequence) + field(first_data) +
                           field(key) + field(offset) + field(second_data) +
                           field(shape);
  v1::PutRequest expected;
  ASSERT_TRUE(expected.ParseFromString(wire));
  ASSERT_EQ(expected.data(), second_data.data());

  PutChunk chunk;
  ASSERT_TRUE(chunk.Parse(RandomSlices(wire, rng_)).ok());
  ExpectHolds(chunk, expected);
  EXPECT_EQ(chunk.fields().header().key(), "k");
  EXPECT_EQ(chunk.fields().header().shape().heads(), 8u);
}

TEST_F(PutChunkTest, EmptyMessageIsAnEmptyChunk) {
  PutChunk chunk;
  ASSERT_TRUE(chunk.Parse({}).ok());
  EXPECT_EQ(chunk.data_size(), 0u);
  chunk.CopyDataTo(nullptr);  // nothing to copy
}

TEST_F(PutChunkTest, MalformedBytesAreInvalidArgumentSayingWhy) {
  v1::PutRequest data_only;
  data_only.set_data(RandomBytes(1000, rng_));
  const std::string wire = data_only.SerializeAsString();
  struct Case {
    std::string bytes;
    const char* why;
  };
  const Case cases[] = {
      {wire.substr(0, wire.size() - Uniform(1, 999)), "data is cut short"},
      {std::string("\x1a\xff\xff\xff\xff\xff\xff", 7), "data size"},
      {std::string("\x00\x01", 2), "malformed field tag"},
      {std::string("\x10\xff", 2), "malformed"},  // truncated varint offset
  };
  for (const Case& c : cases) {
    PutChunk chunk;
    const absl::Status status = chunk.Parse(RandomSlices(c.bytes, rng_));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.why;
    EXPECT_THAT(status.message(), HasSubstr("not a valid kvq.v1.PutRequest"));
    EXPECT_THAT(status.message(), HasSubstr(c.why));
    EXPECT_EQ(chunk.parse_status(), status);
  }
}

TEST_F(PutChunkTest, NamespaceThatIsNotUtf8IsInvalidArgumentNamingTheRule) {
  v1::PutRequest request;
  request.mutable_header()->set_namespace_(std::string("mod\xff", 4));
  request.set_data(RandomBytes(64, rng_));
  std::string wire;
  ASSERT_TRUE(request.SerializePartialToString(&wire));
  PutChunk chunk;
  const absl::Status status = chunk.Parse(RandomSlices(wire, rng_));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("header.namespace must be valid UTF-8"));
}

TEST_F(PutChunkTest, ReleaseDataLetsGoOfTheDataAndKeepsTheFields) {
  const v1::PutRequest request = RandomRequest(Uniform(1, 20000));
  PutChunk chunk;
  ASSERT_TRUE(
      chunk.Parse(RandomSlices(request.SerializeAsString(), rng_, 8)).ok());
  chunk.ReleaseData();
  EXPECT_EQ(chunk.data_size(), 0u);
  v1::PutRequest without_data = request;
  without_data.clear_data();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      chunk.fields(), without_data));
  // The next message parses as if nothing had been released.
  const v1::PutRequest next = RandomRequest(Uniform(0, 5000));
  ASSERT_TRUE(chunk.Parse(RandomSlices(next.SerializeAsString(), rng_)).ok());
  ExpectHolds(chunk, next);
}

TEST_F(PutChunkTest, GrpcDeserializesIntoItAndReleasesTheBuffer) {
  const v1::PutRequest request = RandomRequest(20000);
  const std::vector<grpc::Slice> slices =
      RandomSlices(request.SerializeAsString(), rng_);
  grpc::ByteBuffer buffer(slices.data(), slices.size());
  PutChunk chunk;
  ASSERT_TRUE(
      grpc::SerializationTraits<PutChunk>::Deserialize(&buffer, &chunk).ok());
  EXPECT_EQ(buffer.Length(), 0u);
  ExpectHolds(chunk, request);

  const std::string bad("\x00", 1);
  grpc::Slice bad_slice(bad.data(), bad.size());
  grpc::ByteBuffer bad_buffer(&bad_slice, 1);
  const grpc::Status status =
      grpc::SerializationTraits<PutChunk>::Deserialize(&bad_buffer, &chunk);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(chunk.parse_status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvq
