// CPU quantization of whole blocks: the scalar reference and the fast path.
//
// Both take a block of `layout.elements` values of `dtype` at `src` (host
// memory, block order) and write its payload as described in format.h into
// `payload` (layout.payload_bytes bytes: int8 values, zero padding, scales).
//
//   QuantizeReference / DequantizeReference: one plain loop per step, written
//     from BlockLayout::GroupOf and quant_math.h; the definition of correct.
//   Quantize / Dequantize: vectorizable loops (x86-64-v3 clones where the
//     CPU has AVX2/F16C), spread over WorkerPool::Default() threads for blocks
//     over 1 MiB; byte-identical to the reference for every dtype,
//     granularity and shape (tested). Safe to call from many threads at once.
//
// `layout` must come from MakeLayout. `src` / `dst` need no alignment beyond
// their element type's; `payload` needs none.
//
// Quantize refuses a block holding NaN or Inf with INVALID_ARGUMENT naming the
// first such element ("data[1234] is NaN"), and an unknown dtype value with
// INVALID_ARGUMENT naming "dtype"; `payload` is then unspecified (callers must
// not publish it). Non-finite detection rides on the absmax pass, so a valid
// block pays nothing extra for it.
//
// Dequantize cannot fail: a payload written by Quantize always decodes;
// values beyond the output dtype's range round to +-Inf, so callers that
// change dtype check BlockAbsmax() against DTypeMaxFinite() first. An unknown
// dtype value (a caller bug: validate it first) writes nothing.

#ifndef KVQ_KERNELS_QUANTIZE_H_
#define KVQ_KERNELS_QUANTIZE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/format.h"

namespace kvq {

absl::Status QuantizeReference(const BlockLayout& layout, DType dtype,
                               const void* src, uint8_t* payload);
void DequantizeReference(const BlockLayout& layout, const uint8_t* payload,
                         DType dtype, void* dst);

absl::Status Quantize(const BlockLayout& layout, DType dtype, const void* src,
                      uint8_t* payload);
void Dequantize(const BlockLayout& layout, const uint8_t* payload, DType dtype,
                void* dst);

// Largest |value| a payload decodes to (127 * the largest scale).
float BlockAbsmax(const BlockLayout& layout, const uint8_t* payload);

// Largest finite magnitude of `dtype` (65504 for FP16).
float DTypeMaxFinite(DType dtype);

}  // namespace kvq

#endif  // KVQ_KERNELS_QUANTIZE_H_
