// Production CUDA kernels on the paged pool: fused quantize+scatter on put and
// fused gather+dequantize on get, for one block or a batch of blocks.
//
// The payload of a block (format.h: int8 values, padding, FP32 scales) is
// spread over pages of a device arena: payload byte b lives at
//   arena + pages[b / page_bytes] * page_bytes + b % page_bytes.
// page_bytes must be a positive multiple of 256 below 2^31 (so no 16-byte
// access straddles two pages) and the arena 16-byte aligned; a block's page
// list holds ceil(layout.payload_bytes / page_bytes) ids.
//
// Results are byte-identical to kernels/quantize.h's CPU reference: the same
// quant_math.h arithmetic, no FMA contraction or fast-math, hardware float ->
// FP16/BF16 conversion that rounds to nearest even like float_convert.h, and
// an absmax that is exact in any reduction order. Every payload byte is
// written, the padding included.
//
// Every function is asynchronous on `stream` (a cudaStream_t; nullptr is the
// legacy default stream) and returns INVALID_ARGUMENT for bad arguments
// (checked on the host before anything is launched) or INTERNAL with the CUDA
// error string when a launch fails. A non-finite input value does not abort
// the kernel: it sets *nonfinite (device memory, zeroed by the caller) to a
// non-zero value, and the caller must then discard the pages; *absmax is
// then unspecified. `absmax` and `nonfinite` may be null when not wanted.
//
// `layout` must be what MakeLayout returns. Input and output pointers are
// device pointers aligned to the element size; 16-byte aligned ones (as
// cudaMalloc returns) get 16-byte vector accesses, the fast path. In a batch,
// every src / dst MUST be 16-byte aligned.
//
// This header compiles without nvcc (no CUDA types in it) so that the server
// can include it; the definitions live in .cu files built only with CUDA.
// kernels/cuda/quantize_cuda.h offers the same kernels on contiguous payloads.

#ifndef KVQ_KERNELS_CUDA_PAGED_KERNELS_H_
#define KVQ_KERNELS_CUDA_PAGED_KERNELS_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/format.h"

namespace kvq::cuda {

using Stream = void*;  // a cudaStream_t

// Where one block's payload lives, in device memory.
struct DevicePages {
  uint8_t* arena = nullptr;          // device base of the page arena
  const uint32_t* pages = nullptr;   // device array of page ids, payload order
  uint64_t page_bytes = 0;
};

// Quantizes `src` (device, layout.elements values of `dtype`) into `dst`.
// Writes the block's absmax (max |x|) to *absmax (device float) and flags
// non-finite input in *nonfinite (device uint32).
absl::Status QuantizeToPages(const BlockLayout& layout, DType dtype,
                             const void* src, const DevicePages& dst,
                             float* absmax, uint32_t* nonfinite, Stream stream);

// Dequantizes the block at `src` into `dst` (device, layout.elements values
// of `dtype`; any dtype, not only the one the block was put with).
absl::Status DequantizeFromPages(const BlockLayout& layout,
                                 const DevicePages& src, DType dtype,
                                 void* dst, Stream stream);

// One block of a batch. Every block of a batch has the same layout and dtype
// (the common case: a vLLM step moves many equal pages); `src`/`dst` and the
// page lists differ.
struct BatchBlock {
  const void* src = nullptr;         // quantize: device input (16-byte aligned)
  void* dst = nullptr;               // dequantize: device output (16-byte aligned)
  const uint32_t* pages = nullptr;   // device page ids of this block
};

// Quantizes `count` blocks in one launch (a few for two-pass granularities).
// `blocks` is a device array of `count` entries.
// absmax: device float[count] (block i's at absmax[i]); nonfinite: one device
// flag for the batch.
absl::Status QuantizeBatchToPages(const BlockLayout& layout, DType dtype,
                                  const BatchBlock* blocks, uint32_t count,
                                  uint8_t* arena, uint64_t page_bytes,
                                  float* absmax, uint32_t* nonfinite,
                                  Stream stream);

// Dequantizes `count` blocks in one launch. `blocks` is a device array.
absl::Status DequantizeBatchFromPages(const BlockLayout& layout, DType dtype,
                                      const BatchBlock* blocks, uint32_t count,
                                      uint8_t* arena, uint64_t page_bytes,
                                      Stream stream);

}  // namespace kvq::cuda

#endif  // KVQ_KERNELS_CUDA_PAGED_KERNELS_H_
