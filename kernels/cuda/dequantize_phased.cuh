// PhasedDequantize: dequantize of one big block in rounds in which the whole
// GPU first reads, then writes.
//
// Why: dequantize to FP32 reads 1 byte for every 4 it writes, and DRAM pays
// a read/write turnaround for every switch between the two. With every SM's
// reads and writes interleaved (ElementwiseKernel), that mix runs at 84-88%
// of the copy's bandwidth on an H200, whatever the kernel does per element
// (bench/results/README.md: the traffic-mix ceilings). Here a cooperative
// grid works in rounds: each CTA bulk-copies (TMA) a slab of up to
// kPhasedSlabValues int8 values into shared memory, with its scales, then
// converts the slab and writes its output from there, and the whole grid
// meets (grid.sync) after the writes, so that DRAM sees long runs of reads
// and then of writes. The phase lab measured the 1:4 mix at 93.4-94.5% this
// way from 618 MiB to 5 GiB of traffic, against 85-88% interleaved
// (bench/results/runs/2026-12-02-p/); the 1:2 mix of FP16 / BF16 ran lower
// phased (87.8% against 89.2%), so only FP32 takes it. As kvq's kernel
// (kvq-bench-kernels, 2 rounds against ElementwiseKernel, share of the copy):
// FP32 per-token-head 256 MiB 86-87 -> 89%, 1 GiB 86 -> 92%, 4 GiB 84 -> 94%;
// 4 GiB per-channel 82 -> 90%, per-tensor 84 -> 94%, group32 85 -> 92%;
// with slabs that fill every round (below), FP32 per-token-head 92-96%
// from 64 MiB to 4 GiB, per-channel 91-98%, group32 94%.
//
// Contract (checked by TakesPhasedDequantize on the host):
//   - one block, contiguous payload and output, both 16-byte aligned;
//   - contiguous groups of at least kPhasedMinGroupValues values (their
//     scales are copied into shared memory with the slab), or per-channel
//     (scales read through L1 / L2: a plane's row of scales is shared by
//     every slab of that plane);
//   - compute capability 9.0+ and cooperative launch;
//   - a grid of CTAs all resident at once (cooperative launch requires it).

#ifndef KVQ_KERNELS_CUDA_DEQUANTIZE_PHASED_CUH_
#define KVQ_KERNELS_CUDA_DEQUANTIZE_PHASED_CUH_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/addressing.cuh"
#include "kernels/format.h"

namespace kvq::cuda::internal {

// The phase lab's best shape: slabs of at most 48 Ki values, four CTAs of
// 512 threads per SM.
inline constexpr uint32_t kPhasedThreads = 512;
inline constexpr int kPhasedCtasPerSm = 4;
inline constexpr uint32_t kPhasedSlabValues = 48 * 1024;
// Each launch cuts its block into slabs of one length, the shortest
// multiple of kPhasedSlabAlign that needs no more rounds than slabs of
// kPhasedSlabValues would (EvenSlabValues, work_split.h), so that every
// round is full: a last round that leaves most CTAs idle costs nearly a
// full one. The length must be a multiple of 128 values: measured on the
// H200 (bench/results/README.md, eighteenth session), slabs rounded to 16
// values ran FP32 at 81-85% of the copy wherever they came out an odd
// multiple of 16 or 32 (1 GiB: 46224 values, 81-82%) and at 94-95% where
// they came out a multiple of 128; rounded to 128 values, 92-96% from
// 64 MiB to 4 GiB (512 values: the same within a point or two).
inline constexpr uint32_t kPhasedSlabAlign = 128;
static_assert(kPhasedSlabValues % kPhasedSlabAlign == 0 &&
                  kPhasedSlabAlign % 16 == 0,
              "slabs are whole 16-byte words, at most kPhasedSlabValues");
// Contiguous groups at least this long: a slab's scales then fit
// kPhasedSlabScales floats.
inline constexpr uint64_t kPhasedMinGroupValues = 32;
inline constexpr uint32_t kPhasedSlabScales =
    kPhasedSlabValues / kPhasedMinGroupValues + 2;
inline constexpr size_t kPhasedSmem =
    kPhasedSlabValues + sizeof(float) * kPhasedSlabScales;

// Blocks below this many values (64 MiB of FP32) keep ElementwiseKernel:
// measured down to here (one round of 31872-value slabs: 92-93% against
// 86-87%), not below, where part of the output stays in L2.
inline constexpr uint64_t kPhasedMinValues = uint64_t{1} << 24;

// Whether a dequantize of `blocks` to FP32 takes PhasedDequantize: the
// contract above, on the current device, and a block big enough.
absl::StatusOr<bool> TakesPhasedDequantize(const BlockLayout& layout,
                                           const BlockList& blocks,
                                           const ContiguousAddr& addr);

// Dequantizes block 0 of `blocks` (payload at addr.base, output at
// blocks.dst) on `stream`. Requires TakesPhasedDequantize.
template <typename T>
absl::Status LaunchPhasedDequantize(const BlockLayout& layout,
                                    const BlockList& blocks,
                                    const ContiguousAddr& addr,
                                    cudaStream_t stream);

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_DEQUANTIZE_PHASED_CUH_
