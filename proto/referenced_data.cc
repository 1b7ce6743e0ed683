#include "proto/referenced_data.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/slice.h>

#include <utility>

namespace kvq::wire {
namespace {

// A data slice's destroy callback: gRPC calls it, on whichever thread lets
// go of the slice last, with the owner reference the slice was made with.
void DropOwner(void* owner) {
  delete static_cast<std::shared_ptr<const void>*>(owner);
}

}  // namespace

void SerializeReferencingData(const google::protobuf::MessageLite& fields,
                              int data_field, std::span<const std::byte> data,
                              std::shared_ptr<const void> owner,
                              grpc::ByteBuffer* buffer) {
  using google::protobuf::internal::WireFormatLite;
  using google::protobuf::io::CodedOutputStream;
  const uint32_t tag = WireFormatLite::MakeTag(
      data_field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  const size_t fields_size = fields.ByteSizeLong();
  const size_t prefix_size =
      data.empty() ? 0
                   : CodedOutputStream::VarintSize32(tag) +
                         CodedOutputStream::VarintSize64(data.size());
  // The fields, then the data's tag and length, written straight into a
  // fresh slice (as gRPC's own protobuf serializer writes small messages).
  grpc::Slice slices[2] = {grpc::Slice(fields_size + prefix_size),
                           grpc::Slice()};
  uint8_t* out = const_cast<uint8_t*>(slices[0].begin());
  out = fields.SerializeWithCachedSizesToArray(out);
  size_t count = 1;
  if (!data.empty()) {
    out = CodedOutputStream::WriteTagToArray(tag, out);
    CodedOutputStream::WriteVarint64ToArray(data.size(), out);
    if (owner.use_count() == 0) {  // owns nothing (a null pointer may)
      slices[count++] = grpc::Slice(data.data(), data.size());  // a copy
    } else {
      // gRPC only reads a slice it sends; its API takes the bytes
      // non-const.
      slices[count++] = grpc::Slice(
          const_cast<std::byte*>(data.data()), data.size(), &DropOwner,
          new std::shared_ptr<const void>(std::move(owner)));
    }
  }
  grpc::ByteBuffer message(slices, count);  // refs the slices, copies nothing
  buffer->Swap(&message);
}

}  // namespace kvq::wire
