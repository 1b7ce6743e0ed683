#include "server/service/put_chunk.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/parallel.h"

namespace kvq {

PutChunk::PutChunk(const v1::PutRequest& request)
    : fields_(request), owned_data_(request.data()) {
  fields_.clear_data();
  data_.size = owned_data_.size();
}

absl::Status PutChunk::Parse(std::vector<grpc::Slice> slices) {
  parse_status_ = ParseFields(std::move(slices));
  return parse_status_;
}

absl::Status PutChunk::ParseFields(std::vector<grpc::Slice> slices) {
  fields_.Clear();
  owned_data_.clear();
  slices_ = std::move(slices);
  data_ = {};
  absl::StatusOr<wire::DataRange> data =
      wire::ParseAllButData(slices_, v1::PutRequest::kDataFieldNumber,
                            "header.namespace", &fields_);
  if (!data.ok()) {
    fields_.Clear();
    return absl::InvalidArgumentError(
        absl::StrCat("a Put message is not a valid kvq.v1.PutRequest: ",
                     data.status().message()));
  }
  data_ = *data;
  return absl::OkStatus();
}

std::vector<std::span<const std::byte>> PutChunk::DataPieces() const {
  if (!slices_.empty()) return wire::DataPiecesIn(slices_, data_);
  std::vector<std::span<const std::byte>> pieces;
  if (!owned_data_.empty()) {
    pieces.emplace_back(reinterpret_cast<const std::byte*>(owned_data_.data()),
                        owned_data_.size());
  }
  return pieces;
}

void PutChunk::CopyDataTo(std::byte* dst, CopyWrites writes) const {
  ParallelGather(dst, DataPieces(), writes);
}

void PutChunk::ReleaseData() {
  slices_.clear();
  slices_.shrink_to_fit();
  owned_data_.clear();
  owned_data_.shrink_to_fit();
  data_ = {};
}

}  // namespace kvq

namespace grpc {

Status SerializationTraits<kvq::PutChunk, void>::Deserialize(
    ByteBuffer* buffer, kvq::PutChunk* chunk) {
  return kvq::wire::DeserializeByParsing(buffer, chunk);
}

Status SerializationTraits<kvq::PutChunk, void>::Serialize(
    const kvq::PutChunk& /*chunk*/, ByteBuffer* /*buffer*/,
    bool* /*own_buffer*/) {
  return Status(StatusCode::UNIMPLEMENTED,
                "kvq::PutChunk is only ever received, never sent");
}

}  // namespace grpc
