// Entry points of quantize_cuda.h: validate, describe the blocks and the
// contiguous addressing, and hand over to dispatch.cu.

#include "kernels/cuda/quantize_cuda.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/addressing.cuh"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/status_macros.h"

namespace kvq::cuda {
namespace {

using internal::Aligned16;
using internal::BlockList;
using internal::ContiguousAddr;
using internal::AsCudaStream;
using internal::CheckPointer;

absl::Status CheckPayload(const void* p, const char* name) {
  KVQ_RETURN_IF_ERROR(CheckPointer(p, name));
  if (!Aligned16(p)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be 16-byte aligned"));
  }
  return absl::OkStatus();
}

// Blocks back to back, each `stride` bytes: 16-byte accesses need the base
// and the stride aligned.
bool VectorAligned(const void* base, uint64_t stride) {
  return Aligned16(base) && stride % 16 == 0;
}

}  // namespace

int QuantizeInputReads(const BlockLayout& layout, DType dtype) {
  return internal::QuantizeInputReads(layout, dtype, /*vector_aligned=*/true);
}

uint64_t BatchPayloadStride(const BlockLayout& layout) {
  return (layout.payload_bytes + 15) / 16 * 16;
}

absl::Status Quantize(const BlockLayout& layout, DType dtype, const void* src,
                      uint8_t* payload, float* absmax, uint32_t* nonfinite,
                      Stream stream) {
  return QuantizeBatch(layout, dtype, src, 1, payload, absmax, nonfinite,
                       stream);
}

absl::Status QuantizeWithScales(const BlockLayout& layout, DType dtype,
                                const void* src, uint8_t* payload,
                                Stream stream) {
  KVQ_RETURN_IF_ERROR(internal::ValidateLayout(layout, dtype));
  KVQ_RETURN_IF_ERROR(CheckPointer(src, "src"));
  KVQ_RETURN_IF_ERROR(CheckPayload(payload, "payload"));
  BlockList blocks;
  blocks.src = static_cast<const uint8_t*>(src);
  blocks.count = 1;
  return internal::DispatchQuantizeWithScales(
      layout, dtype, blocks, Aligned16(src), ContiguousAddr{payload, 0},
      AsCudaStream(stream));
}

absl::Status Dequantize(const BlockLayout& layout, const uint8_t* payload,
                        DType dtype, void* dst, Stream stream) {
  return DequantizeBatch(layout, payload, 1, dtype, dst, stream);
}

absl::Status QuantizeBatch(const BlockLayout& layout, DType dtype,
                           const void* src, uint32_t count, uint8_t* payloads,
                           float* absmax, uint32_t* nonfinite, Stream stream) {
  KVQ_RETURN_IF_ERROR(internal::ValidateLayout(layout, dtype));
  if (count == 0) return absl::OkStatus();
  KVQ_RETURN_IF_ERROR(CheckPointer(src, "src"));
  KVQ_RETURN_IF_ERROR(CheckPayload(payloads, "payloads"));
  const uint64_t src_stride = layout.logical_bytes(dtype);
  BlockList blocks;
  blocks.src = static_cast<const uint8_t*>(src);
  blocks.src_stride = src_stride;
  blocks.count = count;
  return internal::DispatchQuantize(
      layout, dtype, blocks, VectorAligned(src, src_stride),
      ContiguousAddr{payloads, BatchPayloadStride(layout)},
      internal::QuantizeOutputs{absmax, nonfinite}, AsCudaStream(stream));
}

absl::Status DequantizeBatch(const BlockLayout& layout,
                             const uint8_t* payloads, uint32_t count,
                             DType dtype, void* dst, Stream stream) {
  KVQ_RETURN_IF_ERROR(internal::ValidateLayout(layout, dtype));
  if (count == 0) return absl::OkStatus();
  KVQ_RETURN_IF_ERROR(CheckPayload(payloads, "payloads"));
  KVQ_RETURN_IF_ERROR(CheckPointer(dst, "dst"));
  const uint64_t dst_stride = layout.logical_bytes(dtype);
  BlockList blocks;
  blocks.dst = static_cast<uint8_t*>(dst);
  blocks.dst_stride = dst_stride;
  blocks.count = count;
  // The kernels only read the payload on this path.
  return internal::DispatchDequantize(
      layout, dtype, blocks, VectorAligned(dst, dst_stride),
      ContiguousAddr{const_cast<uint8_t*>(payloads),
                     BatchPayloadStride(layout)},
      AsCudaStream(stream));
}

}  // namespace kvq::cuda
