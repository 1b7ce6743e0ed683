#include "server/service/get_chunk.h"

#include <algorithm>
#include <utility>

namespace kvq {

BlockChunks::BlockChunks(uint32_t key_index, v1::BlockHeader header,
                         std::span<const std::byte> data,
                         std::shared_ptr<const void> owner,
                         uint64_t chunk_bytes)
    : key_index_(key_index),
      header_(std::move(header)),
      data_(data),
      owner_(std::move(owner)),
      chunk_bytes_(std::max<uint64_t>(chunk_bytes, 1)) {}

bool BlockChunks::WriteReady(uint64_t ready_bytes,
                             absl::FunctionRef<bool(const GetChunk&)> write) {
  ready_bytes = std::min<uint64_t>(ready_bytes, data_.size());
  while (offset_ < data_.size()) {
    const uint64_t n = std::min<uint64_t>(chunk_bytes_, data_.size() - offset_);
    if (offset_ + n > ready_bytes) return true;  // not final yet
    v1::GetResponse& fields = chunk_.fields();
    fields.Clear();
    fields.set_key_index(key_index_);
    if (offset_ == 0) *fields.mutable_header() = std::move(header_);
    fields.set_offset(offset_);
    chunk_.set_data(data_.subspan(offset_, n), owner_);
    offset_ += n;
    fields.set_last(offset_ == data_.size());
    if (!write(chunk_)) return false;
  }
  return true;
}

uint64_t AnswerChunkBytes(uint64_t block_bytes, uint64_t chunk_bytes,
                          bool front_alone) {
  chunk_bytes = std::max<uint64_t>(chunk_bytes, 1);
  if (!front_alone || block_bytes > 4 * chunk_bytes) return chunk_bytes;
  constexpr uint64_t kStep = 4096;  // keeps the pieces' DMA page-aligned
  const uint64_t quarter = ((block_bytes + 3) / 4 + kStep - 1) / kStep * kStep;
  return std::min(chunk_bytes, std::max(kMinAnswerChunkBytes, quarter));
}

bool ForEachBlockChunk(uint32_t key_index, v1::BlockHeader header,
                       std::span<const std::byte> data,
                       std::shared_ptr<const void> owner, uint64_t chunk_bytes,
                       absl::FunctionRef<bool(const GetChunk&)> write) {
  return BlockChunks(key_index, std::move(header), data, std::move(owner),
                     chunk_bytes)
      .WriteReady(data.size(), write);
}

}  // namespace kvq
