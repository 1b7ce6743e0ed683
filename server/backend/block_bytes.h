// BlockBytes: a block's bytes in host memory, in order, whole or in the
// pieces they arrived in (a put's chunks, left in gRPC's receive buffers).
// A view: the memory must outlive it. Cheap to copy.
//
// A backend reads pieces where they lie when it can (the CUDA backend, in a
// region it registered: Backend::ReadsInPlace), and otherwise copies them
// together first (CopyTo).

#ifndef KVQ_SERVER_BACKEND_BLOCK_BYTES_H_
#define KVQ_SERVER_BACKEND_BLOCK_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "kernels/parallel.h"

namespace kvq {

using ConstBytes = std::span<const std::byte>;

class BlockBytes {
 public:
  // The whole block in one piece.
  BlockBytes(ConstBytes whole)  // NOLINT(google-explicit-constructor)
      : whole_(whole), size_(whole.size()) {}
  // The block as `pieces`, in order (the span and what it points at must
  // outlive this).
  explicit BlockBytes(std::span<const ConstBytes> pieces) : pieces_(pieces) {
    for (ConstBytes p : pieces) size_ += p.size();
  }

  uint64_t size() const { return size_; }
  bool contiguous() const { return pieces_.size() <= 1; }
  // The bytes in one span; only when contiguous().
  ConstBytes whole() const {
    return pieces_.empty() ? whole_ : pieces_.front();
  }
  // The pieces in order (one for a whole block).
  std::span<const ConstBytes> pieces() const {
    return pieces_.empty() ? std::span<const ConstBytes>(&whole_, 1) : pieces_;
  }

  // Copies the size() bytes to `dst`, on several cores when there are many.
  void CopyTo(std::byte* dst, CopyWrites writes = CopyWrites::kCached) const {
    ParallelGather(dst, pieces(), writes);
  }

 private:
  ConstBytes whole_;
  std::span<const ConstBytes> pieces_;
  uint64_t size_ = 0;
};

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_BLOCK_BYTES_H_
