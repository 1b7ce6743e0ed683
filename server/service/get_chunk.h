// GetChunk: one kvq.v1.GetResponse as the server sends it, its `data` left
// in the block's buffer (a ReferencedDataMessage: proto/referenced_data.h),
// so that the block's buffer (page-locked staging on CUDA) is sent as it
// is. The owner given with the data (e.g. the FetchedBlock, whose buffer
// then goes back to its StagingPool) lives until gRPC lets go of the last
// slice that references it.

#ifndef KVQ_SERVER_SERVICE_GET_CHUNK_H_
#define KVQ_SERVER_SERVICE_GET_CHUNK_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/functional/function_ref.h"
#include "kvq/v1/kvcache.pb.h"
#include "proto/referenced_data.h"

namespace kvq {

using GetChunk = wire::ReferencedDataMessage<v1::GetResponse>;

// The answer to one key: `data` (kept alive by `owner`) for the key at
// `key_index`, as chunks of at most `chunk_bytes` (> 0) bytes in order,
// `header` on the first, `last` on the final one, each referencing its
// range of `data`, written as the data becomes final: WriteReady(n) writes
// every chunk that lies within data[0, n) and was not written yet. An empty
// block has no chunk.
class BlockChunks {
 public:
  BlockChunks(uint32_t key_index, v1::BlockHeader header,
              std::span<const std::byte> data,
              std::shared_ptr<const void> owner, uint64_t chunk_bytes);

  // Calls `write` with each chunk now within data[0, ready_bytes); stops,
  // returning false, when `write` does (the client went away).
  bool WriteReady(uint64_t ready_bytes,
                  absl::FunctionRef<bool(const GetChunk&)> write);

 private:
  const uint32_t key_index_;
  v1::BlockHeader header_;  // moved into the first chunk
  const std::span<const std::byte> data_;
  const std::shared_ptr<const void> owner_;
  const uint64_t chunk_bytes_;
  uint64_t offset_ = 0;  // of the next chunk
  // One chunk serves them all: gRPC serializes a message within Write(),
  // and the slices it may keep hold owner references of their own.
  GetChunk chunk_;
};

// The chunk length a block of `block_bytes` is answered in, given the
// request's `chunk_bytes` (> 0): chunk_bytes, except that a block of up to
// four chunks whose fetch nothing else would overlap (`front_alone`: the
// first key of a Get that is the server's only data call) goes out in four
// (of at least kMinAnswerChunkBytes, in whole 4 KiB steps, never more than
// chunk_bytes). Its first chunk then leaves while the GPU is still copying
// the rest back, and the client reads the front while the server sends the
// rest. A later key's fetch already overlaps the send of the key before,
// and other calls' streams share the CPU that the extra sends take.
// Measured on the H200 machine (bench/results/README.md, nineteenth
// session): one-key 1 MiB gets at one stream, median latency 0.58 -> 0.52
// ms (FP16), 0.56 -> 0.50 (FP32); every key of four-key gets so, 9-13%
// fewer GB/s; at 8 and 16 streams, four sends a block ran 6-10% slower
// (fourteenth session).
inline constexpr uint64_t kMinAnswerChunkBytes = uint64_t{256} << 10;
uint64_t AnswerChunkBytes(uint64_t block_bytes, uint64_t chunk_bytes,
                          bool front_alone);

// BlockChunks(...).WriteReady(data.size(), write): the whole answer at once.
bool ForEachBlockChunk(uint32_t key_index, v1::BlockHeader header,
                       std::span<const std::byte> data,
                       std::shared_ptr<const void> owner, uint64_t chunk_bytes,
                       absl::FunctionRef<bool(const GetChunk&)> write);

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_GET_CHUNK_H_
