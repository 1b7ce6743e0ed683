// CPU quantization of whole blocks: the scalar reference and the fast path.
//
// Both take a block of `layout.elements` values of `dtype` at `src` (host
// memory, block order) and write its payload as described in format.h into
// `payload` (layout.payload_bytes bytes: int8 values, zero padding, scales).
//
//   QuantizeReference / DequantizeReference: one plain loop per step, written
//     from BlockLayout::GroupOf and quant_math.h; the definition of correct.
//   Quantize / Dequantize: vectorizable loops over threads; byte-identical to
//     the reference for every dtype, granularity and shape (tested).
//
// Quantize refuses a block holding NaN or Inf with INVALID_ARGUMENT naming the
// first such element, and then leaves `payload` unspecified (callers must not
// publish it). Dequantize cannot fail: a payload written by Quantize always
// decodes; values beyond the output dtype's range round to +-Inf, so callers
// that change dtype check BlockAbsmax() first.

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
