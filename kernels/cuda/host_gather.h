// GatherPieces: copies pieces of host memory the GPU can read (page-locked
// and mapped: cudaHostRegister with cudaHostRegisterMapped) into one device
// buffer, in one launch.
//
// Why a kernel and not a DMA per piece: a put's bytes arrive in gRPC's
// receive buffers, 16-64 pieces per MiB, each at any alignment (a 9-byte
// HTTP/2 frame header or a message header sits before most of them). A
// cudaMemcpyAsync per piece costs microseconds of host time each; one launch
// reads them all over PCIe at once.
//
// Any alignment of source and destination: each CTA reads whole aligned
// 16-byte words of its piece (the PCIe reads stay full-width) and stores
// them at the widest access the destination's alignment allows.
//
// Asynchronous on `stream`; INVALID_ARGUMENT for bad arguments (checked on
// the host), INTERNAL when the launch fails. Compiles without nvcc.

#ifndef KVQ_KERNELS_CUDA_HOST_GATHER_H_
#define KVQ_KERNELS_CUDA_HOST_GATHER_H_

#include <cstdint>

#include "absl/status/status.h"

namespace kvq::cuda {

// `bytes` bytes at `src` (an address kernels can read) go to
// dst + dst_offset.
struct GatherPiece {
  const void* src = nullptr;
  uint64_t dst_offset = 0;
  uint64_t bytes = 0;
};

// Copies the `count` pieces of `pieces` (a device-readable array) into `dst`
// (device memory). `max_piece_bytes` is the longest piece's size (it sizes
// the grid). Pieces must not overlap in `dst`.
absl::Status GatherPieces(const GatherPiece* pieces, uint32_t count,
                          uint64_t max_piece_bytes, void* dst,
                          void* stream /* cudaStream_t */);

// A few pieces that travel as the launch's own parameter (1.5 KiB), so that
// no table has to reach the device first and the list may be reused as soon
// as the call returns: one chunk of a put as it arrives (16-64 pieces per
// MiB).
inline constexpr uint32_t kMaxListedPieces = 64;
struct GatherPieceList {
  uint32_t count = 0;  // <= kMaxListedPieces
  GatherPiece pieces[kMaxListedPieces];
};

// GatherPieces on the pieces of `list`.
absl::Status GatherListedPieces(const GatherPieceList& list,
                                uint64_t max_piece_bytes, void* dst,
                                void* stream /* cudaStream_t */);

}  // namespace kvq::cuda

#endif  // KVQ_KERNELS_CUDA_HOST_GATHER_H_
