// GroupQuantize: quantizes groups of consecutive values (per-token-head,
// group-wise, and per-tensor when a plane fits), reading the input once.
//
// A team of 2^k threads owns groups and reduces each group's max magnitude
// (warp shuffles; shared memory when the team spans warps); each thread then
// quantizes the values it still holds in registers and stores them. Each
// thread holds kGroupItems 16-byte vectors, loaded together so that enough
// bytes are in flight, in one of two arrangements:
//   big groups (over 16 vectors): the team owns one group, and vector j of
//     it goes to lane j % team, so each load step reads consecutive pieces;
//   small groups (16 vectors or fewer, e.g. a 128-value FP16 head): a team
//     of CeilPow2(vectors) lanes takes one vector of each of kGroupItems
//     groups, so that every load of a warp reads one contiguous run of
//     whole groups, and reduces each item's group on its own.
// Work is split into chunks of consecutive groups of one block (~32 Ki
// values); CTAs stride over chunks, so one launch covers one huge block or
// thousands of tiny ones, and each chunk reports its block's max magnitude
// once.

#include <algorithm>
#include <type_traits>

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

// Quantizes group g's vectors that this lane holds in `x` (big groups: all
// items; small groups: one) with the team's reduced maximum `bits`, and
// lane 0 writes the scale.
template <typename T, int kVec, int kItems, class Payload>
__device__ __forceinline__ void StoreGroup(const GroupPlan& plan,
                                           const Payload& payload, uint64_t g,
                                           uint32_t first_vec,
                                           uint32_t vec_step, bool active,
                                           bool lane0, uint32_t bits,
                                           const Vec<T, kVec>* x) {
  const float scale = ScaleFromAbsmax(__uint_as_float(bits));
  const float inv_scale = InverseScale(scale);
  const uint64_t group_offset = g * plan.group_values;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const uint32_t j = first_vec + k * vec_step;
    if (active && j < plan.vecs_per_group) {
      StoreVec<int8_t, kVec>(
          reinterpret_cast<int8_t*>(payload.At(group_offset + j * kVec)),
          QuantizeVec(x[k], scale, inv_scale));
    }
  }
  if (active && lane0) {
    *reinterpret_cast<float*>(payload.At(plan.scales_offset + 4 * g)) = scale;
  }
}

template <typename T, int kVec, class Addr, bool kSmallGroups>
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
    if constexpr (kSmallGroups) {
      // Item k of team t is group base + k * teams + t; lane = its vector.
      const uint32_t step_groups = teams * kGroupItems;
      for (uint64_t base = g_begin; base < g_end; base += step_groups) {
        Vec<T, kVec> x[kGroupItems];
#pragma unroll
        for (int k = 0; k < kGroupItems; ++k) {
          const uint64_t g = base + k * teams + team_id;
          x[k] = (g < g_end && lane < vecs)
                     ? LoadVec<T, kVec>(src + g * plan.group_values +
                                        lane * kVec)
                     : ZeroVec<T, kVec>();
        }
#pragma unroll
        for (int k = 0; k < kGroupItems; ++k) {
          if (base + k * teams < g_end) {  // uniform
            const uint64_t g = base + k * teams + team_id;
            Magnitudes<T, kVec> magnitudes;
            magnitudes.Add(x[k]);
            const uint32_t bits = SubWarpMax(magnitudes.Max(), team);
            chunk_bits = max(chunk_bits, bits);
            StoreGroup<T, kVec, 1>(plan, ref.payload, g, lane, 0, g < g_end,
                                   lane == 0, bits, &x[k]);
          }
        }
      }
    } else {
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
            x[k] = (active && j < vecs)
                       ? LoadVec<T, kVec>(group_src + j * kVec)
                       : ZeroVec<T, kVec>();
          }
        }
        Magnitudes<T, kVec> magnitudes;
#pragma unroll
        for (int k = 0; k < kGroupItems; ++k) {
          if (k * team < vecs) magnitudes.Add(x[k]);
        }
        const uint32_t bits = TeamMax(magnitudes.Max(), team, scratch);
        chunk_bits = max(chunk_bits, bits);
        StoreGroup<T, kVec, kGroupItems>(plan, ref.payload, g, lane, team,
                                         active, lane == 0, bits, x);
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
  // Small groups: a team of CeilPow2(vecs) lanes, one vector each, holding
  // kGroupItems groups. Big groups: enough threads that kGroupItems vectors
  // each cover the group, and at least 128 bytes per step for vectors, a
  // whole warp for scalars, so each load step is coalesced.
  // Measured on an H200 (bench/results/kernels-h200.md and its notes):
  // at 16 vectors or fewer the small-group arrangement wins (FP16 head_dim
  // 128: 58% of copy vs 52% with teams of 8); at 32 teams of 8 do (FP32
  // head_dim 128: 77% vs 70%; FP16 head_dim 256: 65% vs 56%).
  const bool small_groups = vecs <= 16;
  // A big group's power of two (32+ vectors) is never narrower than the
  // minimum team, and vecs <= kGroupCapacityVecs keeps the team in the CTA.
  const uint32_t team =
      small_groups ? CeilPow2(vecs)
                   : std::max<uint32_t>(
                         CeilPow2((vecs + kGroupItems - 1) / kGroupItems),
                         kVec > 1 ? 8 : 32);
  const uint32_t teams = kGroupThreads / team;
  const uint64_t step_groups =
      uint64_t{teams} * (small_groups ? kGroupItems : 1);
  const uint64_t iters =
      std::max<uint64_t>(1, kChunkValues / (step_groups * group_values));

  GroupPlan plan{};
  plan.group_values = group_values;
  plan.groups_per_block = layout.groups;
  plan.elements = layout.elements;
  plan.scales_offset = layout.scales_offset;
  plan.vecs_per_group = static_cast<uint32_t>(vecs);
  plan.team_shift = Log2(team);
  plan.groups_per_chunk = static_cast<uint32_t>(step_groups * iters);
  const uint64_t chunks_per_block =
      (layout.groups + plan.groups_per_chunk - 1) / plan.groups_per_chunk;
  plan.chunks_per_block = FastDivmod(chunks_per_block);
  if (chunks_per_block > 1) {
    KVQ_RETURN_IF_ERROR(PrepareAtomicAbsmax(blocks, &out, stream));
  }

  auto launch = [&](auto kernel_tag) -> absl::Status {
    constexpr auto kKernel = decltype(kernel_tag)::value;
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
  };
  if (small_groups) {
    return launch(std::integral_constant<
                  decltype(&QuantizeGroupsKernel<T, kVec, Addr, true>),
                  &QuantizeGroupsKernel<T, kVec, Addr, true>>{});
  }
  return launch(std::integral_constant<
                decltype(&QuantizeGroupsKernel<T, kVec, Addr, false>),
                &QuantizeGroupsKernel<T, kVec, Addr, false>>{});
}

#define KVQ_INSTANTIATE(T, V, A)                                          \
  template absl::Status LaunchGroupQuantize<T, V, A>(                     \
      const BlockLayout&, const BlockList&, const A&, QuantizeOutputs,    \
      cudaStream_t);
KVQ_FOR_EACH_LAUNCH_CONFIG(KVQ_INSTANTIATE)
#undef KVQ_INSTANTIATE

}  // namespace kvq::cuda::internal
