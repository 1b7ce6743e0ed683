// The pieces of two-pass quantization (launchers.cuh), used when a group is
// too big to hold on chip: per-tensor planes and per-token-head / group-wise
// groups beyond kGroupCapacityVecs vectors, and per-channel blocks taller
// than kColumnMaxTokens tokens (whose stages are ColumnKernel's).
//
//   ZeroScaleSlots        scale slots := 0
//   SegmentReduce         slot g := ScaleFromAbsmax(max |x| over group g)
//                         (grid reduction: a CTA per chunk of a group,
//                         each chunk's scale combined: CombineScale)
//   ElementwiseQuantize   q := QuantizeValue(x, slot)
//
// The input is read twice; the second pass walks its work backwards
// (SecondPassItem), so that it starts on what the first pass read last,
// which may still be in L2.

#include <algorithm>

#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {
namespace {

constexpr int kSegmentThreads = kGroupThreads;
constexpr uint32_t kSegmentChunkVecs = kSegmentThreads * kGroupItems;

struct SegmentPlan {
  uint64_t group_values;
  uint64_t scales_offset;
  uint32_t vecs_per_group;
  uint32_t total_items;
  FastDivmod chunks_per_group;  // item -> (rest, chunk)
  FastDivmod groups_per_block;  // rest -> (block, group)
};

template <typename T, int kVec, class Addr>
__global__ void __launch_bounds__(kSegmentThreads, 4)
    SegmentReduceKernel(SegmentPlan plan, BlockList blocks, Addr addr,
                        QuantizeOutputs out) {
  __shared__ uint32_t scratch[32];
  for (uint32_t w = blockIdx.x; w < plan.total_items; w += gridDim.x) {
    uint32_t rest, chunk, b, g;
    plan.chunks_per_group.DivMod(w, &rest, &chunk);
    plan.groups_per_block.DivMod(rest, &b, &g);
    const BlockRef<Addr> ref = Resolve(blocks, addr, b);
    const T* src =
        reinterpret_cast<const T*>(ref.src) + uint64_t{g} * plan.group_values;
    const uint32_t j0 = chunk * kSegmentChunkVecs + threadIdx.x;
    Vec<T, kVec> x[kGroupItems];
#pragma unroll
    for (int k = 0; k < kGroupItems; ++k) {
      const uint32_t j = j0 + k * kSegmentThreads;
      x[k] = j < plan.vecs_per_group ? LoadVec<T, kVec>(src + uint64_t{j} * kVec)
                                     : ZeroVec<T, kVec>();
    }
    Magnitudes<T, kVec> magnitudes;
#pragma unroll
    for (int k = 0; k < kGroupItems; ++k) magnitudes.Add(x[k]);
    const uint32_t bits = CtaMax(magnitudes.Max(), scratch);
    if (threadIdx.x == 0) {
      CombineScale(reinterpret_cast<uint32_t*>(
                       ref.payload.At(plan.scales_offset + 4 * uint64_t{g})),
                   bits);
      ReportBlockMax(out, blocks.first + b, bits);
    }
  }
}

constexpr int kSlotThreads = 256;

struct SlotPlan {
  uint64_t scales_offset;
  uint32_t total_slots;
  FastDivmod groups_per_block;
};

template <class Addr>
__global__ void __launch_bounds__(kSlotThreads)
    ZeroScaleSlotsKernel(SlotPlan plan, BlockList blocks, Addr addr) {
  for (uint32_t w = blockIdx.x * kSlotThreads + threadIdx.x;
       w < plan.total_slots; w += gridDim.x * kSlotThreads) {
    uint32_t b, g;
    plan.groups_per_block.DivMod(w, &b, &g);
    const BlockRef<Addr> ref = Resolve(blocks, addr, b);
    *reinterpret_cast<uint32_t*>(
        ref.payload.At(plan.scales_offset + 4 * uint64_t{g})) = 0;
  }
}

}  // namespace

