// ReferencedDataMessage: a protobuf message with a large `data` bytes field,
// sent through gRPC without copying that field.
//
// Sending a generated message copies a bytes field twice: into the message
// (set_data), then into gRPC's slices (serialization). A
// ReferencedDataMessage<Fields> holds every field but `data` in a Fields
// message and `data` as a view; its grpc::SerializationTraits (below) put
// the other fields into one small slice, followed by the field's tag and
// length, and hand gRPC the field's bytes as a slice that references them,
// so they reach the socket from where they lie (a server's block buffer, a
// client's tensor). The server's Get answers (GetChunk) and the client's
// Put chunks (PutMessage) are such messages.
//
// Contract: gRPC may hold the data slice after the Write() that sent it
// returns, and after its call has ended (until the bytes are on the
// socket, which a stalled peer can put off indefinitely), so the slice
// holds a reference to the owner given with the data, dropped on whichever
// thread lets go of the slice last; the bytes must not change while the
// owner is held. Data given without an owner (an empty one) is copied
// once, into a slice of its own. The result is wire-compatible with the
// Fields message that has `data` in its field: the field comes after the
// others, and protobuf parsers take fields in any order. Such messages are
// only ever sent; receiving one is UNIMPLEMENTED.

#ifndef KVQ_PROTO_REFERENCED_DATA_H_
#define KVQ_PROTO_REFERENCED_DATA_H_

#include <google/protobuf/message_lite.h>
#include <grpcpp/impl/serialization_traits.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <memory>
#include <span>
#include <utility>

namespace kvq::wire {

// `buffer` := `fields` serialized, then field number `data_field` (a bytes
// field) holding `data`: referenced with `owner`, or, where `owner` owns
// nothing (is empty), copied once into a slice of its own (no data slice
// when `data` is empty). Never fails.
void SerializeReferencingData(const google::protobuf::MessageLite& fields,
                              int data_field, std::span<const std::byte> data,
                              std::shared_ptr<const void> owner,
                              grpc::ByteBuffer* buffer);

// Fields: a generated message with a bytes field `data`.
template <class Fields>
class ReferencedDataMessage {
 public:
  // Every field of the message but `data`, sent as protobuf sends them;
  // `data` belongs in set_data() (were both set, a reader would keep
  // data(), which comes later).
  const Fields& fields() const { return fields_; }
  Fields& fields() { return fields_; }

  // The message's `data`: `bytes`, which `owner` keeps alive and unchanged
  // for as long as the message or one serialized from it holds `owner`;
  // with an empty owner, serializing copies them.
  void set_data(std::span<const std::byte> bytes,
                std::shared_ptr<const void> owner) {
    data_ = bytes;
    owner_ = std::move(owner);
  }
  std::span<const std::byte> data() const { return data_; }
  const std::shared_ptr<const void>& data_owner() const { return owner_; }

 private:
  Fields fields_;
  std::span<const std::byte> data_;
  std::shared_ptr<const void> owner_;
};

}  // namespace kvq::wire

namespace grpc {

// Lets gRPC methods write ReferencedDataMessages (SerializeReferencingData:
// never fails, as a synchronous Write aborts the process when serializing
// does).
template <class Fields>
class SerializationTraits<kvq::wire::ReferencedDataMessage<Fields>, void> {
 public:
  static Status Serialize(const kvq::wire::ReferencedDataMessage<Fields>& message,
                          ByteBuffer* buffer, bool* own_buffer) {
    kvq::wire::SerializeReferencingData(message.fields(),
                                        Fields::kDataFieldNumber,
                                        message.data(), message.data_owner(),
                                        buffer);
    *own_buffer = true;
    return Status::OK;
  }
  static Status Deserialize(
      ByteBuffer* /*buffer*/,
      kvq::wire::ReferencedDataMessage<Fields>* /*message*/) {
    return Status(StatusCode::UNIMPLEMENTED,
                  "a message with referenced data is only ever sent");
  }
};

}  // namespace grpc

#endif  // KVQ_PROTO_REFERENCED_DATA_H_
