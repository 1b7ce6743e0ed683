// Backend: the memory and the compute behind the pool.
//
// A backend owns the page arena (host memory for "cpu", one cudaMalloc for
// "cuda") and moves blocks in and out of it: quantize a client's block into a
// list of pages, and dequantize a list of pages back into a client's dtype.
// The pool (block_pool.h) decides which pages; the service never learns which
// backend it talks to.
//
// Contract for every backend:
//   - QuantizeInto writes the block's payload (format.h) across `pages` in
//     order: payload byte b lives at page pages[b / page_bytes], offset
//     b % page_bytes. It returns the block's absmax. On any error (non-finite
//     input: INVALID_ARGUMENT; a device fault: INTERNAL) the pages hold
//     garbage and the caller must drop the reservation, never publish it.
//     With `error`, it also decodes the pages back into `dtype` and sums how
//     far that is from `src` (kernels/quant_error.h): the quality sample,
//     measured where the block is (the GPU, for CUDA).
//   - DequantizeFrom writes layout.logical_bytes(dtype) bytes to `dst`; with
//     `ready`, it may say while it runs which prefix of `dst` is final
//     (ReadyPrefixes).
//   - Both may be called from many threads at once.
//   - `timings`, when not null, receives where the time went.
//   - AllocateHostBuffer's memory is the fastest `src` / `dst` there is
//     (host_buffer.h), and so is any memory ReadsInPlace says yes to; any
//     other memory works too. `src` may come in pieces (BlockBytes): a
//     backend copies them together first unless it reads them in place.
//   - A put may also reach the backend while it arrives (StartUpload): each
//     chunk is read as soon as it is appended, so that the caller can let go
//     of its memory long before the block is stored (QuantizeUploaded).

#ifndef KVQ_SERVER_BACKEND_BACKEND_H_
#define KVQ_SERVER_BACKEND_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "kernels/format.h"
#include "kernels/parallel.h"
#include "kernels/quant_error.h"
#include "server/backend/block_bytes.h"
#include "server/backend/host_buffer.h"

namespace kvq {

// Where the time of one QuantizeInto / DequantizeFrom went, for the
// per-stage latency metrics. Stages a backend does not have stay 0 (the CPU
// backend has no copies).
struct DataPathTimings {
  double host_to_device_seconds = 0;
  double kernel_seconds = 0;  // quantize+scatter or gather+dequantize
  double device_to_host_seconds = 0;
};

// Lets a DequantizeFrom caller send the front of a block while the rest is
// still being written. A backend calls ready(n) when dst[0, n) holds its
// final bytes, n growing, in steps of at most piece_bytes (the CUDA backend
// copies a block back from the GPU in pieces of that size); it may also
// report nothing. Whatever it reported, all of `dst` is final once
// DequantizeFrom returns OK; on an error, only what was reported is. By its
// first ready call the backend is done with `pages` (and their bytes): the
// caller may let the pool reuse them from then on.
struct ReadyPrefixes {
  uint64_t piece_bytes;  // > 0
  absl::FunctionRef<void(uint64_t ready_bytes)> ready;
};

// A block's bytes on their way into a backend while the rest of the block is
// still arriving (Backend::StartUpload). Append hands over the next bytes
// and returns before they are read; appends_read says how many appends the
// backend is done reading, so that the caller can free their memory then
// and not hold the whole block until it is stored. Once every byte is
// appended, Backend::QuantizeUploaded stores the block.
//
// Destroying an upload abandons it (a refused or cut-short block): it
// returns only once nothing reads appended memory any more. One thread at a
// time.
class BlockUpload {
 public:
  virtual ~BlockUpload() = default;

  // Starts reading the block's next bytes from `pieces`, in order. The
  // memory must stay valid until appends_read() counts this append. On an
  // error (too many bytes: INVALID_ARGUMENT; a device fault: INTERNAL) the
  // upload is unusable: only destroying it is left.
  virtual absl::Status Append(std::span<const ConstBytes> pieces) = 0;

  // Appends whose memory the backend is done with, in order; never waits.
  // Stops growing after a device fault (QuantizeUploaded reports it).
  virtual uint64_t appends_read() = 0;

