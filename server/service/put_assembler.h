// PutAssembler: turns the chunks of a Put stream into whole blocks.
//
// It is the Put protocol and nothing else: no gRPC stream, no pool. The
// service feeds it every PutRequest in stream order and gets back events:
// a block whose bytes all arrived (to be stored), or a block refused with the
// reason (to be reported). Events come in the order the blocks were sent.
//
// The protocol (proto/kvq/v1/kvcache.proto, PutRequest): a block is one or
// more chunks; the first carries the header (and offset 0), each chunk's
// offset equals the bytes of the block sent so far, the last has `last` set,
// and the block's bytes are exactly dtype x shape. A block breaking a rule
// is refused with INVALID_ARGUMENT naming the field; its remaining chunks are
// skipped until the next header, and the stream goes on. A block whose
// quantized payload could never fit the pool is refused with
// RESOURCE_EXHAUSTED before any staging memory is allocated.
//
// A block is assembled in a StagingPool buffer, which the backend reads by
// DMA when it is page-locked. Each chunk's data goes there straight from the
// buffers gRPC received it in (PutChunk), on several cores: the copy runs on
// the thread that reads the stream, and every microsecond it takes delays the
// next read (measured: a parse copy plus one core's memcpy made a 32 MiB put
// take 5 ms longer to receive than a bare gRPC stream).
//
// Unless the backend reads the data where gRPC received it (`reads_in_place`
// says yes to the first chunk's pieces: the CUDA backend, for the process
// heap it registered): then nothing is copied. The block keeps references to
// gRPC's slices and hands the backend their pieces (AssembledBlock::data);
// a later chunk that lies elsewhere is copied into memory of its own, and so
// is a piece small enough for gRPC to keep inside the slice object itself
// (inlined), which moves with the object.
//
// Where the backend also takes a block while it arrives (`start_upload`:
// the CUDA backend), a block of several chunks read in place is handed to it
// chunk by chunk (BlockUpload::Append) instead, and each chunk's slices are
// let go of once the backend has read them (polled at every chunk fed): the
// stream holds a chunk or two of gRPC's buffers instead of whole blocks,
// and the block's store no longer waits for its upload (measured on the
// H200 machine: a 16 MiB put's store 0.48-0.54 -> 0.10-0.14 ms,
// bench/results/README.md). The block then carries the upload
// (AssembledBlock::upload) and only the slices of chunks not yet read.
//
// A header arriving while a block is still incomplete refuses that block
// (chunks missing) and starts the new one. A stream that ends inside a block
// is an error of the whole RPC (Finish); the incomplete block is dropped.
//
// Not thread-safe: one assembler per stream.

#ifndef KVQ_SERVER_SERVICE_PUT_ASSEMBLER_H_
#define KVQ_SERVER_SERVICE_PUT_ASSEMBLER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvq/v1/kvcache.pb.h"
#include "server/backend/backend.h"
#include "server/backend/block_bytes.h"
#include "server/service/header_validation.h"
#include "server/service/put_chunk.h"
#include "server/service/staging_pool.h"

namespace kvq {

// What the assembler checks before it allocates staging for a block.
struct PutLimits {
  uint64_t page_bytes = 0;   // the pool's page size
  uint64_t pages_total = 0;  // the pool's capacity in pages
};

// A block whose bytes have all arrived. Move-only.
class AssembledBlock {
 public:
  AssembledBlock(AssembledBlock&&) noexcept = default;
  // Not assignable: assigning member by member would let go of the memory
  // an upload may still read before the upload itself.
  AssembledBlock& operator=(AssembledBlock&&) = delete;

  uint64_t sequence = 0;  // from the block's first chunk
  PutHeader header;
  // When the block's first chunk arrived (the receive stage starts there).
  std::chrono::steady_clock::time_point first_chunk_time;
  // Time the reading thread spent on its chunks: copying them out of gRPC's
  // buffers, or handing them to the backend's upload (part of the receive
  // stage, and the service's own work).
  double assemble_seconds = 0;

  // The block's logical bytes, header.logical_bytes() of them: whole, in
  // staging, or in the pieces they arrived in. Valid while the block lives;
  // only for a block without an upload.
  BlockBytes data() const;