template <typename T, int kVec, class Addr>
absl::Status LaunchSegmentReduce(const BlockLayout& layout,
                                 const BlockList& blocks, const Addr& addr,
                                 QuantizeOutputs out, cudaStream_t stream) {
  const uint64_t vecs = layout.group_values / kVec;
  if (layout.group_values % kVec != 0 || vecs > UINT32_MAX ||
      layout.groups > UINT32_MAX) {
    return absl::InternalError("kvq cuda: shape does not fit SegmentReduce");
  }
  SegmentPlan plan{};
  plan.group_values = layout.group_values;
  plan.scales_offset = layout.scales_offset;
  plan.vecs_per_group = static_cast<uint32_t>(vecs);
  const uint64_t chunks_per_group =
      (vecs + kSegmentChunkVecs - 1) / kSegmentChunkVecs;
  plan.chunks_per_group = FastDivmod(chunks_per_group);
  plan.groups_per_block = FastDivmod(layout.groups);
  KVQ_RETURN_IF_ERROR(PrepareAtomicAbsmax(blocks, &out, stream));

  const uint64_t items_per_block = chunks_per_group * layout.groups;
  return LaunchPersistent<&SegmentReduceKernel<T, kVec, Addr>,
                          &SegmentPlan::total_items>(
      "SegmentReduceKernel", kSegmentThreads, blocks, items_per_block, plan,
      stream, addr, out);
}

template <class Addr>
absl::Status LaunchZeroScaleSlots(const BlockLayout& layout,
                                  const BlockList& blocks, const Addr& addr,
                                  cudaStream_t stream) {
  if (layout.groups > UINT32_MAX) {
    return absl::InternalError("kvq cuda: too many scales for ZeroScaleSlots");
  }
  SlotPlan plan{};
  plan.scales_offset = layout.scales_offset;
  plan.groups_per_block = FastDivmod(layout.groups);
  constexpr auto kKernel = &ZeroScaleSlotsKernel<Addr>;
  return ForEachSubBatch(
      blocks, layout.groups, [&](const BlockList& sub) -> absl::Status {
        SlotPlan p = plan;
        p.total_slots = static_cast<uint32_t>(sub.count * layout.groups);
        absl::StatusOr<uint32_t> grid = PersistentGrid<kKernel>(
            kSlotThreads, (p.total_slots + kSlotThreads - 1) / kSlotThreads);
        if (!grid.ok()) return grid.status();
        return Launch("ZeroScaleSlotsKernel", kKernel, dim3(*grid),
                      dim3(kSlotThreads), stream, p, sub, addr);
      });
}

template <typename T, int kVec, class Addr>
absl::Status LaunchElementwiseQuantize(const BlockLayout& layout,
                                       const BlockList& blocks,
                                       const Addr& addr, cudaStream_t stream) {
  return LaunchElementwise<T, kVec, Addr, /*kQuantize=*/true>(layout, blocks,
                                                              addr, stream);
}

#define KVQ_INSTANTIATE(T, V, A)                                            \
  template absl::Status LaunchSegmentReduce<T, V, A>(                       \
      const BlockLayout&, const BlockList&, const A&, QuantizeOutputs,      \
      cudaStream_t);                                                        \
  template absl::Status LaunchElementwiseQuantize<T, V, A>(                 \
      const BlockLayout&, const BlockList&, const A&, cudaStream_t);
KVQ_FOR_EACH_LAUNCH_CONFIG(KVQ_INSTANTIATE)
#undef KVQ_INSTANTIATE

template absl::Status LaunchZeroScaleSlots<ContiguousAddr>(
    const BlockLayout&, const BlockList&, const ContiguousAddr&, cudaStream_t);
template absl::Status LaunchZeroScaleSlots<PagedAddr>(const BlockLayout&,
                                                      const BlockList&,
                                                      const PagedAddr&,
                                                      cudaStream_t);

}  // namespace kvq::cuda::internal
