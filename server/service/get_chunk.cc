#include "server/service/get_chunk.h"

#include <algorithm>
#include <utility>

namespace kvq {

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
