// The kernel families behind the production API, as host launchers.
//
// dispatch.cu picks one (or a sequence) per call from the dtype and the
// granularity; each launcher is a template over the element type T, the
// vector width kVec (kFullVec<T> elements = 16 bytes, or 1 when the shape or
// the pointers do not allow 16-byte accesses) and the payload addressing
// (ContiguousAddr / PagedAddr), explicitly instantiated for every
// combination in its .cu file (KVQ_FOR_EACH_LAUNCH_CONFIG).
//
// Families:
//   GroupQuantize        contiguous groups (per-token-head, group-wise, and
//                        per-tensor when a plane fits): one team of threads
//                        per group holds it in registers, reads it once.
//   ColumnQuantize       per-channel: a CTA holds a strip of columns over the
//                        block's tokens (fused, one read), or, two-pass,
//                        reduces a chunk of rows into the scale slots and
//                        then quantizes it with them (reduce, apply).
//   SegmentReduce        groups too big for one CTA's registers: grid
//                        reduction of each group's scale into its slot.
//   ZeroScaleSlots       zeroes the scale slots a reduce combines into.
//   ElementwiseQuantize  quantizes with the scales already in the payload.
//   ElementwiseDequantize
//
// Two-pass quantize: memset(absmax) -> ZeroScaleSlots -> reduce -> the
// quantize pass (ColumnQuantize's apply stage for per-channel, else
// ElementwiseQuantize). A reduce combines scales, not magnitudes
// (CombineScale, kernel_common.cuh), so the slots are final when it ends.

#ifndef KVQ_KERNELS_CUDA_LAUNCHERS_CUH_
#define KVQ_KERNELS_CUDA_LAUNCHERS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/addressing.cuh"
#include "kernels/cuda/dtype_traits.cuh"
#include "kernels/cuda/kernel_common.cuh"
#include "kernels/format.h"

namespace kvq::cuda::internal {

// GroupQuantize: threads per CTA and 16-byte vectors each thread holds.
inline constexpr int kGroupThreads = 256;
inline constexpr int kGroupItems = 8;
// The largest group (in vectors) one CTA holds in registers.
inline constexpr uint64_t kGroupCapacityVecs = kGroupThreads * kGroupItems;

// ColumnQuantize: rows of a strip each thread holds, and the most tokens a
// fused (one-read) per-channel launch handles.
inline constexpr int kColumnItems = 4;
inline constexpr int kColumnMaxThreads = 512;
inline constexpr uint32_t kColumnMaxTokens = 256;

// ColumnQuantize's stages (quantize_per_channel.cu).
enum class ColumnStage {
  kFused,   // tokens <= kColumnMaxTokens: scales and values in one read
  kReduce,  // two-pass, first read: atomicMax of each column's scale
  kApply,   // two-pass, second read: values quantized with those scales
};

template <typename T, int kVec, class Addr>
absl::Status LaunchGroupQuantize(const BlockLayout& layout,
                                 const BlockList& blocks, const Addr& addr,
                                 QuantizeOutputs out, cudaStream_t stream);

// kFused needs layout.shape.tokens <= kColumnMaxTokens; kReduce needs zeroed
// scale slots; kApply, the slots kReduce left (it reports nothing to `out`).
template <typename T, int kVec, class Addr>
absl::Status LaunchColumnQuantize(const BlockLayout& layout, ColumnStage stage,
                                  const BlockList& blocks, const Addr& addr,
                                  QuantizeOutputs out, cudaStream_t stream);

template <typename T, int kVec, class Addr>
absl::Status LaunchSegmentReduce(const BlockLayout& layout,
                                 const BlockList& blocks, const Addr& addr,
                                 QuantizeOutputs out, cudaStream_t stream);

template <class Addr>
absl::Status LaunchZeroScaleSlots(const BlockLayout& layout,
                                  const BlockList& blocks, const Addr& addr,
                                  cudaStream_t stream);

template <typename T, int kVec, class Addr>
absl::Status LaunchElementwiseQuantize(const BlockLayout& layout,
                                       const BlockList& blocks,
                                       const Addr& addr, cudaStream_t stream);

template <typename T, int kVec, class Addr>
absl::Status LaunchElementwiseDequantize(const BlockLayout& layout,
                                         const BlockList& blocks,
                                         const Addr& addr,
                                         cudaStream_t stream);

// Every (T, kVec, Addr) the dispatcher uses.
#define KVQ_FOR_EACH_LAUNCH_CONFIG(X)                                   \
  X(::kvq::cuda::internal::Fp16, 8, ::kvq::cuda::internal::ContiguousAddr) \
  X(::kvq::cuda::internal::Fp16, 1, ::kvq::cuda::internal::ContiguousAddr) \
  X(::kvq::cuda::internal::Bf16, 8, ::kvq::cuda::internal::ContiguousAddr) \
  X(::kvq::cuda::internal::Bf16, 1, ::kvq::cuda::internal::ContiguousAddr) \
  X(::kvq::cuda::internal::Fp32, 4, ::kvq::cuda::internal::ContiguousAddr) \
  X(::kvq::cuda::internal::Fp32, 1, ::kvq::cuda::internal::ContiguousAddr) \
  X(::kvq::cuda::internal::Fp16, 8, ::kvq::cuda::internal::PagedAddr)      \
  X(::kvq::cuda::internal::Fp16, 1, ::kvq::cuda::internal::PagedAddr)      \
  X(::kvq::cuda::internal::Bf16, 8, ::kvq::cuda::internal::PagedAddr)      \
  X(::kvq::cuda::internal::Bf16, 1, ::kvq::cuda::internal::PagedAddr)      \
  X(::kvq::cuda::internal::Fp32, 4, ::kvq::cuda::internal::PagedAddr)      \
  X(::kvq::cuda::internal::Fp32, 1, ::kvq::cuda::internal::PagedAddr)

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_LAUNCHERS_CUH_
