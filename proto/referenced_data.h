// SerializeReferencingData: a protobuf message with a large `bytes` field,
// serialized for gRPC without copying that field.
//
// Sending a generated message copies a bytes field twice: into the message
// (set_data), then into gRPC's slices (serialization). Here the other
// fields go into one small slice, followed by the field's tag and length,
// and the field's bytes go to gRPC as a slice that references them, so
// they reach the socket from where they lie (a server's block buffer, a
// client's tensor).
//
// Contract: gRPC may hold the data slice after the Write() that sent it
// returns (in its transport, until the bytes are on the socket), so the
// slice holds a reference to `owner`, dropped on whichever thread lets go
// of the slice last. The bytes must not change while `owner` is held. The
// result is wire-compatible with the message that has `data` in its field:
// the field comes after the others, and protobuf parsers take fields in
// any order. `fields` must not set the field itself.

#ifndef KVQ_PROTO_REFERENCED_DATA_H_
#define KVQ_PROTO_REFERENCED_DATA_H_

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace kvq::wire {

// `buffer` := `fields` serialized, then field number `data_field` (a bytes
// field) holding `data`: referenced with `owner`, or, where `owner` owns
// nothing (is empty), copied once into a slice of its own (no data slice
// when `data` is empty). Never fails.
void SerializeReferencingData(const google::protobuf::MessageLite& fields,
                              int data_field, std::span<const std::byte> data,
                              std::shared_ptr<const void> owner,
                              grpc::ByteBuffer* buffer);

}  // namespace kvq::wire

#endif  // KVQ_PROTO_REFERENCED_DATA_H_
