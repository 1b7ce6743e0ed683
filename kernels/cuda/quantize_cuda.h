// CUDA quantize / dequantize of blocks whose payload is one contiguous device
// buffer: the production kernels of paged_kernels.h with contiguous
// addressing, for benchmarks, tests and callers that keep payloads whole.
//
// Same contract as paged_kernels.h: byte-identical to kernels/quantize.h's
// CPU reference (format.h layout: int8 values, zero padding to 16 bytes,
// FP32 scales), asynchronous on `stream`, INVALID_ARGUMENT for bad arguments
// (checked before any launch), INTERNAL with the CUDA error string when a
// launch fails, non-finite input flagged in *nonfinite (zeroed by the caller)
// rather than refused. `absmax` / `nonfinite` may be null.
//
// Pointers are device pointers; payloads must be 16-byte aligned; src / dst
// that are 16-byte aligned get 16-byte vector accesses (the fast path).
//
// Batches hold `count` blocks of one layout and dtype back to back: block i's
// values at src + i * layout.logical_bytes(dtype), its payload at
// payloads + i * BatchPayloadStride(layout).
//
// Which kernels run (dispatch.cu): per-token-head, group-wise and per-tensor
// quantize read the input once while a group fits on chip (<= 2048 16-byte
// vectors: head_dim / group_size / plane of up to 16384 FP16 or 8192 FP32
// values), else twice; per-channel reads it once for blocks of up to 256
// tokens, else twice (QuantizeInputReads says which). Dequantize reads the
// payload once.

#ifndef KVQ_KERNELS_CUDA_QUANTIZE_CUDA_H_
#define KVQ_KERNELS_CUDA_QUANTIZE_CUDA_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/paged_kernels.h"
#include "kernels/format.h"

namespace kvq::cuda {

// Quantizes one block: scales computed on the GPU, values quantized, padding
// and scales written: the whole payload (layout.payload_bytes bytes).
absl::Status Quantize(const BlockLayout& layout, DType dtype, const void* src,
                      uint8_t* payload, float* absmax, uint32_t* nonfinite,
                      Stream stream);

// The elementwise pass alone: quantizes `src` with the scales already in
// `payload`'s scale region (e.g. from an earlier Quantize of the same
// values), writing the int8 values and the padding. For benchmarks that
// compare with kernels whose scales are computed elsewhere and not timed.
absl::Status QuantizeWithScales(const BlockLayout& layout, DType dtype,
                                const void* src, uint8_t* payload,
                                Stream stream);

// Dequantizes one block into `dst` (layout.elements values of `dtype`).
absl::Status Dequantize(const BlockLayout& layout, const uint8_t* payload,
                        DType dtype, void* dst, Stream stream);

// 1 or 2: how many times Quantize reads a block of `layout` and `dtype` whose
// src is 16-byte aligned (benchmarks count the bytes a kernel must move
// with it). 0 for an unknown dtype.
int QuantizeInputReads(const BlockLayout& layout, DType dtype);

// Bytes from one payload to the next in a batch: payload_bytes rounded up to
// a multiple of 16.
uint64_t BatchPayloadStride(const BlockLayout& layout);

// Quantizes `count` blocks (see above for where each one lives).
// absmax: device float[count]; nonfinite: one flag for the batch.
absl::Status QuantizeBatch(const BlockLayout& layout, DType dtype,
                           const void* src, uint32_t count, uint8_t* payloads,
                           float* absmax, uint32_t* nonfinite, Stream stream);

// Dequantizes `count` blocks.
absl::Status DequantizeBatch(const BlockLayout& layout,
                             const uint8_t* payloads, uint32_t count,
                             DType dtype, void* dst, Stream stream);

}  // namespace kvq::cuda

#endif  // KVQ_KERNELS_CUDA_QUANTIZE_CUDA_H_
