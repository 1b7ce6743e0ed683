// HostBuffer: host memory a backend handed out for blocks on their way in or
// out, freed the way that backend allocated it.
//
// The CUDA backend hands out page-locked memory: a block received into it is
// copied to the GPU by DMA straight from it, and a block dequantized into it
// arrives by DMA, with no copy through the backend's own staging. The CPU
// backend hands out plain memory. Either backend accepts any memory in
// QuantizeInto / DequantizeFrom; a HostBuffer is only the fast kind.
//
// Allocating page-locked memory is slow (milliseconds for a few MiB): callers
// keep and reuse HostBuffers (server/service/staging_pool.h) rather than
// allocate one per block. Move-only.

#ifndef KVQ_SERVER_BACKEND_HOST_BUFFER_H_
#define KVQ_SERVER_BACKEND_HOST_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace kvq {

class HostBuffer {
 public:
  using FreeFunction = void (*)(void*);

  HostBuffer() = default;
  // Takes ownership of `size` bytes at `data`, released with `free`.
  HostBuffer(void* data, uint64_t size, FreeFunction free)
      : data_(static_cast<std::byte*>(data)), size_(size), free_(free) {}
  HostBuffer(HostBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        free_(std::exchange(other.free_, nullptr)) {}
  HostBuffer& operator=(HostBuffer&& other) noexcept {
    if (this != &other) {
      Release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      free_ = std::exchange(other.free_, nullptr);
    }
    return *this;
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  ~HostBuffer() { Release(); }

  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {data_, size_}; }

 private:
  void Release() {
    if (data_ != nullptr && free_ != nullptr) free_(data_);
    data_ = nullptr;
    size_ = 0;
  }

  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  FreeFunction free_ = nullptr;
};

// `bytes` of plain (pageable) host memory, page-aligned. RESOURCE_EXHAUSTED
// when the heap has none left.
inline absl::StatusOr<HostBuffer> AllocatePlainHostBuffer(uint64_t bytes) {
  constexpr uint64_t kAlignment = 4096;
  const uint64_t rounded =
      (bytes == 0 ? 1 : bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* data = std::aligned_alloc(kAlignment, rounded);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes of host memory for a block"));
  }
  return HostBuffer(data, bytes, &std::free);
}

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_HOST_BUFFER_H_
