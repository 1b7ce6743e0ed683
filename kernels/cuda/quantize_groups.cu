// GroupQuantize: quantizes groups of consecutive values (per-token-head,
// group-wise, and per-tensor when a plane fits), reading the input once.
//
// A team of 2^k threads (a few lanes, a warp, or several warps) owns one
// group: each thread loads up to kGroupItems vectors of it (vector j of the
// group goes to lane j % team, so each step of the team reads consecutive
// 16-byte pieces), the team reduces the max magnitude (warp shuffles; shared
// memory when the team spans warps), and each thread quantizes the values it
// still holds in registers and stores them. Work is split into chunks of
// consecutive groups of one block (~32 Ki values); CTAs stride over chunks,
// so one launch covers one huge block or thousands of tiny ones, and each
// chunk reports its block's max magnitude once.

#include <algorithm>

#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {
namespace {

// Values per chunk a CTA handles before it reports the block's absmax.
constexpr uint64_t kChunkValues = 32768;

struct GroupPlan {
  uint64_t group_values;      // G
  uint64_t groups_per_block;
  uint64_t elements;          // per block (for the padding)
  uint64_t scales_offset;
  uint32_t vecs_per_group;    // G / kVec <= kGroupCapacityVecs
  uint32_t team_shift;        // team = 1 << team_shift threads
  uint32_t groups_per_chunk;  // a multiple of the teams per CTA
  uint32_t total_chunks;      // blocks * chunks per block
  FastDivmod chunks_per_block;
};

template <typename T, int kVec, class Addr>
__global__ void __launch_bounds__(kGroupThreads, 4)
    QuantizeGroupsKernel(GroupPlan plan, BlockList blocks, Addr addr,
                         QuantizeOutputs out) {
  __shared__ uint32_t scratch[32];
  const uint32_t team = 1u << plan.team_shift;
  const uint32_t team_id = threadIdx.x >> plan.team_shift;
  const uint32_t lane = threadIdx.x & (team - 1);
  const uint32_t teams = kGroupThreads >> plan.team_shift;
  const uint32_t vecs = plan.vecs_per_group;

  for (uint32_t c = blockIdx.x; c < plan.total_chunks; c += gridDim.x) {
    uint32_t b, chunk;
    plan.chunks_per_block.DivMod(c, &b, &chunk);
    const BlockRef<Addr> ref = Resolve(blocks, addr, b);
    const T* src = reinterpret_cast<const T*>(ref.src);
    if (chunk == 0 && threadIdx.x == 0) {
      WritePadding(ref.payload, plan.elements, plan.scales_offset);
    }
    const uint64_t g_begin = uint64_t{chunk} * plan.groups_per_chunk;
    const uint64_t g_end =
        min(g_begin + plan.groups_per_chunk, plan.groups_per_block);

    uint32_t chunk_bits = 0;
    // Uniform over the CTA: every team runs every step, inactive ones
    // (past the chunk's end) with no memory traffic, so shuffles and
    // barriers see every thread.
    for (uint64_t base = g_begin; base < g_end; base += teams) {
      const uint64_t g = base + team_id;
      const bool active = g < g_end;
      const T* group_src = src + g * plan.group_values;

      Vec<T, kVec> x[kGroupItems];
#pragma unroll
      for (int k = 0; k < kGroupItems; ++k) {
        if (k * team < vecs) {  // uniform: skips items no lane has
          const uint32_t j = lane + k * team;
          x[k] = (active && j < vecs) ? LoadVec<T, kVec>(group_src + j * kVec)
                                      : ZeroVec<T, kVec>();
        }
      }
      Magnitudes<T, kVec> magnitudes;
#pragma unroll
      for (int k = 0; k < kGroupItems; ++k) {
        if (k * team < vecs) magnitudes.Add(x[k]);
      }
      uint32_t bits = magnitudes.Max();
      bits = TeamMax(bits, team, scratch);
      chunk_bits = max(chunk_bits, bits);

      const float scale = ScaleFromAbsmax(__uint_as_float(bits));
      const float inv_scale = InverseScale(scale);
      const uint64_t group_offset = g * plan.group_values;
#pragma unroll
      for (int k = 0; k < kGroupItems; ++k) {
        const uint32_t j = lane + k * team;
        if (k * team < vecs && active && j < vecs) {
          StoreVec<int8_t, kVec>(
              reinterpret_cast<int8_t*>(
                  ref.payload.At(group_offset + j * kVec)),
              QuantizeVec(x[k], scale, inv_scale));
        }
      }
      if (active && lane == 0) {
        *reinterpret_cast<float*>(
            ref.payload.At(plan.scales_offset + 4 * g)) = scale;
      }
    }
    if (out.absmax != nullptr || out.nonfinite != nullptr) {
      chunk_bits = CtaMax(chunk_bits, scratch);
      if (threadIdx.x == 0) ReportBlockMax(out, blocks.first + b, chunk_bits);
    }
  }
}

}  // namespace

