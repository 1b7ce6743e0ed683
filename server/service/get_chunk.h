// GetChunk: one kvq.v1.GetResponse as the server sends it, its `data` left
// in the block's buffer.
//
// Sending a GetResponse copies its `data` twice: into the message (a
// protobuf bytes field), then, serializing it, into gRPC's slices. The
// server's Get method writes GetChunks instead: grpc::SerializationTraits<
// GetChunk> (below) sends `data` by reference (kvq::wire::
// SerializeReferencingData), so that the block's buffer (page-locked
// staging on CUDA) is sent as it is.
//
// gRPC may hold that slice after Write() returns, so the chunk holds a
// shared reference to an owner of the bytes, and so does every slice
// serialized from it: the owner (e.g. the FetchedBlock, whose buffer then
// goes back to its StagingPool) is destroyed when the last of them lets go,
// on whichever thread that is. The bytes must not change while any of them
// lives. Wire-compatible with GetResponse.

#ifndef KVQ_SERVER_SERVICE_GET_CHUNK_H_
#define KVQ_SERVER_SERVICE_GET_CHUNK_H_

#include <grpcpp/impl/serialization_traits.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/functional/function_ref.h"
#include "kvq/v1/kvcache.pb.h"

namespace kvq {

class GetChunk {
 public:
  GetChunk() = default;

  // Every field of the response but `data`. Whatever is set here is sent as
  // protobuf sends it; `data` belongs in set_data() (were both set, a reader
  // would keep data(), which comes later).
  const v1::GetResponse& fields() const { return fields_; }
  v1::GetResponse& fields() { return fields_; }

  // The response's `data`: `bytes`, which `owner` keeps alive and unchanged
  // for as long as the chunk or a message serialized from it holds `owner`.
  void set_data(std::span<const std::byte> bytes,
                std::shared_ptr<const void> owner);
  std::span<const std::byte> data() const { return data_; }
  const std::shared_ptr<const void>& data_owner() const { return owner_; }

 private:
  v1::GetResponse fields_;
  std::span<const std::byte> data_;
  std::shared_ptr<const void> owner_;
};

// Answers one block: `data` (kept alive by `owner`) for the key at
// `key_index`, as chunks of at most `chunk_bytes` (> 0) bytes in order,
// `header` on the first, `last` on the final one, each referencing its
// range of `data`. Calls `write` with each chunk; stops, returning false,
// when `write` does (the client went away). An empty block has no chunk.
bool ForEachBlockChunk(uint32_t key_index, v1::BlockHeader header,
                       std::span<const std::byte> data,
                       std::shared_ptr<const void> owner, uint64_t chunk_bytes,
                       absl::FunctionRef<bool(const GetChunk&)> write);

}  // namespace kvq

namespace grpc {

// Lets a gRPC method write GetChunks (kvcache_service.cc registers its Get
// handler with them). Deserializing is the client's job: it reads a plain
// GetResponse, and a GetChunk is never received.
template <>
class SerializationTraits<kvq::GetChunk, void> {
 public:
  // SerializeReferencingData: never fails (a synchronous Write aborts the
  // process when serializing does).
  static Status Serialize(const kvq::GetChunk& chunk, ByteBuffer* buffer,
                          bool* own_buffer);
  static Status Deserialize(ByteBuffer* buffer, kvq::GetChunk* chunk);
};

}  // namespace grpc

#endif  // KVQ_SERVER_SERVICE_GET_CHUNK_H_