  uint64_t bytes_appended() const { return bytes_appended_; }

 protected:
  uint64_t bytes_appended_ = 0;
};

struct ArenaOptions {
  uint64_t capacity_bytes = 0;  // whole pages only
  uint64_t page_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;  // "cpu" or "cuda"
  virtual std::string device_name() const = 0;  // CPU model or GPU name

  virtual absl::StatusOr<float> QuantizeInto(const BlockLayout& layout,
                                             DType dtype,
                                             const BlockBytes& src,
                                             std::span<const uint32_t> pages,
                                             DataPathTimings* timings = nullptr,
                                             ErrorSums* error = nullptr) = 0;

  // Starts a put of a block of `layout` in `dtype` that arrives in pieces
  // (BlockUpload). UNAVAILABLE when the backend cannot take one now (the
  // caller holds the block's bytes and calls QuantizeInto instead);
  // UNIMPLEMENTED (the default) where it never can.
  virtual absl::StatusOr<std::unique_ptr<BlockUpload>> StartUpload(
      const BlockLayout& layout, DType dtype) {
    (void)layout;
    (void)dtype;
    return absl::UnimplementedError(
        "this backend does not take puts while they arrive");
  }

  // QuantizeInto for a block that StartUpload took, once all its
  // layout.logical_bytes(dtype) bytes are appended (else INVALID_ARGUMENT).
  // `upload` is spent afterwards, whatever the outcome.
  virtual absl::StatusOr<float> QuantizeUploaded(
      BlockUpload& upload, std::span<const uint32_t> pages,
      DataPathTimings* timings = nullptr, ErrorSums* error = nullptr) {
    (void)upload;
    (void)pages;
    (void)timings;
    (void)error;
    return absl::UnimplementedError(
        "this backend does not take puts while they arrive");
  }

  virtual absl::Status DequantizeFrom(const BlockLayout& layout,
                                      std::span<const uint32_t> pages,
                                      DType dtype,
                                      std::span<std::byte> dst,
                                      DataPathTimings* timings = nullptr,
                                      const ReadyPrefixes* ready = nullptr) = 0;

  // `bytes` of host memory that blocks move to and from this backend the
  // fastest: page-locked for CUDA, plain for the CPU. RESOURCE_EXHAUSTED
  // when the system has none left.
  virtual absl::StatusOr<HostBuffer> AllocateHostBuffer(uint64_t bytes) = 0;

  // How the CPU best writes a block into AllocateHostBuffer's memory:
  // kStreaming where only the device reads it next (CUDA: the DMA to the
  // GPU reads memory no CPU cache holds dirty, at twice the speed);
  // kCached where the CPU reads it next.
  virtual CopyWrites host_buffer_writes() const { return CopyWrites::kCached; }

  // Lets the backend read blocks in `region` (host memory that outlives the
  // backend, e.g. the process heap: server/heap/region_heap.h) where they
  // lie, pieces included. CUDA page-locks and maps it once (cudaHostRegister:
  // about 0.1 ms per MiB, so at start-up); the default declines with
  // UNIMPLEMENTED. At most one region per backend.
  virtual absl::Status RegisterHostRegion(std::span<std::byte> region) {
    (void)region;
    return absl::UnimplementedError(
        "this backend does not read host memory in place");
  }

  // Whether QuantizeInto reads `bytes` where they lie as fast as from
  // AllocateHostBuffer's memory, so that a caller need not copy a block's
  // pieces together first: inside the registered region.
  virtual bool ReadsInPlace(ConstBytes bytes) const {
    (void)bytes;
    return false;
  }
};

// The CPU backend: a host arena, kernels/quantize.h's fast path.
absl::StatusOr<std::unique_ptr<Backend>> MakeCpuBackend(
    const ArenaOptions& options);

// The CUDA backend on GPU `gpu`. FAILED_PRECONDITION when built without CUDA
// or when no usable GPU is present.
absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(
    const ArenaOptions& options, int gpu);

// True when a CUDA GPU can be used (any CUDA error counts as "no").
bool CudaAvailable();

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_BACKEND_H_
