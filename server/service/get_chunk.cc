#include "server/service/get_chunk.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/slice.h>

#include <algorithm>
#include <utility>

namespace kvq {
namespace {

using google::protobuf::internal::WireFormatLite;

constexpr uint32_t kDataTag =
    WireFormatLite::MakeTag(v1::GetResponse::kDataFieldNumber,
                            WireFormatLite::WIRETYPE_LENGTH_DELIMITED);

// A data slice's destroy callback: gRPC calls it, on whichever thread lets
// go of the slice last, with the owner reference the slice was made with.
void DropOwner(void* owner) {
  delete static_cast<std::shared_ptr<const void>*>(owner);
}

}  // namespace

void GetChunk::set_data(std::span<const std::byte> bytes,
                        std::shared_ptr<const void> owner) {
  data_ = bytes;
  owner_ = std::move(owner);
}

bool ForEachBlockChunk(uint32_t key_index, v1::BlockHeader header,
                       std::span<const std::byte> data,
                       std::shared_ptr<const void> owner, uint64_t chunk_bytes,
                       absl::FunctionRef<bool(const GetChunk&)> write) {
  // One chunk serves them all: gRPC serializes a message within Write(),
  // and the slices it may keep hold owner references of their own.
  GetChunk chunk;
  for (uint64_t offset = 0; offset < data.size();) {
    const uint64_t n = std::min<uint64_t>(chunk_bytes, data.size() - offset);
    v1::GetResponse& fields = chunk.fields();
    fields.Clear();
    fields.set_key_index(key_index);
    if (offset == 0) *fields.mutable_header() = std::move(header);
    fields.set_offset(offset);
    chunk.set_data(data.subspan(offset, n), owner);
    offset += n;
    fields.set_last(offset == data.size());
    if (!write(chunk)) return false;
  }
  return true;
}

}  // namespace kvq

namespace grpc {

Status SerializationTraits<kvq::GetChunk, void>::Serialize(
    const kvq::GetChunk& chunk, ByteBuffer* buffer, bool* own_buffer) {
  using google::protobuf::io::CodedOutputStream;
  const std::span<const std::byte> data = chunk.data();
  const size_t fields_size = chunk.fields().ByteSizeLong();
  const size_t prefix_size =
      data.empty() ? 0
                   : CodedOutputStream::VarintSize32(kvq::kDataTag) +
                         CodedOutputStream::VarintSize64(data.size());
  // The fields, then data's tag and length, written straight into a fresh
  // slice (as gRPC's own protobuf serializer writes small messages).
  Slice slices[2] = {Slice(fields_size + prefix_size), Slice()};
  uint8_t* out = const_cast<uint8_t*>(slices[0].begin());
  out = chunk.fields().SerializeWithCachedSizesToArray(out);
  size_t count = 1;
  if (!data.empty()) {
    out = CodedOutputStream::WriteTagToArray(kvq::kDataTag, out);
    CodedOutputStream::WriteVarint64ToArray(data.size(), out);
    // gRPC only reads a slice it sends; its API takes the bytes non-const.
    slices[count++] =
        Slice(const_cast<std::byte*>(data.data()), data.size(),
              &kvq::DropOwner,
              new std::shared_ptr<const void>(chunk.data_owner()));
  }
  ByteBuffer message(slices, count);  // refs the slices, copies nothing
  buffer->Swap(&message);
  *own_buffer = true;
  return Status::OK;
}

Status SerializationTraits<kvq::GetChunk, void>::Deserialize(
    ByteBuffer* /*buffer*/, kvq::GetChunk* /*chunk*/) {
  return Status(StatusCode::UNIMPLEMENTED,
                "kvq::GetChunk is only ever sent, never received");
}

}  // namespace grpc
