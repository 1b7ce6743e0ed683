// PutMessage: the client sends Put chunks with their data referenced where
// the caller hands an owner, copied once where not. A serialized message
// must read back as the PutRequest it stands for either way; a referenced
// data slice must be the caller's memory, and its owner must live until
// gRPC's last slice of it goes.

#include "client/put_message.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/unit/wire_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq {
namespace {

using ::kvq::wire_testing::RandomBytes;

using ::google::protobuf::util::MessageDifferencer;

grpc::ByteBuffer Serialize(const PutMessage& message) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  EXPECT_TRUE(grpc::SerializationTraits<PutMessage>::Serialize(
                  message, &buffer, &own_buffer)
                  .ok());
  EXPECT_TRUE(own_buffer);
  return buffer;
}

std::vector<grpc::Slice> SlicesOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  return slices;
}

class PutMessageTest : public testing::SeededTest {
 protected:
  // Every field but data, each set or left default at random, as PutMany
  // sets them (the header and sequence on a block's first chunk).
  v1::PutRequest RandomFields() {
    v1::PutRequest fields;
    if (Uniform(0, 1)) {
      v1::BlockHeader* header = fields.mutable_header();
      header->set_namespace_("model-" + std::to_string(Uniform(0, 9)));
      header->set_key(RandomBytes(Uniform(1, 64), rng_));
      header->set_dtype(v1::DTYPE_FP16);
      header->mutable_shape()->set_planes(2);
      header->mutable_shape()->set_tokens(static_cast<uint32_t>(Uniform(1, 99)));
      header->mutable_shape()->set_heads(8);
      header->mutable_shape()->set_head_dim(128);
      fields.set_sequence(rng_());
    }
    if (Uniform(0, 1)) fields.set_offset(rng_());
    fields.set_last(Uniform(0, 1));
    return fields;
  }
};

TEST_F(PutMessageTest, SerializedMessageReadsAsThePutRequestItStandsFor) {
  for (int trial = 0; trial < 300; ++trial) {
    v1::PutRequest expected = RandomFields();
    auto block = std::make_shared<const std::string>(
        RandomBytes(Uniform(0, 1) ? Uniform(0, 70000) : Uniform(0, 2), rng_));
    PutMessage message;
    message.fields() = expected;
    const bool referenced = Uniform(0, 1) == 1;
    message.set_data(std::as_bytes(std::span<const char>(*block)),
                     referenced ? block : nullptr);
    expected.set_data(*block);

    grpc::ByteBuffer buffer = Serialize(message);
    // A server reads it with gRPC's protobuf deserializer (slices as they
    // are), or as plain bytes.
    v1::PutRequest read;
    ASSERT_TRUE(
        grpc::SerializationTraits<v1::PutRequest>::Deserialize(&buffer, &read)
            .ok());
    EXPECT_TRUE(MessageDifferencer::Equals(read, expected))
        << read.ShortDebugString().substr(0, 300);
    EXPECT_TRUE(read.data() == expected.data());
  }
}

TEST_F(PutMessageTest, WithoutAnOwnerTheDataIsCopied) {
  std::string bytes = RandomBytes(4096, rng_);
  const std::string sent = bytes;
  PutMessage message;
  message.set_data(std::as_bytes(std::span<const char>(bytes)), nullptr);
  grpc::ByteBuffer buffer = Serialize(message);
  const std::vector<grpc::Slice> slices = SlicesOf(buffer);
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_NE(static_cast<const void*>(slices[1].begin()),
            static_cast<const void*>(bytes.data()));
  bytes.assign(bytes.size(), 'x');  // the caller reuses its memory
  v1::PutRequest read;
  ASSERT_TRUE(
      grpc::SerializationTraits<v1::PutRequest>::Deserialize(&buffer, &read)
          .ok());
  EXPECT_TRUE(read.data() == sent);
}

TEST_F(PutMessageTest, DataIsTheCallersMemoryHeldUntilTheLastSliceGoes) {
  bool released = false;
  const std::string bytes = RandomBytes(100000, rng_);
  const std::span<const std::byte> part =
      std::as_bytes(std::span<const char>(bytes)).subspan(8192, 65536);
  std::vector<grpc::Slice> slices;
  {
    std::shared_ptr<const void> owner(nullptr,
                                      [&](const void*) { released = true; });
    PutMessage message;
    message.fields().set_offset(8192);
    message.set_data(part, std::move(owner));
    slices = SlicesOf(Serialize(message));
  }
  // The message and the buffer are gone, as they are once Write() returns;
  // gRPC's transport may still hold the slices.
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(static_cast<const void*>(slices[1].begin()),
            static_cast<const void*>(part.data()));
  EXPECT_EQ(slices[1].size(), part.size());
  EXPECT_FALSE(released);
  slices.clear();
  EXPECT_TRUE(released);
}

}  // namespace
}  // namespace kvq
