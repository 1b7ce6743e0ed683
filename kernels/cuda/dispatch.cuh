// The one place where a call's dtype and granularity pick the kernels
// (dispatch.cu). The public entry points (paged_kernels.cu, quantize_cuda.cu)
// validate their arguments, describe the blocks and the payload addressing,
// and call these.

#ifndef KVQ_KERNELS_CUDA_DISPATCH_CUH_
#define KVQ_KERNELS_CUDA_DISPATCH_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/addressing.cuh"
#include "kernels/cuda/kernel_common.cuh"
#include "kernels/format.h"

namespace kvq::cuda::internal {

// INVALID_ARGUMENT unless `layout` is what MakeLayout(layout.shape,
// layout.spec) returns and `dtype` is a known element type.
absl::Status ValidateLayout(const BlockLayout& layout, DType dtype);

// INVALID_ARGUMENT unless page_bytes is a positive multiple of 256 below
// 2^31 and the arena is 16-byte aligned.
absl::Status ValidatePages(const uint8_t* arena, uint64_t page_bytes);

// INVALID_ARGUMENT naming the argument `name` when `p` is null.
absl::Status CheckPointer(const void* p, const char* name);

// The public headers' Stream (a void*) is a cudaStream_t.
inline cudaStream_t AsCudaStream(void* stream) {
  return static_cast<cudaStream_t>(stream);
}

// How many times quantizing `layout` reads its input: 1, or 2 when the
// values sharing a scale do not fit on chip (0 for an unknown dtype).
// `vector_aligned` as for DispatchQuantize.
int QuantizeInputReads(const BlockLayout& layout, DType dtype,
                       bool vector_aligned);

// True if p is 16-byte aligned.
inline bool Aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// `vector_aligned`: every block's src (quantize) or dst (dequantize) is
// 16-byte aligned, so 16-byte accesses are allowed where the shape allows
// them; otherwise the kernels use element-sized accesses.
template <class Addr>
absl::Status DispatchQuantize(const BlockLayout& layout, DType dtype,
                              const BlockList& blocks, bool vector_aligned,
                              const Addr& addr, QuantizeOutputs out,
                              cudaStream_t stream);

// The elementwise pass alone, with the scales already in the payloads.
template <class Addr>
absl::Status DispatchQuantizeWithScales(const BlockLayout& layout, DType dtype,
                                        const BlockList& blocks,
                                        bool vector_aligned, const Addr& addr,
                                        cudaStream_t stream);

template <class Addr>
absl::Status DispatchDequantize(const BlockLayout& layout, DType dtype,
                                const BlockList& blocks, bool vector_aligned,
                                const Addr& addr, cudaStream_t stream);

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_DISPATCH_CUH_
