// Entry points of paged_kernels.h: validate, describe the blocks and the
// paged addressing, and hand over to dispatch.cu.

#include "kernels/cuda/paged_kernels.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/addressing.cuh"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/status_macros.h"

namespace kvq::cuda {
namespace {

using internal::Aligned16;
using internal::BlockList;
using internal::PagedAddr;
using internal::AsCudaStream;
using internal::CheckPointer;

}  // namespace

absl::Status QuantizeToPages(const BlockLayout& layout, DType dtype,
                             const void* src, const DevicePages& dst,
                             float* absmax, uint32_t* nonfinite,
                             Stream stream) {
  KVQ_RETURN_IF_ERROR(internal::ValidateLayout(layout, dtype));
  KVQ_RETURN_IF_ERROR(internal::ValidatePages(dst.arena, dst.page_bytes));
  KVQ_RETURN_IF_ERROR(CheckPointer(src, "src"));
  KVQ_RETURN_IF_ERROR(CheckPointer(dst.pages, "dst.pages"));
  BlockList blocks;
  blocks.src = static_cast<const uint8_t*>(src);
  blocks.count = 1;
  return internal::DispatchQuantize(
      layout, dtype, blocks, Aligned16(src),
      PagedAddr(dst.arena, dst.pages, dst.page_bytes),
      internal::QuantizeOutputs{absmax, nonfinite}, AsCudaStream(stream));
}

absl::Status DequantizeFromPages(const BlockLayout& layout,
                                 const DevicePages& src, DType dtype,
                                 void* dst, Stream stream) {
  KVQ_RETURN_IF_ERROR(internal::ValidateLayout(layout, dtype));
  KVQ_RETURN_IF_ERROR(internal::ValidatePages(src.arena, src.page_bytes));
  KVQ_RETURN_IF_ERROR(CheckPointer(src.pages, "src.pages"));
  KVQ_RETURN_IF_ERROR(CheckPointer(dst, "dst"));
  BlockList blocks;
  blocks.dst = static_cast<uint8_t*>(dst);
  blocks.count = 1;
  return internal::DispatchDequantize(
      layout, dtype, blocks, Aligned16(dst),
      PagedAddr(src.arena, src.pages, src.page_bytes), AsCudaStream(stream));
}

absl::Status QuantizeBatchToPages(const BlockLayout& layout, DType dtype,
                                  const BatchBlock* blocks, uint32_t count,
                                  uint8_t* arena, uint64_t page_bytes,
                                  float* absmax, uint32_t* nonfinite,
                                  Stream stream) {
  KVQ_RETURN_IF_ERROR(internal::ValidateLayout(layout, dtype));
  KVQ_RETURN_IF_ERROR(internal::ValidatePages(arena, page_bytes));
  if (count == 0) return absl::OkStatus();
  KVQ_RETURN_IF_ERROR(CheckPointer(blocks, "blocks"));
  BlockList list;
  list.list = blocks;
  list.count = count;
  return internal::DispatchQuantize(
      layout, dtype, list, /*vector_aligned=*/true,
      PagedAddr(arena, nullptr, page_bytes),
      internal::QuantizeOutputs{absmax, nonfinite}, AsCudaStream(stream));
}

absl::Status DequantizeBatchFromPages(const BlockLayout& layout, DType dtype,
                                      const BatchBlock* blocks, uint32_t count,
                                      uint8_t* arena, uint64_t page_bytes,
                                      Stream stream) {
  KVQ_RETURN_IF_ERROR(internal::ValidateLayout(layout, dtype));
  KVQ_RETURN_IF_ERROR(internal::ValidatePages(arena, page_bytes));
  if (count == 0) return absl::OkStatus();
  KVQ_RETURN_IF_ERROR(CheckPointer(blocks, "blocks"));
  BlockList list;
  list.list = blocks;
  list.count = count;
  return internal::DispatchDequantize(layout, dtype, list,
                                      /*vector_aligned=*/true,
                                      PagedAddr(arena, nullptr, page_bytes),
                                      AsCudaStream(stream));
}

}  // namespace kvq::cuda
