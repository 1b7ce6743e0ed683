#include "server/service/put_chunk.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/parallel.h"

namespace kvq {
namespace {

using google::protobuf::internal::WireFormatLite;

constexpr uint32_t kDataTag =
    WireFormatLite::MakeTag(v1::PutRequest::kDataFieldNumber,
                            WireFormatLite::WIRETYPE_LENGTH_DELIMITED);

absl::Status NotAPutRequest(std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("a Put message is not a valid kvq.v1.PutRequest: ",
                   absl::string_view(what.data(), what.size())));
}

}  // namespace

PutChunk::PutChunk(const v1::PutRequest& request)
    : fields_(request), owned_data_(request.data()) {
  fields_.clear_data();
  data_size_ = owned_data_.size();
}

absl::Status PutChunk::Parse(std::vector<grpc::Slice> slices) {
  parse_status_ = ParseFields(std::move(slices));
  return parse_status_;
}

absl::Status PutChunk::ParseFields(std::vector<grpc::Slice> slices) {
  fields_.Clear();
  owned_data_.clear();
  slices_ = std::move(slices);
  data_offset_ = 0;
  data_size_ = 0;

  // Every field but `data` is copied, tag and all, into `rest` and parsed
  // there; `data` is only located and skipped.
  std::string rest;
  {
    grpc::ByteBuffer buffer(slices_.data(), slices_.size());  // refs, no copy
    grpc::ProtoBufferReader reader(&buffer);
    google::protobuf::io::CodedInputStream input(&reader);
    google::protobuf::io::StringOutputStream rest_stream(&rest);
    google::protobuf::io::CodedOutputStream rest_output(&rest_stream);
    for (uint32_t tag = input.ReadTag(); tag != 0; tag = input.ReadTag()) {
      if (tag == kDataTag) {
        uint32_t size = 0;
        if (!input.ReadVarint32(&size)) return NotAPutRequest("bad data size");
        data_offset_ = static_cast<uint64_t>(input.CurrentPosition());
        data_size_ = size;
        if (!input.Skip(static_cast<int>(size))) {
          return NotAPutRequest("data is cut short");
        }
      } else if (!WireFormatLite::SkipField(&input, tag, &rest_output)) {
        return NotAPutRequest("a field is cut short or malformed");
      }
    }
    // ReadTag() also answers 0 for a malformed tag; only the end is fine.
    if (!input.ConsumedEntireMessage()) {
      return NotAPutRequest("malformed field tag");
    }
  }
  if (!fields_.ParseFromString(rest)) {
    return NotAPutRequest(
        "a field other than data does not parse (string fields such as "
        "header.namespace must be valid UTF-8)");
  }
  return absl::OkStatus();
}

std::vector<std::span<const std::byte>> PutChunk::DataPieces() const {
  std::vector<std::span<const std::byte>> pieces;
  if (slices_.empty()) {
    if (!owned_data_.empty()) {
      pieces.emplace_back(
          reinterpret_cast<const std::byte*>(owned_data_.data()),
          owned_data_.size());
    }
    return pieces;
  }
  // The part of each slice that holds data, in order.
  uint64_t skip = data_offset_, left = data_size_;
  for (const grpc::Slice& slice : slices_) {
    if (left == 0) break;
    if (skip >= slice.size()) {
      skip -= slice.size();
      continue;
    }
    const uint64_t n = std::min<uint64_t>(slice.size() - skip, left);
    pieces.emplace_back(
        reinterpret_cast<const std::byte*>(slice.begin() + skip),
        static_cast<size_t>(n));
    skip = 0;
    left -= n;
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
  data_offset_ = 0;
  data_size_ = 0;
}

}  // namespace kvq

namespace grpc {

Status SerializationTraits<kvq::PutChunk, void>::Deserialize(
    ByteBuffer* buffer, kvq::PutChunk* chunk) {
  std::vector<Slice> slices;
  Status dumped = buffer->Dump(&slices);
  buffer->Clear();
  if (!dumped.ok()) return dumped;
  const absl::Status parsed = chunk->Parse(std::move(slices));
  if (!parsed.ok()) {
    return Status(StatusCode::INTERNAL, std::string(parsed.message()));
  }
  return Status::OK;
}

Status SerializationTraits<kvq::PutChunk, void>::Serialize(
    const kvq::PutChunk& /*chunk*/, ByteBuffer* /*buffer*/,
    bool* /*own_buffer*/) {
  return Status(StatusCode::UNIMPLEMENTED,
                "kvq::PutChunk is only ever received, never sent");
}

}  // namespace grpc
