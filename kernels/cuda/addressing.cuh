// Where a kernel finds each block's input, output and payload.
//
// A launch works on `count` blocks of one layout (a single block is a batch
// of one). BlockList says where each block's values are (a device array of
// BatchBlock, or a base pointer plus a stride); an addressing policy says
// where payload byte b of block i lives:
//
//   ContiguousAddr: base + i * stride + b          (benchmarks, tests, copies)
//   PagedAddr:      arena + pages_i[b / page_bytes] * page_bytes
//                         + b % page_bytes           (the server's pool)
//
// Kernels are templates over the policy, so the same code serves both.
// Every payload access is at most 16 bytes and aligned to its size, and page
// sizes are multiples of 256, so no access straddles two pages.

#ifndef KVQ_KERNELS_CUDA_ADDRESSING_CUH_
#define KVQ_KERNELS_CUDA_ADDRESSING_CUH_

#include <cstdint>

#include "kernels/cuda/fast_divmod.h"
#include "kernels/cuda/paged_kernels.h"

namespace kvq::cuda::internal {

// The blocks of one launch.
struct BlockList {
  // When set (device array), block i's src / dst / pages are list[i].
  const BatchBlock* list = nullptr;
  // Otherwise block i's values start at src + i * src_stride (quantize) or
  // dst + i * dst_stride (dequantize); bytes.
  const uint8_t* src = nullptr;
  uint64_t src_stride = 0;
  uint8_t* dst = nullptr;
  uint64_t dst_stride = 0;
  // Index of this launch's first block in the caller's batch (host code
  // splits huge batches into several launches); absmax is indexed with it.
  uint32_t first = 0;
  uint32_t count = 0;
};

// Payload of one block in one contiguous buffer.
struct ContiguousAddr {
  uint8_t* base = nullptr;
  uint64_t stride = 0;  // bytes from one block's payload to the next

  struct Payload {
    uint8_t* base;
    __device__ __forceinline__ uint8_t* At(uint64_t offset) const {
      return base + offset;
    }
  };

  __device__ __forceinline__ Payload ForBlock(uint32_t block,
                                              const uint32_t* /*pages*/) const {
    return Payload{base + block * stride};
  }
};

// Payload of one block spread over pages of an arena.
struct PagedAddr {
  uint8_t* arena = nullptr;
  const uint32_t* pages = nullptr;  // single-block launches: the page table
  uint64_t page_bytes = 0;
  // Divides (offset / 256) by (page_bytes / 256): page_bytes is a multiple of
  // 256, so that is offset / page_bytes, and offset / 256 fits in 32 bits
  // for any payload under 1 TiB.
  FastDivmod page_units;

  PagedAddr() = default;
  PagedAddr(uint8_t* arena_base, const uint32_t* page_table, uint64_t bytes)
      : arena(arena_base),
        pages(page_table),
        page_bytes(bytes),
        page_units(bytes / 256) {}

  struct Payload {
    uint8_t* arena;
    const uint32_t* pages;
    uint32_t page_bytes;  // < 2^31 (ValidatePages)
    uint32_t multiplier;  // page_units's, unpacked to save registers
    uint32_t shift;
    __device__ __forceinline__ uint8_t* At(uint64_t offset) const {
      const uint32_t unit = static_cast<uint32_t>(offset >> 8);
      const uint32_t page = FastDivmod::Quotient(unit, multiplier, shift);
      return arena + uint64_t{__ldg(pages + page)} * page_bytes +
             (offset - uint64_t{page} * page_bytes);
    }
  };

  __device__ __forceinline__ Payload ForBlock(uint32_t /*block*/,
                                              const uint32_t* list_pages) const {
    return Payload{arena, list_pages != nullptr ? list_pages : pages,
                   static_cast<uint32_t>(page_bytes), page_units.multiplier,
                   page_units.shift};
  }
};

// Block `i` of a launch, resolved.
template <class Addr>
struct BlockRef {
  const uint8_t* src;
  uint8_t* dst;
  typename Addr::Payload payload;
};

template <class Addr>
__device__ __forceinline__ BlockRef<Addr> Resolve(const BlockList& blocks,
                                                  const Addr& addr,
                                                  uint32_t i) {
  const uint32_t b = blocks.first + i;
  if (blocks.list != nullptr) {
    const BatchBlock& e = blocks.list[b];
    return BlockRef<Addr>{static_cast<const uint8_t*>(e.src),
                          static_cast<uint8_t*>(e.dst),
                          addr.ForBlock(b, e.pages)};
  }
  return BlockRef<Addr>{blocks.src + b * blocks.src_stride,
                        blocks.dst + b * blocks.dst_stride,
                        addr.ForBlock(b, nullptr)};
}

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_ADDRESSING_CUH_
