#include "server/service/put_assembler.h"
#include "server/service/seconds_since.h"
#include "server/service/string_views.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kvq {
namespace {

// "dtype fp16 x shape 2x16x8x128 = 65536 bytes"
std::string DescribeSize(const PutHeader& header) {
  const BlockShape& s = header.layout.shape;
  return absl::StrCat("dtype ", ToAbsl(DTypeName(header.dtype)), " x shape ", s.planes,
                      "x", s.tokens, "x", s.heads, "x", s.head_dim, " = ",
                      header.logical_bytes(), " bytes");
}

// Copies `data`'s bytes into `staging` from byte `offset` on, written as
// the buffer says; how long that took, in seconds.
double TimedCopy(const PutChunk& data, const StagingBuffer& staging,
                 uint64_t offset) {
  const auto start = std::chrono::steady_clock::now();
  data.CopyDataTo(staging.data() + offset, staging.writes());
  return SecondsSince(start);
}

}  // namespace

std::span<const std::byte> AssembledBlock::data() const {
  return staging_.bytes();
}

PutAssembler::PutAssembler(PutLimits limits, StagingPool* staging)
    : limits_(limits), staging_(staging) {}

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
  const uint64_t pages = (payload + limits_.page_bytes - 1) / limits_.page_bytes;
  if (pages > limits_.pages_total) {
    Refuse(chunk.sequence(), std::move(key),
           absl::ResourceExhaustedError(absl::StrCat(
               "block is larger than the whole pool: its quantized payload of ",
               payload, " bytes needs ", pages, " pages of ",
               limits_.page_bytes, " bytes, the pool has ",
               limits_.pages_total, " (send smaller blocks, or raise the "
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
  absl::StatusOr<StagingBuffer> staging = staging_->Acquire(total);
  if (!staging.ok()) {
    Refuse(chunk.sequence(), std::move(key), staging.status(),
           /*chunk_was_last=*/chunk.last(), events);
    return;
  }
  block.staging_ = *std::move(staging);
  block.copy_seconds +=
      TimedCopy(data, block.staging_, /*offset=*/0);
  if (chunk.last()) {  // the whole block in one message
    events.push_back(PutEvent{block.sequence, block.header.key,
                              absl::OkStatus(), std::move(block)});
    return;
  }
  received_ = size;
  current_ = std::move(block);
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
  current_->copy_seconds +=
      TimedCopy(data, current_->staging_, received_);
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
