// Receiving a protobuf message with a large `data` bytes field without
// copying that field: the receive side of referenced_data.h.
//
// Parsing a generated message copies a bytes field into a std::string, and
// whoever assembles a block from it copies it again. ParseAllButData parses
// every other field of a serialized message held in gRPC's slices, and only
// locates `data` there; DataPiecesIn then gives its bytes where they lie,
// so that the one copy goes straight to where the block is assembled. The
// server's Put chunks (server/service/put_chunk.h) and the client's Get
// answers (client/get_message.h) are read this way.
//
// Wire-compatible with the generated message: fields in any order, and
// repeated occurrences resolved as protobuf does (the last `data` wins; a
// repeated message field merges).

#ifndef KVQ_PROTO_RECEIVED_DATA_H_
#define KVQ_PROTO_RECEIVED_DATA_H_

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kvq::wire {

// Where a bytes field lies in a message's serialized bytes.
struct DataRange {
  uint64_t offset = 0;
  uint64_t size = 0;
};

// Parses the message serialized in `slices` (in order) into `fields`, all
// but field number `data_field`, a bytes field, whose place it returns.
// INVALID_ARGUMENT, saying what is wrong, when the bytes are not such a
// message; `fields` is then unspecified. `string_fields` names the
// message's string fields for that answer (e.g. "header.namespace"), which
// protobuf refuses when they are not UTF-8.
absl::StatusOr<DataRange> ParseAllButData(
    const std::vector<grpc::Slice>& slices, int data_field,
    std::string_view string_fields, google::protobuf::MessageLite* fields);

// The bytes of `range` within `slices`, in order, where they lie (parts of
// the slices: valid while the slices are held).
std::vector<std::span<const std::byte>> DataPiecesIn(
    const std::vector<grpc::Slice>& slices, DataRange range);

// The body of a grpc::SerializationTraits<Message>::Deserialize for a
// message read this way: hands `buffer`'s slices (references, not copies)
// to message->Parse(std::vector<grpc::Slice>), which returns an
// absl::Status; a refusal becomes INTERNAL with its message, which gRPC
// ends the call with.
template <class Message>
grpc::Status DeserializeByParsing(grpc::ByteBuffer* buffer, Message* message) {
  std::vector<grpc::Slice> slices;
  grpc::Status dumped = buffer->Dump(&slices);
  buffer->Clear();
  if (!dumped.ok()) return dumped;
  const absl::Status parsed = message->Parse(std::move(slices));
  if (!parsed.ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        std::string(parsed.message()));
  }
  return grpc::Status::OK;
}

}  // namespace kvq::wire

#endif  // KVQ_PROTO_RECEIVED_DATA_H_