  // The backend's upload of the block, which holds all its bytes, or null:
  // then data() does.
  BlockUpload* upload() const { return upload_.get(); }

 private:
  friend class PutAssembler;
  AssembledBlock() = default;

  // Lets go of the slices of the appends the upload has read.
  void ReleaseRead();

  // Whole: the staging buffer. In pieces: `pieces_`, in `held_` (gRPC's
  // slices, referenced) or in `copies_` (chunks that lay elsewhere, and
  // pieces gRPC inlined). Uploaded: `upload_`, with the slices of each
  // append it may still read in `unread_` (oldest first) and the inlined
  // pieces in `copies_`. Declared so that the upload goes first: destroying
  // it waits until nothing reads the memory the others hold.
  bool in_pieces_ = false;
  StagingBuffer staging_;
  std::vector<grpc::Slice> held_;
  std::vector<std::unique_ptr<std::byte[]>> copies_;
  std::vector<ConstBytes> pieces_;
  std::deque<std::vector<grpc::Slice>> unread_;
  uint64_t appends_released_ = 0;
  std::unique_ptr<BlockUpload> upload_;
};

// The outcome of one block of the stream.
struct PutEvent {
  uint64_t sequence = 0;  // the block's first chunk's sequence
  std::string key;        // empty if no usable header arrived
  absl::Status status;    // OK: `block` holds the complete block
  std::optional<AssembledBlock> block;
};

class PutAssembler {
 public:
  // Whether the backend reads these bytes where they lie
  // (Backend::ReadsInPlace).
  using ReadsInPlace = std::function<bool(ConstBytes)>;
  // Backend::StartUpload; an error: the block is held until it is stored.
  using StartUpload =
      std::function<absl::StatusOr<std::unique_ptr<BlockUpload>>(
          const BlockLayout&, DType)>;

  // `staging` must outlive the assembler and the blocks it returns.
  // `reads_in_place` empty: every block is copied into staging.
  // `start_upload` empty: blocks read in place are held whole.
  PutAssembler(PutLimits limits, StagingPool* staging,
               ReadsInPlace reads_in_place = {},
               StartUpload start_upload = {});

  // Consumes the next message of the stream. Returns the blocks it
  // completed or refused: usually none or one, two when a header cuts short
  // an incomplete block and the new block is complete at once.
  std::vector<PutEvent> Feed(const PutChunk& chunk);

  // The client finished sending. INVALID_ARGUMENT (naming the block) if a
  // block is incomplete; that block is dropped.
  absl::Status Finish();

  // True while a block has started but not completed.
  bool inside_block() const { return state_ == State::kReceiving; }

 private:
  enum class State {
    kIdle,       // expecting a header
    kReceiving,  // a valid block is arriving
    kSkipping,   // dropping the chunks of a refused block
  };

  void StartBlock(const PutChunk& chunk, std::vector<PutEvent>& events);
  void ContinueBlock(const PutChunk& chunk, std::vector<PutEvent>& events);
  // Refuses the current block. `chunk_was_last`: the failing chunk ended the
  // block, so nothing is left to skip.
  void Refuse(absl::Status status, bool chunk_was_last,
              std::vector<PutEvent>& events);
  void Refuse(uint64_t sequence, std::string key, absl::Status status,
              bool chunk_was_last, std::vector<PutEvent>& events);
  std::string Where() const;  // "block <key> (sequence N)" for messages
  // Adds `chunk`'s data, which lies in `pieces` (chunk.DataPieces()), to
  // `block` from byte `offset` on: copied into its staging, or the pieces
  // referenced (or copied, if not in place).
  // A device fault of an upload is returned (the block is refused).
  absl::Status Append(const PutChunk& chunk,
                      const std::vector<ConstBytes>& pieces, uint64_t offset,
                      AssembledBlock& block);
  bool InPlace(const std::vector<ConstBytes>& pieces) const;

  const PutLimits limits_;
  StagingPool* const staging_;
  const ReadsInPlace reads_in_place_;
  const StartUpload start_upload_;
  State state_ = State::kIdle;
  std::optional<AssembledBlock> current_;  // set while kReceiving
  uint64_t received_ = 0;                  // bytes of current_ so far
};

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_PUT_ASSEMBLER_H_
