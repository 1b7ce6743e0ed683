// PutMessage: one kvq.v1.PutRequest as the client sends it, its `data` left
// in the caller's block.
//
// A generated PutRequest copies every chunk twice before it reaches gRPC:
// into the message (set_data), then into gRPC's slices. Client::PutMany
// writes PutMessages instead: grpc::SerializationTraits<PutMessage> (below)
// sends `data` by reference where it has an owner (kvq::wire::
// SerializeReferencingData), so a block goes from the caller's memory to
// the socket with no copy of ours, and copies it once where it has none.
//
// gRPC may hold the data slice after Write() returns, and after the call
// has ended (until the bytes are on the socket, which a stalled peer can
// put off indefinitely), so a referenced slice holds the owner, never just
// the bytes. Wire-compatible with PutRequest.

#ifndef KVQ_CLIENT_PUT_MESSAGE_H_
#define KVQ_CLIENT_PUT_MESSAGE_H_

#include <grpcpp/impl/serialization_traits.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <memory>
#include <span>

#include "kvq/v1/kvcache.pb.h"

namespace kvq {

class PutMessage {
 public:
  // Every field of the request but `data`, sent as protobuf sends them.
  const v1::PutRequest& fields() const { return fields_; }
  v1::PutRequest& fields() { return fields_; }

  // The request's `data`: `bytes`, which `owner` keeps alive and unchanged
  // for as long as a message serialized from it holds `owner`; with no
  // owner, serializing copies them.
  void set_data(std::span<const std::byte> bytes,
                std::shared_ptr<const void> owner) {
    data_ = bytes;
    owner_ = std::move(owner);
  }
  std::span<const std::byte> data() const { return data_; }
  const std::shared_ptr<const void>& data_owner() const { return owner_; }

 private:
  v1::PutRequest fields_;
  std::span<const std::byte> data_;
  std::shared_ptr<const void> owner_;
};

}  // namespace kvq

namespace grpc {

// Lets a client stream write PutMessages. They are never received: the
// server reads its own kind (server/service/put_chunk.h).
template <>
class SerializationTraits<kvq::PutMessage, void> {
 public:
  static Status Serialize(const kvq::PutMessage& message, ByteBuffer* buffer,
                          bool* own_buffer);
  static Status Deserialize(ByteBuffer* buffer, kvq::PutMessage* message);
};

}  // namespace grpc

#endif  // KVQ_CLIENT_PUT_MESSAGE_H_
