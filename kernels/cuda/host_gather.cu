#include "kernels/cuda/host_gather.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.cuh"

namespace kvq::cuda {
namespace {

constexpr int kGatherThreads = 256;
// Loads each thread keeps in flight: 16 KiB per CTA, enough with a few CTAs
// per SM to cover the latency of reads over PCIe (~1-2 us).
constexpr int kGatherUnroll = 4;
constexpr uint64_t kSegmentWords = uint64_t{kGatherThreads} * kGatherUnroll;
constexpr uint64_t kSegmentBytes = kSegmentWords * 16;
constexpr uint32_t kMaxSegments = 65535;  // gridDim.y

// Stores the 16 bytes `v` at `p`, whose address is `misalignment` (mod 16)
// past a 16-byte boundary, with the widest stores that alignment allows.
// `misalignment` is the same for every thread of the CTA.
__device__ __forceinline__ void Store16(uint8_t* p, const uint4& v,
                                        uint32_t misalignment) {
  if (misalignment == 0) {
    *reinterpret_cast<uint4*>(p) = v;
  } else if (misalignment % 8 == 0) {
    reinterpret_cast<uint2*>(p)[0] = make_uint2(v.x, v.y);
    reinterpret_cast<uint2*>(p)[1] = make_uint2(v.z, v.w);
  } else if (misalignment % 4 == 0) {
    auto* w = reinterpret_cast<uint32_t*>(p);
    w[0] = v.x;
    w[1] = v.y;
    w[2] = v.z;
    w[3] = v.w;
  } else {
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      p[i] = static_cast<uint8_t>(words[i / 4] >> (8 * (i % 4)));
    }
  }
}

// Piece i of a table in device-readable memory, or of a listed parameter.
__device__ __forceinline__ GatherPiece PieceAt(const GatherPiece* table,
                                               uint32_t i) {
  return table[i];
}
__device__ __forceinline__ GatherPiece PieceAt(const GatherPieceList& list,
                                               uint32_t i) {
  return list.pieces[i];
}

// CTA (x, y): piece x, segments y, y + gridDim.y, ... of its aligned words;
// the CTAs with y == 0 also copy the piece's unaligned head and tail bytes.
template <class Pieces>
__global__ void __launch_bounds__(kGatherThreads)
    GatherKernel(const Pieces pieces, uint8_t* dst) {
  const GatherPiece piece = PieceAt(pieces, blockIdx.x);
  const auto* src = static_cast<const uint8_t*>(piece.src);
  uint8_t* out = dst + piece.dst_offset;
  const auto address = reinterpret_cast<uintptr_t>(src);
  const uint64_t head = min(piece.bytes, uint64_t{(16 - address % 16) % 16});
  const uint64_t words = (piece.bytes - head) / 16;
  const uint64_t tail = head + words * 16;
  if (blockIdx.y == 0) {
    for (uint64_t i = threadIdx.x; i < head; i += kGatherThreads) {
      out[i] = src[i];
    }
    for (uint64_t i = tail + threadIdx.x; i < piece.bytes;
         i += kGatherThreads) {
      out[i] = src[i];
    }
  }
  const auto* in = reinterpret_cast<const uint4*>(src + head);
  uint8_t* to = out + head;
  const auto misalignment =
      static_cast<uint32_t>(reinterpret_cast<uintptr_t>(to) % 16);
  for (uint64_t first = blockIdx.y * kSegmentWords; first < words;
       first += uint64_t{gridDim.y} * kSegmentWords) {
    uint4 v[kGatherUnroll];
#pragma unroll
    for (int u = 0; u < kGatherUnroll; ++u) {
      const uint64_t w = first + u * kGatherThreads + threadIdx.x;
      if (w < words) v[u] = in[w];
    }
#pragma unroll
    for (int u = 0; u < kGatherUnroll; ++u) {
      const uint64_t w = first + u * kGatherThreads + threadIdx.x;
      if (w < words) Store16(to + 16 * w, v[u], misalignment);
    }
  }
}

// One CTA column per piece, enough rows for the longest.
template <class Pieces>
absl::Status LaunchGather(const Pieces& pieces, uint32_t count,
                          uint64_t max_piece_bytes, void* dst, void* stream) {
  const uint64_t segments = std::clamp<uint64_t>(
      (max_piece_bytes + kSegmentBytes - 1) / kSegmentBytes, 1, kMaxSegments);
  return internal::Launch(
      "GatherKernel", &GatherKernel<Pieces>,
      dim3(count, static_cast<uint32_t>(segments)), dim3(kGatherThreads),
      static_cast<cudaStream_t>(stream), pieces, static_cast<uint8_t*>(dst));
}

}  // namespace

absl::Status GatherPieces(const GatherPiece* pieces, uint32_t count,
                          uint64_t max_piece_bytes, void* dst, void* stream) {
  if (count == 0) return absl::OkStatus();
  if (pieces == nullptr || dst == nullptr) {
    return absl::InvalidArgumentError(
        "GatherPieces needs a piece table and a destination");
  }
  if (count > uint32_t{0x7fffffff}) {
    return absl::InvalidArgumentError(
        absl::StrCat("GatherPieces takes at most 2^31 - 1 pieces, got ",
                     count));
  }
  return LaunchGather(pieces, count, max_piece_bytes, dst, stream);
}

absl::Status GatherListedPieces(const GatherPieceList& list,
                                uint64_t max_piece_bytes, void* dst,
                                void* stream) {
  if (list.count == 0) return absl::OkStatus();
  if (list.count > kMaxListedPieces || dst == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GatherListedPieces takes 1 to ", kMaxListedPieces,
        " pieces and a destination, got ", list.count));
  }
  return LaunchGather(list, list.count, max_piece_bytes, dst, stream);
}

}  // namespace kvq::cuda
