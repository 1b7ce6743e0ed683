// StagingPool: reusable host buffers for blocks passing through the service.
// A Put's chunks are assembled in one; a Get's answer is dequantized into one
// and sent from it.
//
// Buffers come from an allocator, e.g. the backend's
// (Backend::AllocateHostBuffer: page-locked on CUDA, so the copies to and
// from the GPU run by DMA straight from and to them) or plain memory, and
// are kept for the next block when given back, up to `budget_bytes` lent and
// kept together. Reuse matters twice: page-locked
// memory takes milliseconds to allocate, and fresh memory of any kind costs a
// page fault per 4 KiB on first touch, which at tens of MiB per block was
// most of the server's time on the data path (bench/results/README.md).
//
// Past the budget a request is served from plain heap memory, freed when
// given back: slower for CUDA, but never a wait, and an error only when the
// heap itself is exhausted (RESOURCE_EXHAUSTED).
//
// Thread-safe. A buffer may outlive its pool (gRPC can hold a Get's
// buffer, as the slices of an answer it is still sending, past the server's
// shutdown): given back after the pool is gone, it is freed.

#ifndef KVQ_SERVER_SERVICE_STAGING_POOL_H_
#define KVQ_SERVER_SERVICE_STAGING_POOL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>

#include "absl/status/statusor.h"
#include "kernels/parallel.h"
#include "server/backend/backend.h"
#include "server/backend/host_buffer.h"

namespace kvq {

class StagingPool;
namespace staging_internal {
struct Shelf;
}  // namespace staging_internal

// A buffer lent by a StagingPool: `size()` usable bytes, given back when
// destroyed. Move-only.
class StagingBuffer {
 public:
  StagingBuffer() = default;
  StagingBuffer(StagingBuffer&& other) noexcept;
  StagingBuffer& operator=(StagingBuffer&& other) noexcept;
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;
  ~StagingBuffer();

  std::byte* data() const { return buffer_.data(); }
  uint64_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {buffer_.data(), size_}; }
  // How to copy a block into this buffer: its pool's writes, or kCached for
  // heap memory past the budget (which the CUDA backend copies again, so
  // the CPU reads it next).
  CopyWrites writes() const { return writes_; }

 private:
  friend class StagingPool;
  StagingBuffer(std::shared_ptr<staging_internal::Shelf> shelf,
                HostBuffer buffer, uint64_t size, CopyWrites writes)
      : shelf_(std::move(shelf)),
        buffer_(std::move(buffer)),
        size_(size),
        writes_(writes) {}
  void GiveBack();

  // Where the buffer goes back; null: heap memory, freed with buffer_.
  std::shared_ptr<staging_internal::Shelf> shelf_;
  HostBuffer buffer_;
  uint64_t size_ = 0;
  CopyWrites writes_ = CopyWrites::kCached;
};

class StagingPool {
 public:
  using Allocator = std::function<absl::StatusOr<HostBuffer>(uint64_t bytes)>;

  // `writes`: how blocks are best copied into the allocator's memory
  // (StagingBuffer::writes).
  StagingPool(Allocator allocate, uint64_t budget_bytes,
              CopyWrites writes = CopyWrites::kCached);
  // Buffers from backend->AllocateHostBuffer, written as
  // backend->host_buffer_writes() says; `backend` must outlive the pool.
  StagingPool(Backend* backend, uint64_t budget_bytes);
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;
  // Frees the kept buffers; lent ones are freed when given back.
  ~StagingPool();

  // A buffer of at least `bytes` (its size() is `bytes`).
  absl::StatusOr<StagingBuffer> Acquire(uint64_t bytes);

  struct Usage {
    uint64_t lent_bytes = 0;  // backend buffers out with callers
    uint64_t kept_bytes = 0;  // backend buffers waiting for reuse
    uint64_t kept_buffers = 0;
    uint64_t heap_buffers = 0;  // requests served past the budget, ever
  };
  Usage usage() const;

 private:
  const Allocator allocate_;
  const uint64_t budget_bytes_;
  const CopyWrites writes_;
  // The kept buffers and the counts, shared with the lent buffers.
  const std::shared_ptr<staging_internal::Shelf> shelf_;
};

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_STAGING_POOL_H_
