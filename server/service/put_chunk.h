// PutChunk: one kvq.v1.PutRequest as the server receives it, its `data` left
// in the buffers gRPC received it in.
//
// Parsing a PutRequest copies its `data` into a std::string (a protobuf bytes
// field), and assembling the block copies it again. The server's Put method
// reads PutChunks instead: grpc::SerializationTraits<PutChunk> (below) parses
// every field except `data` into fields(), and keeps `data` as a byte range
// of the message's slices (reference-counted, not copied:
// proto/received_data.h), so that the one copy is CopyDataTo() into the
// buffer the block is assembled in.

#ifndef KVQ_SERVER_SERVICE_PUT_CHUNK_H_
#define KVQ_SERVER_SERVICE_PUT_CHUNK_H_

#include <grpcpp/impl/serialization_traits.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/parallel.h"
#include "kvq/v1/kvcache.pb.h"
#include "proto/received_data.h"

namespace kvq {

class PutChunk {
 public:
  PutChunk() = default;
  // The chunk of an already parsed request (its data is copied once).
  explicit PutChunk(const v1::PutRequest& request);

  // Parses a serialized PutRequest held in `slices`. INVALID_ARGUMENT when
  // the bytes are not one; parse_status() keeps the answer.
  absl::Status Parse(std::vector<grpc::Slice> slices);

  // How the last Parse went. gRPC only tells a reader that a message could
  // not be read; this says why.
  const absl::Status& parse_status() const { return parse_status_; }

  // Every field of the request except `data`, which is empty here.
  const v1::PutRequest& fields() const { return fields_; }

  uint64_t data_size() const { return data_.size; }
  // Copies the data_size() bytes of `data` to `dst`, on several cores when
  // there are many (ParallelCopy), writing `dst` as `writes` says.
  void CopyDataTo(std::byte* dst,
                  CopyWrites writes = CopyWrites::kCached) const;

  // The data_size() bytes of `data` where they lie, in order: parts of
  // gRPC's slices (or of the owned copy), valid while this chunk holds
  // them, or while a copy of slices() does.
  std::vector<std::span<const std::byte>> DataPieces() const;
  // The slices the data lies in (empty for a chunk built from a request).
  // Copying one takes a reference: it keeps the bytes alive.
  const std::vector<grpc::Slice>& slices() const { return slices_; }

  // Lets go of the data's buffers (gRPC's slices), e.g. once it is copied,
  // so that they are free before the next message is read; fields() stays.
  void ReleaseData();

 private:
  absl::Status ParseFields(std::vector<grpc::Slice> slices);

  v1::PutRequest fields_;
  std::vector<grpc::Slice> slices_;  // the message, when parsed from slices
  std::string owned_data_;           // the data, when built from a request
  wire::DataRange data_;             // within the slices (its size either way)
  absl::Status parse_status_;
};

}  // namespace kvq

namespace grpc {

// Lets a gRPC method read PutChunks off the wire (kvcache_service.cc
// registers its Put handler with them). Serializing is the client's job: a
// PutChunk is never sent.
template <>
class SerializationTraits<kvq::PutChunk, void> {
 public:
  static Status Deserialize(ByteBuffer* buffer, kvq::PutChunk* chunk);
  static Status Serialize(const kvq::PutChunk& chunk, ByteBuffer* buffer,
                          bool* own_buffer);
};

}  // namespace grpc

#endif  // KVQ_SERVER_SERVICE_PUT_CHUNK_H_
