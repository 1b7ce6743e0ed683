// GetAnswer: the client reads Get answers with their data left in gRPC's
// buffers. An answer must read as the GetResponse it was serialized from,
// whatever slices it arrives in; its data must append exactly; bytes that
// are not a GetResponse must be refused saying why.

#include "client/get_answer.h"

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/unit/kernels_test_util.h"
#include "tests/unit/wire_test_util.h"

namespace kvq {
namespace {

using ::kvq::wire_testing::RandomBytes;

using ::google::protobuf::util::MessageDifferencer;
using ::kvq::wire_testing::RandomSlices;
using ::testing::HasSubstr;

class GetAnswerTest : public testing::SeededTest {
 protected:
  // A chunk as the server sends one: the first carries the header.
  v1::GetResponse RandomResponse(size_t data_bytes) {
    v1::GetResponse response;
    response.set_key_index(static_cast<uint32_t>(Uniform(0, 1000)));
    response.set_offset(Uniform(0, uint64_t{1} << 40));
    response.set_last(Uniform(0, 1) == 1);
    if (Uniform(0, 1) == 1) {
      v1::BlockHeader* header = response.mutable_header();
      header->set_namespace_("model-" + std::to_string(Uniform(0, 99)));
      header->set_key(RandomBytes(Uniform(1, 40), rng_));
      header->set_dtype(v1::DTYPE_BF16);
    }
    response.set_data(RandomBytes(data_bytes, rng_));
    return response;
  }
};

TEST_F(GetAnswerTest, ReadsAsTheResponseInAnySlicesAndAppendsItsData) {
  for (size_t data_bytes : {size_t{0}, size_t{1}, size_t{4099},
                            static_cast<size_t>(Uniform(1, 300000))}) {
    SCOPED_TRACE(data_bytes);
    const v1::GetResponse response = RandomResponse(data_bytes);
    GetAnswer answer;
    ASSERT_TRUE(
        answer.Parse(RandomSlices(response.SerializeAsString(), rng_, 12))
            .ok());
    v1::GetResponse without_data = response;
    without_data.clear_data();
    EXPECT_TRUE(MessageDifferencer::Equals(answer.fields(), without_data));
    EXPECT_TRUE(answer.fields().data().empty());
    EXPECT_EQ(answer.data_size(), data_bytes);
    // Appends: what is there stays.
    std::string out = "before";
    answer.AppendDataTo(&out);
    EXPECT_TRUE(out == "before" + response.data());
  }
}

TEST_F(GetAnswerTest, ResolvesRepeatedFieldsAsProtobufDoes) {
  // Two messages back to back parse as one: the later data wins, the
  // header merges.
  v1::GetResponse first = RandomResponse(Uniform(1, 5000));
  v1::GetResponse second = RandomResponse(Uniform(1, 5000));
  second.mutable_header()->set_key("second-key");
  v1::GetResponse merged = first;
  merged.MergeFrom(second);
  GetAnswer answer;
  ASSERT_TRUE(answer
                  .Parse(RandomSlices(
                      first.SerializeAsString() + second.SerializeAsString(),
                      rng_))
                  .ok());
  v1::GetResponse without_data = merged;
  without_data.clear_data();
  EXPECT_TRUE(MessageDifferencer::Equals(answer.fields(), without_data));
  std::string out;
  answer.AppendDataTo(&out);
  EXPECT_TRUE(out == second.data());
}

TEST_F(GetAnswerTest, BytesThatAreNotAGetResponseAreRefusedSayingWhy) {
  const v1::GetResponse response = RandomResponse(Uniform(1000, 9000));
  const std::string wire = response.SerializeAsString();
  // The fields numbered after `data` are serialized after it: cutting only
  // them off would leave a valid message, so the cut always reaches into
  // the data.
  v1::GetResponse after_data;
  after_data.set_last(response.last());
  after_data.set_code(response.code());
  after_data.set_message(response.message());
  const size_t tail = after_data.ByteSizeLong();
  struct Bad {
    std::string bytes;
    const char* why;
  };
  for (const Bad& bad : {
           Bad{wire.substr(0, wire.size() - tail - Uniform(1, 999)), "cut short"},
           Bad{std::string("\x00\x01", 2), "malformed field tag"},
       }) {
    SCOPED_TRACE(bad.why);
    GetAnswer answer;
    const absl::Status status = answer.Parse(RandomSlices(bad.bytes, rng_));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("not a valid kvq.v1.GetResponse"));
    EXPECT_THAT(status.message(), HasSubstr(bad.why));
    EXPECT_EQ(answer.data_size(), 0u);
  }
  // A string field that is not UTF-8: the message names the fields.
  v1::GetResponse not_utf8 = RandomResponse(64);
  not_utf8.set_message(std::string("bad\xff", 4));
  std::string bytes;
  ASSERT_TRUE(not_utf8.SerializePartialToString(&bytes));
  GetAnswer answer;
  const absl::Status status = answer.Parse(RandomSlices(bytes, rng_));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("must be valid UTF-8"));
  EXPECT_THAT(status.message(), HasSubstr("message"));
}

TEST_F(GetAnswerTest, GrpcDeserializesItAndNeverSendsIt) {
  const v1::GetResponse response = RandomResponse(Uniform(1, 70000));
  const std::string bytes = response.SerializeAsString();
  grpc::Slice slice(bytes.data(), bytes.size());
  grpc::ByteBuffer buffer(&slice, 1);
  GetAnswer answer;
  ASSERT_TRUE(
      grpc::SerializationTraits<GetAnswer>::Deserialize(&buffer, &answer).ok());
  std::string out;
  answer.AppendDataTo(&out);
  EXPECT_TRUE(out == response.data());
  EXPECT_EQ(answer.fields().key_index(), response.key_index());

  grpc::ByteBuffer sent;
  bool own_buffer = false;
  EXPECT_EQ(grpc::SerializationTraits<GetAnswer>::Serialize(answer, &sent,
                                                             &own_buffer)
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  // Garbage is INTERNAL to gRPC, which ends the call with it.
  const std::string garbage("\x00\x01", 2);
  grpc::Slice garbage_slice(garbage.data(), garbage.size());
  grpc::ByteBuffer garbage_buffer(&garbage_slice, 1);
  EXPECT_EQ(grpc::SerializationTraits<GetAnswer>::Deserialize(&garbage_buffer,
                                                               &answer)
                .error_code(),
            grpc::StatusCode::INTERNAL);
}

}  // namespace
}  // namespace kvq
