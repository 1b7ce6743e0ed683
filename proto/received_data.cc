#include "proto/received_data.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvq::wire {

using google::protobuf::internal::WireFormatLite;

absl::StatusOr<DataRange> ParseAllButData(
    const std::vector<grpc::Slice>& slices, int data_field,
    std::string_view string_fields, google::protobuf::MessageLite* fields) {
  const uint32_t data_tag = WireFormatLite::MakeTag(
      data_field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  DataRange data;
  // Every field but `data` is copied, tag and all, into `rest` and parsed
  // there; `data` is only located and skipped.
  std::string rest;
  {
    // References to the slices, no copy.
    grpc::ByteBuffer buffer(slices.data(), slices.size());
    grpc::ProtoBufferReader reader(&buffer);
    google::protobuf::io::CodedInputStream input(&reader);
    google::protobuf::io::StringOutputStream rest_stream(&rest);
    google::protobuf::io::CodedOutputStream rest_output(&rest_stream);
    for (uint32_t tag = input.ReadTag(); tag != 0; tag = input.ReadTag()) {
      if (tag == data_tag) {
        uint32_t size = 0;
        if (!input.ReadVarint32(&size)) {
          return absl::InvalidArgumentError("bad data size");
        }
        data.offset = static_cast<uint64_t>(input.CurrentPosition());
        data.size = size;
        if (!input.Skip(static_cast<int>(size))) {
          return absl::InvalidArgumentError("data is cut short");
        }
      } else if (!WireFormatLite::SkipField(&input, tag, &rest_output)) {
        return absl::InvalidArgumentError("a field is cut short or malformed");
      }
    }
    // ReadTag() also answers 0 for a malformed tag; only the end is fine.
    if (!input.ConsumedEntireMessage()) {
      return absl::InvalidArgumentError("malformed field tag");
    }
  }
  if (!fields->ParseFromString(rest)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a field other than data does not parse (string fields such as ",
        absl::string_view(string_fields.data(), string_fields.size()),
        " must be valid UTF-8)"));
  }
  return data;
}

std::vector<std::span<const std::byte>> DataPiecesIn(
    const std::vector<grpc::Slice>& slices, DataRange range) {
  std::vector<std::span<const std::byte>> pieces;
  // The part of each slice that holds data, in order.
  uint64_t skip = range.offset, left = range.size;
  for (const grpc::Slice& slice : slices) {
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

}  // namespace kvq::wire
