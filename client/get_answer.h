// GetAnswer: one kvq.v1.GetResponse as the client receives it, its `data`
// left in the buffers gRPC received it in (proto/received_data.h). And the
// Get stream that reads them: the generated stub reads GetResponses only.
//
// Why: parsing a GetResponse copies its `data` into a std::string, and
// putting a block of several chunks together copies it again. A GetAnswer
// parses every other field and keeps `data` as a range of gRPC's slices,
// so that the one copy is AppendDataTo() into the block (Get), or
// CopyDataTo() into the caller's memory (GetInto).

#ifndef KVQ_CLIENT_GET_ANSWER_H_
#define KVQ_CLIENT_GET_ANSWER_H_

#include <grpcpp/client_context.h>
#include <grpcpp/impl/codegen/proto_utils.h>  // GetRequest's traits
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/impl/serialization_traits.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/status.h>
#include <grpcpp/support/sync_stream.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kvq/v1/kvcache.pb.h"
#include "proto/received_data.h"

namespace kvq {

class GetAnswer {
 public:
  // Parses a serialized GetResponse held in `slices`. INVALID_ARGUMENT when
  // the bytes are not one.
  absl::Status Parse(std::vector<grpc::Slice> slices);

  // Every field of the response except `data`, which is empty here.
  const v1::GetResponse& fields() const { return fields_; }
  v1::GetResponse& fields() { return fields_; }

  uint64_t data_size() const { return data_.size; }
  // Appends the data_size() bytes of `data` to `out`.
  void AppendDataTo(std::string* out) const;
  // Copies the data_size() bytes of `data` to `dst`.
  void CopyDataTo(std::byte* dst) const;

 private:
  v1::GetResponse fields_;
  std::vector<grpc::Slice> slices_;  // the message
  wire::DataRange data_;             // within the slices
};

using GetAnswerStream = grpc::ClientReader<GetAnswer>;

// kvq.v1.KVCache/Get, registered on `channel`, for StartGetStream.
grpc::internal::RpcMethod GetMethod(
    std::shared_ptr<grpc::ChannelInterface> channel);

// A Get call for `request` on `channel` (that of `get_method`) that reads
// GetAnswers, under `context`, which must outlive it.
std::unique_ptr<GetAnswerStream> StartGetStream(
    grpc::ChannelInterface* channel,
    const grpc::internal::RpcMethod& get_method, grpc::ClientContext* context,
    const v1::GetRequest& request);

}  // namespace kvq

namespace grpc {

// Lets a Get stream read GetAnswers off the wire. A GetAnswer is never
// sent.
template <>
class SerializationTraits<kvq::GetAnswer, void> {
 public:
  static Status Deserialize(ByteBuffer* buffer, kvq::GetAnswer* answer);
  static Status Serialize(const kvq::GetAnswer& answer, ByteBuffer* buffer,
                          bool* own_buffer);
};

}  // namespace grpc

#endif  // KVQ_CLIENT_GET_ANSWER_H_