template <typename T, int kVec, class Addr>
absl::Status LaunchGroupQuantize(const BlockLayout& layout,
                                 const BlockList& blocks, const Addr& addr,
                                 QuantizeOutputs out, cudaStream_t stream) {
  const uint64_t group_values = layout.group_values;
  const uint64_t vecs = group_values / kVec;
  if (group_values % kVec != 0 || vecs > kGroupCapacityVecs) {
    return absl::InternalError("kvq cuda: group does not fit GroupQuantize");
  }
  // The team: the fewest threads whose kGroupItems vectors each cover the
  // group, so that every thread has as many independent 16-byte loads in
  // flight as it can hold (the kernel is bound by memory latency: with teams
  // of 8 a 128-value FP16 group left each thread 2 loads, and ran at half
  // the copy rate). At least 2 threads for vectors, so that each load step
  // of a team reads a whole 32-byte sector; a whole warp for scalars.
  const uint32_t min_team = kVec > 1 ? 2 : 32;
  uint32_t team = CeilPow2((vecs + kGroupItems - 1) / kGroupItems);
  team = std::max(team, std::min<uint32_t>(CeilPow2(vecs), min_team));
  team = std::min<uint32_t>(team, kGroupThreads);
  const uint32_t teams = kGroupThreads / team;
  const uint64_t iters =
      std::max<uint64_t>(1, kChunkValues / (uint64_t{teams} * group_values));

  GroupPlan plan{};
  plan.group_values = group_values;
  plan.groups_per_block = layout.groups;
  plan.elements = layout.elements;
  plan.scales_offset = layout.scales_offset;
  plan.vecs_per_group = static_cast<uint32_t>(vecs);
  plan.team_shift = Log2(team);
  plan.groups_per_chunk = static_cast<uint32_t>(teams * iters);
  const uint64_t chunks_per_block =
      (layout.groups + plan.groups_per_chunk - 1) / plan.groups_per_chunk;
  plan.chunks_per_block = FastDivmod(chunks_per_block);
  if (chunks_per_block > 1) {
    KVQ_RETURN_IF_ERROR(PrepareAtomicAbsmax(blocks, &out, stream));
  }

  constexpr auto kKernel = &QuantizeGroupsKernel<T, kVec, Addr>;
  return ForEachSubBatch(
      blocks, chunks_per_block, [&](const BlockList& sub) -> absl::Status {
        GroupPlan p = plan;
        p.total_chunks = static_cast<uint32_t>(sub.count * chunks_per_block);
        absl::StatusOr<uint32_t> grid =
            PersistentGrid<kKernel>(kGroupThreads, p.total_chunks);
        if (!grid.ok()) return grid.status();
        return Launch("QuantizeGroupsKernel", kKernel, dim3(*grid),
                      dim3(kGroupThreads), stream, p, sub, addr, out);
      });
}

#define KVQ_INSTANTIATE(T, V, A)                                          \
  template absl::Status LaunchGroupQuantize<T, V, A>(                     \
      const BlockLayout&, const BlockList&, const A&, QuantizeOutputs,    \
      cudaStream_t);
KVQ_FOR_EACH_LAUNCH_CONFIG(KVQ_INSTANTIATE)
#undef KVQ_INSTANTIATE

}  // namespace kvq::cuda::internal
