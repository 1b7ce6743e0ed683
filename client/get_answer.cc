#include "client/get_answer.h"

#include <cstring>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvq {

absl::Status GetAnswer::Parse(std::vector<grpc::Slice> slices) {
  fields_.Clear();
  slices_ = std::move(slices);
  data_ = {};
  absl::StatusOr<wire::DataRange> data =
      wire::ParseAllButData(slices_, v1::GetResponse::kDataFieldNumber,
                            "header.namespace and message", &fields_);
  if (!data.ok()) {
    fields_.Clear();
    slices_.clear();
    return absl::InvalidArgumentError(
        absl::StrCat("the server sent an answer that is not a valid "
                     "kvq.v1.GetResponse: ",
                     data.status().message()));
  }
  data_ = *data;
  return absl::OkStatus();
}

void GetAnswer::AppendDataTo(std::string* out) const {
  for (std::span<const std::byte> piece : wire::DataPiecesIn(slices_, data_)) {
    out->append(reinterpret_cast<const char*>(piece.data()), piece.size());
  }
}

void GetAnswer::CopyDataTo(std::byte* dst) const {
  for (std::span<const std::byte> piece : wire::DataPiecesIn(slices_, data_)) {
    std::memcpy(dst, piece.data(), piece.size());
    dst += piece.size();
  }
}

grpc::internal::RpcMethod GetMethod(
    std::shared_ptr<grpc::ChannelInterface> channel) {
  return grpc::internal::RpcMethod("/kvq.v1.KVCache/Get",
                                   grpc::internal::RpcMethod::SERVER_STREAMING,
                                   std::move(channel));
}

std::unique_ptr<GetAnswerStream> StartGetStream(
    grpc::ChannelInterface* channel,
    const grpc::internal::RpcMethod& get_method, grpc::ClientContext* context,
    const v1::GetRequest& request) {
  return std::unique_ptr<GetAnswerStream>(
      grpc::internal::ClientReaderFactory<GetAnswer>::Create(
          channel, get_method, context, request));
}

}  // namespace kvq

namespace grpc {

Status SerializationTraits<kvq::GetAnswer, void>::Deserialize(
    ByteBuffer* buffer, kvq::GetAnswer* answer) {
  return kvq::wire::DeserializeByParsing(buffer, answer);
}

Status SerializationTraits<kvq::GetAnswer, void>::Serialize(
    const kvq::GetAnswer& /*answer*/, ByteBuffer* /*buffer*/,
    bool* /*own_buffer*/) {
  return Status(StatusCode::UNIMPLEMENTED,
                "kvq::GetAnswer is only ever received, never sent");
}

}  // namespace grpc
