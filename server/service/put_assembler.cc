#include "server/service/put_assembler.h"
#include "server/service/seconds_since.h"
#include "server/service/string_views.h"

#include <grpc/slice.h>

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/parallel.h"
#include "kernels/status_macros.h"

namespace kvq {
namespace {

// "dtype fp16 x shape 2x16x8x128 = 65536 bytes"
std::string DescribeSize(const PutHeader& header) {
  const BlockShape& s = header.layout.shape;
  return absl::StrCat("dtype ", ToAbsl(DTypeName(header.dtype)), " x shape ", s.planes,
                      "x", s.tokens, "x", s.heads, "x", s.head_dim, " = ",
                      header.logical_bytes(), " bytes");
}

}  // namespace

BlockBytes AssembledBlock::data() const {
  if (in_pieces_) return BlockBytes(std::span<const ConstBytes>(pieces_));
  return BlockBytes(staging_.bytes());
}

void AssembledBlock::ReleaseRead() {
  for (const uint64_t read = upload_->appends_read();
       appends_released_ < read; ++appends_released_) {
    unread_.pop_front();
  }
}

PutAssembler::PutAssembler(PutLimits limits, StagingPool* staging,
                           ReadsInPlace reads_in_place,
                           StartUpload start_upload)
    : limits_(limits),
      staging_(staging),
      reads_in_place_(std::move(reads_in_place)),
      start_upload_(std::move(start_upload)) {}

bool PutAssembler::InPlace(const std::vector<ConstBytes>& pieces) const {
  if (!reads_in_place_) return false;
  for (ConstBytes piece : pieces) {
    if (!reads_in_place_(piece)) return false;
  }
  return true;
}

absl::Status PutAssembler::Append(const PutChunk& data,
                                  const std::vector<ConstBytes>& pieces,
                                  uint64_t offset, AssembledBlock& block) {
  const auto start = std::chrono::steady_clock::now();
  // A copy the block owns of `pieces` (n bytes); returns where it lies.
  auto keep_copy = [&block](std::span<const ConstBytes> pieces, uint64_t n) {
    auto copy = std::make_unique_for_overwrite<std::byte[]>(n);
    ParallelGather(copy.get(), pieces);
    const ConstBytes kept(copy.get(), n);
    block.copies_.push_back(std::move(copy));
    return kept;
  };
  // gRPC keeps a slice this small inside the grpc::Slice object itself
  // (inlined), which moves and dies with it: such a piece is copied.
  bool copied = false;
  auto lasting = [&](ConstBytes piece) {
    if (piece.size() > GRPC_SLICE_INLINED_SIZE) return piece;
    copied = true;
    return keep_copy({&piece, 1}, piece.size());
  };
  if (block.upload_ != nullptr) {
    std::vector<ConstBytes> appended;
    appended.reserve(pieces.size());
    for (ConstBytes piece : pieces) appended.push_back(lasting(piece));
    copied = true;  // the hand-over counts: a launch or more per chunk
    block.unread_.push_back(data.slices());
    KVQ_RETURN_IF_ERROR(block.upload_->Append(appended));
    block.ReleaseRead();
  } else if (!block.in_pieces_) {
    ParallelGather(block.staging_.data() + offset, pieces,
                   block.staging_.writes());
    copied = true;
  } else if (InPlace(pieces)) {
    block.held_.insert(block.held_.end(), data.slices().begin(),
                       data.slices().end());
    for (ConstBytes piece : pieces) block.pieces_.push_back(lasting(piece));
  } else if (data.data_size() > 0) {
    block.pieces_.push_back(keep_copy(pieces, data.data_size()));
    copied = true;
  }
  // Nothing copied or handed over: no time to count.
  if (copied) block.assemble_seconds += SecondsSince(start);
  return absl::OkStatus();
}

std::vector<PutEvent> PutAssembler::Feed(const PutChunk& data) {
  const v1::PutRequest& chunk = data.fields();
  std::vector<PutEvent> events;
  if (chunk.has_header()) {
    if (state_ == State::kReceiving) {
      Refuse(absl::InvalidArgumentError(absl::StrCat(
                 "a new header arrived after ", received_, " of ",
                 current_->header.logical_bytes(),
                 " bytes of this block: its remaining chunks are missing "
                 "(set last on a block's final chunk)")),
             /*chunk_was_last=*/true, events);
    }
    state_ = State::kIdle;
    StartBlock(data, events);
    return events;
  }
  switch (state_) {
    case State::kIdle:
      Refuse(chunk.sequence(), "",
             absl::InvalidArgumentError(
                 "header is missing: the first chunk of every block must "
                 "carry its header"),
             chunk.last(), events);
      break;
    case State::kSkipping:
      if (chunk.last()) state_ = State::kIdle;
      break;
    case State::kReceiving:
      ContinueBlock(data, events);
      break;
  }
  return events;
}

void PutAssembler::StartBlock(const PutChunk& data,
                              std::vector<PutEvent>& events) {
  const v1::PutRequest& chunk = data.fields();
  const v1::BlockHeader& wire = chunk.header();
  // Echo the key in the result whenever it is a valid key, even if another
  // field of the header is wrong.
  std::string key =
      ValidateKey(wire.key(), "").ok() ? wire.key() : std::string();
  absl::StatusOr<PutHeader> header = ValidatePutHeader(wire);
  if (!header.ok()) {
    Refuse(chunk.sequence(), std::move(key), header.status(), chunk.last(),
           events);
    return;
  }
  const uint64_t payload = header->layout.payload_bytes;
  const uint64_t pages =
      (payload + limits_.page_bytes - 1) / limits_.page_bytes;
  if (pages > limits_.pages_total) {
    Refuse(chunk.sequence(), std::move(key),
           absl::ResourceExhaustedError(absl::StrCat(
               "block is larger than the whole pool: its quantized payload of ",
               payload, " bytes needs ", pages, " pages of ",
               limits_.page_bytes, " bytes, the pool has ", limits_.pages_total,
               " (send smaller blocks, or raise the "
               "server's --pool_bytes)")),
           chunk.last(), events);
    return;
  }
  if (chunk.offset() != 0) {
    Refuse(chunk.sequence(), std::move(key),
           absl::InvalidArgumentError(absl::StrCat(
               "offset of a block's first chunk must be 0, got ",
               chunk.offset())),
           chunk.last(), events);
    return;
  }
  const uint64_t total = header->logical_bytes();
  const uint64_t size = data.data_size();
  if (size > total) {
    Refuse(chunk.sequence(), std::move(key),
           absl::InvalidArgumentError(absl::StrCat(
               "data is ", size, " bytes, more than the header declares (",
               DescribeSize(*header), ")")),
           chunk.last(), events);
    return;
  }
  if (chunk.last() && size < total) {
    Refuse(chunk.sequence(), std::move(key),
           absl::InvalidArgumentError(absl::StrCat(
               "last is set after ", size, " bytes, but the header declares ",
               DescribeSize(*header),
               ": data does not match dtype x shape, or chunks are missing")),
           /*chunk_was_last=*/true, events);
    return;
  }

  AssembledBlock block;
  block.sequence = chunk.sequence();
  block.header = *std::move(header);
  block.first_chunk_time = std::chrono::steady_clock::now();
  const std::vector<ConstBytes> pieces = data.DataPieces();
  block.in_pieces_ = size > 0 && InPlace(pieces);
  if (block.in_pieces_ && !chunk.last() && start_upload_) {
    // Else (no upload to be had now) the block is held until it is stored.
    absl::StatusOr<std::unique_ptr<BlockUpload>> upload =
        start_upload_(block.header.layout, block.header.dtype);
    if (upload.ok()) block.upload_ = *std::move(upload);
  }
  if (!block.in_pieces_) {
    absl::StatusOr<StagingBuffer> staging = staging_->Acquire(total);
    if (!staging.ok()) {
      Refuse(chunk.sequence(), std::move(key), staging.status(),
             /*chunk_was_last=*/chunk.last(), events);
      return;
    }
    block.staging_ = *std::move(staging);
  }
  if (absl::Status s = Append(data, pieces, /*offset=*/0, block); !s.ok()) {
    Refuse(chunk.sequence(), std::move(key), std::move(s), chunk.last(),
           events);
    return;
  }
  if (chunk.last()) {  // the whole block in one message
    events.push_back(PutEvent{block.sequence, block.header.key,
                              absl::OkStatus(), std::move(block)});
    return;
  }
  received_ = size;
  current_.emplace(std::move(block));
  state_ = State::kReceiving;
}

void PutAssembler::ContinueBlock(const PutChunk& data,
                                 std::vector<PutEvent>& events) {
  const v1::PutRequest& chunk = data.fields();
  const uint64_t total = current_->header.logical_bytes();
  const uint64_t size = data.data_size();
  if (chunk.offset() != received_) {
    Refuse(absl::InvalidArgumentError(absl::StrCat(
               "offset must equal the bytes of the block sent so far (",
               received_, "), got ", chunk.offset(),
               ": chunks are out of order or missing")),
           chunk.last(), events);
    return;
  }
  if (size > total - received_) {
    Refuse(absl::InvalidArgumentError(absl::StrCat(
               "data goes past the block's declared size: bytes [", received_,
               ", ", received_ + size, ") of a block the header declares as ",
               DescribeSize(current_->header))),
           chunk.last(), events);
    return;
  }
  if (absl::Status s =
          Append(data, data.DataPieces(), /*offset=*/received_, *current_);
      !s.ok()) {
    Refuse(std::move(s), chunk.last(), events);
    return;
  }
  received_ += size;
  if (!chunk.last()) return;
  if (received_ < total) {
    Refuse(absl::InvalidArgumentError(absl::StrCat(
               "last is set after ", received_, " bytes, but the header "
               "declares ", DescribeSize(current_->header),
               ": data does not match dtype x shape, or chunks are missing")),
           /*chunk_was_last=*/true, events);
    return;
  }
  AssembledBlock block = *std::move(current_);
  current_.reset();
  state_ = State::kIdle;
  events.push_back(PutEvent{block.sequence, block.header.key, absl::OkStatus(),
                            std::move(block)});
}

void PutAssembler::Refuse(absl::Status status, bool chunk_was_last,
                          std::vector<PutEvent>& events) {
  const uint64_t sequence = current_->sequence;
  std::string key = std::move(current_->header.key);
  current_.reset();  // frees the staging now, not at the next block
  Refuse(sequence, std::move(key), std::move(status), chunk_was_last, events);
}

void PutAssembler::Refuse(uint64_t sequence, std::string key,
                          absl::Status status, bool chunk_was_last,
                          std::vector<PutEvent>& events) {
  events.push_back(
      PutEvent{sequence, std::move(key), std::move(status), std::nullopt});
  received_ = 0;
  state_ = chunk_was_last ? State::kIdle : State::kSkipping;
}

absl::Status PutAssembler::Finish() {
  if (state_ != State::kReceiving) return absl::OkStatus();
  absl::Status status = absl::InvalidArgumentError(absl::StrCat(
      "the stream ended inside ", Where(), " after ", received_, " of ",
      current_->header.logical_bytes(),
      " bytes (no chunk with last set); nothing was stored for it"));
  current_.reset();
  received_ = 0;
  state_ = State::kIdle;
  return status;
}

std::string PutAssembler::Where() const {
  return absl::StrCat("block ", DescribeKey(current_->header.key),
                      " (sequence ", current_->sequence, ")");
}

}  // namespace kvq
