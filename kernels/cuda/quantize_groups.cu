// GroupQuantize: quantizes groups of consecutive values (per-token-head,
// group-wise, and per-tensor when a plane fits), reading the input once.
//
// A team of 2^k threads owns groups and reduces each group's max magnitude
// (warp shuffles; shared memory when the team spans warps); each thread then
// quantizes the values it still holds in registers and stores them. Each
// thread holds kGroupItems 16-byte vectors, loaded together so that enough
// bytes are in flight, in one of two arrangements:
//   big groups (over 256 16-byte vectors, or over 16 scalars): the team
//     owns one group, and vector j of it goes to lane j % team, so each
//     load step reads consecutive pieces;
//   small groups (up to 256 vectors, e.g. a 128-value FP16 head): each
//     lane holds kLaneVecs vectors of each of kGroupItems / kLaneVecs
//     groups, and a team of CeilPow2(vectors) / kLaneVecs lanes (at least
//     one) covers a group: lane l holds vectors l, l + team, l + 2 * team,
//     ..., so that one load of a team reads `team` consecutive vectors, and
//     consecutive teams take consecutive groups, so that a warp's loads
//     cover whole runs of groups. The per-group work (the reduction, the
//     scale and its reciprocal, the scale store) is done once per kLaneVecs
//     vectors: 4 for groups of 9 to 128 16-byte vectors (teams of 4 to 32
//     lanes), 8 for 129 to 256 (teams of 32), else 1 (one vector per lane,
//     teams of CeilPow2(vectors)).
//     With one vector per lane, a team of 4 or 8 lanes also shares the
//     scale work out: each lane computes the scales of 8 / team of its 8
//     groups and the others take the reciprocals by shuffle.
// Steps whose groups all lie in the chunk and fill every lane's slots (all
// but a chunk's last, for power-of-two groups) run without bounds checks.
// Work is split into chunks of consecutive groups of one block (up to ~32 Ki
// values, shorter where that evens out the CTAs' shares: ChunkSteps); CTAs
// stride over chunks, so one launch covers one huge block or thousands of
// tiny ones, and each chunk reports its block's max magnitude once.
// Big launches of 16-bit values in one-vector lanes (FP16 / BF16 group32,
// head_dim 64) stage their input through shared memory by bulk copies, a
// step ahead (kStaged below).

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {
namespace {

// Most values per chunk a CTA handles before it reports the block's absmax.
constexpr uint64_t kChunkValues = 32768;

// Groups of at most this many vectors take the one-vector-per-lane
// small-group arrangement.
constexpr uint32_t kSmallGroupVecs = 16;

// Vectors of one group a lane holds in the wide small-group arrangement,
// which groups of 9 to 256 16-byte vectors take: kWideLaneVecs up to 128
// vectors (teams of 4 to 32 lanes, so that each load of a team reads 64
// bytes or more in a row), kWidestLaneVecs above, so that the team stays
// within a warp (its reduction is shuffles only).
constexpr int kWideLaneVecs = 4, kWidestLaneVecs = 8;
constexpr uint32_t kWideMinVecs = 9, kWideMaxVecs = 32 * kWidestLaneVecs;

// Teams of one-vector lanes at least this wide share out their groups'
// scales (owned_groups_step); with 2 lanes, the 4 scales each lane would own
// cost more registers than the kernel has (FP32 spilled). Measured on an
// H200 (bench/results/README.md, runs 2 and 3), group32 quantize: 1024 x 8 x
// 128 values 33-46% -> 46-55% of copy, 16384 x 8 x 128 80-83% -> 86-88%,
// FP32 at 131072 x 8 x 128 89% -> 93%; FP16 / BF16 there 88% -> 82%, at 1 Gi
// values unchanged (88%).
constexpr uint32_t kMinOwnerTeam = 4;

// Staged small groups (kStaged): each step's input is bulk-copied into one of
// kStages shared-memory slots of a whole step (kGroupThreads * kGroupItems
// 16-byte vectors) while the CTA quantizes the step before it.
constexpr int kStages = 2;
constexpr uint32_t kStageBytes = kGroupThreads * kGroupItems * 16;
constexpr size_t kStagedSmem = size_t{kStages} * kStageBytes;

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

// Quantizes group g's vectors that this lane holds in `x` with the group's
// scale: item k is vector first_vec + k * vec_step of the group, at element
// first_offset + k * vec_step * kVec of the block.
// kNormalScale: the caller knows the scale is normal (inv_scale != 0).
template <typename T, int kVec, int kItems, bool kAllActive = false,
          bool kNormalScale = false, class Payload>
__device__ __forceinline__ void QuantizeGroupVectors(
    const GroupPlan& plan, const Payload& payload, uint64_t first_offset,
    uint32_t first_vec, uint32_t vec_step, bool active, float scale,
    float inv_scale, const Vec<T, kVec>* x) {
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const uint32_t j = first_vec + k * vec_step;
    if (kAllActive || (active && j < plan.vecs_per_group)) {
      int8_t* const dst = reinterpret_cast<int8_t*>(
          payload.At(first_offset + k * vec_step * kVec));
      if constexpr (kNormalScale) {
        StoreQuantized(dst,
                       QuantizeVecNormalScale<ScaleSource::kOwn>(x[k],
                                                                 inv_scale));
      } else {
        StoreQuantized(dst,
                       QuantizeVec<ScaleSource::kOwn>(x[k], scale, inv_scale));
      }
    }
  }
}

template <class Payload>
__device__ __forceinline__ void StoreScale(const GroupPlan& plan,
                                           const Payload& payload, uint64_t g,
                                           float scale) {
  *reinterpret_cast<float*>(payload.At(plan.scales_offset + 4 * g)) = scale;
}

// QuantizeGroupVectors with the scale of the team's reduced maximum `bits`;
// lane 0 writes the scale.
template <typename T, int kVec, int kItems, bool kAllActive = false,
          class Payload>
__device__ __forceinline__ void StoreGroup(
    const GroupPlan& plan, const Payload& payload, uint64_t g,
    uint64_t first_offset, uint32_t first_vec, uint32_t vec_step, bool active,
    bool lane0, uint32_t bits, const Vec<T, kVec>* x) {
  const float scale = ScaleFromAbsmax(__uint_as_float(bits));
  const float inv_scale = InverseScale(scale);
  QuantizeGroupVectors<T, kVec, kItems, kAllActive>(
      plan, payload, first_offset, first_vec, vec_step, active, scale,
      inv_scale, x);
  if ((kAllActive || active) && lane0) StoreScale(plan, payload, g, scale);
}

// The maxima m[0 .. kN) of kN groups that every lane of a team of `team`
// lanes (2 .. kN, a power of two) holds a part of, reduced over the team and
// handed out: afterwards lane l of the team holds, in m[0 .. kN / team), the
// maxima of groups l * kN / team onwards. Each exchange sends the half of
// the values a lane gives up and keeps the other half: kN - 1 shuffles in
// all, where reducing every group over the team takes kN * log2(team).
template <int kN>
__device__ __forceinline__ void TransposeTeamMax(uint32_t (&m)[kN],
                                                 uint32_t team,
                                                 uint32_t lane) {
#pragma unroll
  for (int round = 0, n = kN; n > 1; ++round, n /= 2) {
    const uint32_t w = team >> (round + 1);  // partner: lane ^ w
    if (w == 0) break;                       // uniform
    const bool upper = (lane & w) != 0;
#pragma unroll
    for (int i = 0; i < n / 2; ++i) {
      const uint32_t send = upper ? m[i] : m[i + n / 2];
      const uint32_t keep = upper ? m[i + n / 2] : m[i];
      m[i] = max(keep, __shfl_xor_sync(0xffffffffu, send, w));
    }
  }
}

// values[slot], slot < kN uniform at run time, without indexing the array
// with it (which would move it to local memory).
template <int kN>
__device__ __forceinline__ float Pick(const float (&values)[kN],
                                      uint32_t slot) {
  float v = values[0];
#pragma unroll
  for (int i = 1; i < kN; ++i) v = slot == i ? values[i] : v;
  return v;
}

// kLaneVecs: vectors of one group each lane holds (small groups only).
// One-vector lanes run three CTAs per SM (up to 80 registers a thread): with
// four (64), their bounds-check-free steps spilled. Measured on an H200
// (bench/results/README.md, third session, runs 1-3), % of copy, with
// ChunkSteps: group32 FP16 at 131072 x 8 x 128 84% -> 88%, 1 Gi values
// 89% -> 91%; FP16 head_dim 64 86% -> 91%; FP32 group32 at 16384 x 8 x 128
// 88% -> 95%, at 131072 x 8 x 128 94% -> 98%; FP16 group32 at 1024 x 8 x 128
// 56% -> 85%. The other arrangements keep four: at three, big groups
// (FP16 head_dim 4096-8192) fell from 91% to 64% and batches of wide
// groups lost 2-5 points (run 4).
//
// kStaged (one-vector lanes of 16-byte vectors, compute capability 9.0+;
// launched with kStagedSmem of dynamic shared memory, which three CTAs per
// SM still fit): thread 0 bulk-copies each step's input into a shared slot
// while the CTA quantizes the steps before, and lanes load their vectors
// from the slot; the CTA's first step loads its own, as direct steps do,
// while the first copies land (first step staged too: FP16 group32 at 256
// MiB 87% of copy either way, at 2 GiB 89% -> 94%; first step direct: 92%
// and 94%). Without it, a warp has no load in flight between its step's
// loads and its stores. TakesStagedKernel says which launches take it.
template <typename T, int kVec, class Addr, bool kSmallGroups, int kLaneVecs,
          bool kStaged>
__global__ void __launch_bounds__(kGroupThreads,
                                  kSmallGroups && kLaneVecs == 1 ? 3 : 4)
    QuantizeGroupsKernel(GroupPlan plan, BlockList blocks, Addr addr,
                         QuantizeOutputs out) {
  static_assert(!kStaged || (kSmallGroups && kLaneVecs == 1 &&
                             kVec * sizeof(T) == 16));
  __shared__ uint32_t scratch[32];
  const uint32_t team = 1u << plan.team_shift;
  const uint32_t team_id = threadIdx.x >> plan.team_shift;
  const uint32_t lane = threadIdx.x & (team - 1);
  const uint32_t teams = kGroupThreads >> plan.team_shift;
  const uint32_t vecs = plan.vecs_per_group;
  // Small groups: each lane holds kLaneVecs vectors of each of
  // kGroupsPerLane groups, so a step covers step_groups groups.
  static_assert(kGroupItems % kLaneVecs == 0);
  [[maybe_unused]] constexpr int kGroupsPerLane = kGroupItems / kLaneVecs;
  [[maybe_unused]] const uint32_t step_groups = teams * kGroupsPerLane;

  // Staging: the slots, their barriers (phase n of slot s completes when
  // the CTA's step 1 + s + n * kStages has landed; its first step is not
  // staged), and thread 0's cursor over the CTA's steps in the order the
  // chunk loop below takes them, kept in shared memory: in registers, the
  // cursor spilled the others.
  extern __shared__ __align__(128) uint8_t stage_slots[];
  __shared__ uint64_t stage_full[kStages];
  struct StageCursor {
    const T* src;          // the chunk's block's input
    uint64_t base, end;    // the next step's first group, the chunk's end
    uint32_t chunk;        // >= plan.total_chunks: no step left
  };
  __shared__ StageCursor cursor;
  [[maybe_unused]] uint32_t steps_taken = 0;
  // Thread 0: points the cursor at the first step of chunk `c`.
  [[maybe_unused]] auto open_chunk = [&](uint32_t c) {
    cursor.chunk = c;
    if (c >= plan.total_chunks) return;
    uint32_t b, chunk;
    plan.chunks_per_block.DivMod(c, &b, &chunk);
    cursor.src = reinterpret_cast<const T*>(Resolve(blocks, addr, b).src);
    cursor.base = uint64_t{chunk} * plan.groups_per_chunk;
    cursor.end =
        min(cursor.base + plan.groups_per_chunk, plan.groups_per_block);
  };
  // Thread 0: moves the cursor to the CTA's next step.
  [[maybe_unused]] auto advance_cursor = [&] {
    if (cursor.chunk >= plan.total_chunks) return;
    cursor.base += step_groups;
    if (cursor.base >= cursor.end) open_chunk(cursor.chunk + gridDim.x);
  };
  // Thread 0: copies the cursor's step into `slot`, if the CTA has one left,
  // and moves the cursor on.
  [[maybe_unused]] auto issue_step = [&](uint32_t slot) {
    if (cursor.chunk >= plan.total_chunks) return;
    const uint64_t groups =
        min(uint64_t{step_groups}, cursor.end - cursor.base);
    IssueBulkCopy(&stage_full[slot], stage_slots + slot * kStageBytes,
                  cursor.src + cursor.base * plan.group_values,
                  static_cast<uint32_t>(groups * plan.group_values *
                                        sizeof(T)));
    advance_cursor();
  };
  if constexpr (kStaged) {
    if (threadIdx.x == 0) {
      for (int slot = 0; slot < kStages; ++slot) {
        InitBulkBarrier(&stage_full[slot]);
      }
      open_chunk(blockIdx.x);
      advance_cursor();  // the first step loads directly
      for (int slot = 0; slot < kStages; ++slot) issue_step(slot);
    }
    __syncthreads();
  }

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
      // Group item k of team t is group base + k * teams + t; slot s of
      // lane l holds vector l + s * team of it, so that one load of a team
      // reads `team` consecutive vectors and one load of a warp reads whole
      // runs of consecutive groups.
      const uint32_t slot_stride = team * kVec;
      const uint32_t group_stride =
          teams * static_cast<uint32_t>(plan.group_values);  // < 2^16
      // kFull: every group of the step is in the chunk and every slot holds
      // a vector, so no load or store needs a bounds check.
      // The step's input: global memory, or (kStaged) the slot it was
      // copied into, where item (k, s) of this lane lies at local(k, s).
      [[maybe_unused]] const T* stage = nullptr;
      auto step = [&](uint64_t base, auto full, auto from_stage) {
        constexpr bool kFull = decltype(full)::value;
        constexpr bool kFromStage = decltype(from_stage)::value;
        // Element offset of item (k, s) of this lane: a 32-bit offset from
        // the lane's first (a step spans < 2^16 values), so each address is
        // one multiply-add; but for one vector per lane in a step with
        // bounds checks, from each group's own offset, as holding the 8
        // groups' offsets there spilled.
        [[maybe_unused]] const uint64_t first =
            (base + team_id) * plan.group_values + lane * kVec;
        auto offset = [&](int k, int s) -> uint64_t {
          if constexpr (kLaneVecs > 1 || kFull) {
            return first + (k * group_stride + s * slot_stride);
          } else {
            return (base + k * teams + team_id) * plan.group_values +
                   lane * kVec;
          }
        };
        // One vector of each of the lane's groups (teams of kMinOwnerTeam
        // or more): the team reduces all the groups at once
        // (TransposeTeamMax), each lane computes the scales of the groups it
        // is then left with and hands their reciprocals out, so that a lane
        // divides for kGroupsPerLane / team groups instead of kGroupsPerLane.
        auto owned_groups_step = [&](uint64_t base,
                                   const Vec<T, kVec> (&x)[kGroupsPerLane]
                                                          [kLaneVecs]) {
          uint32_t m[kGroupsPerLane];
#pragma unroll
          for (int k = 0; k < kGroupsPerLane; ++k) {
            Magnitudes<T, kVec> magnitudes;
            magnitudes.Add(x[k][0]);
            m[k] = magnitudes.Max();
            chunk_bits = max(chunk_bits, m[k]);
          }
          TransposeTeamMax(m, team, lane);
          const uint32_t owned = kGroupsPerLane >> plan.team_shift;
          const uint32_t owned_shift = __ffs(owned) - 1;
          constexpr int kMaxOwned = kGroupsPerLane >= int{kMinOwnerTeam}
                                        ? kGroupsPerLane / kMinOwnerTeam
                                        : 1;  // unused: lanes of 4 vectors
          float own_scale[kMaxOwned], own_inv[kMaxOwned];
          bool special = false;  // a zero or subnormal scale
#pragma unroll
          for (int i = 0; i < kMaxOwned; ++i) {
            own_scale[i] = 0.0f;
            own_inv[i] = 0.0f;
            if (i < owned) {  // uniform
              own_scale[i] = ScaleFromAbsmax(__uint_as_float(m[i]));
              own_inv[i] = InverseScale(own_scale[i]);
              special |= own_inv[i] == 0.0f;
              const uint64_t g =
                  base + ((lane << owned_shift) + i) * teams + team_id;
              if (kFull || g < g_end) {
                StoreScale(plan, ref.payload, g, own_scale[i]);
              }
            }
          }
          // QuantizeVec needs the scale itself only where its reciprocal is
          // 0 (a zero or subnormal scale): handed out too only when some
          // group of the warp has one. Without one (all but the rarest
          // warps), no vector takes QuantizeVec's branch on its scale's
          // kind either.
          const uint32_t team_base = (threadIdx.x & 31) & ~(team - 1);
          auto quantize = [&](auto normal) {
            constexpr bool kNormal = decltype(normal)::value;
#pragma unroll
            for (int k = 0; k < kGroupsPerLane; ++k) {
              const uint32_t owner = team_base + (k >> owned_shift);
              const uint32_t slot = k & (owned - 1);
              const float inv =
                  __shfl_sync(0xffffffffu, Pick(own_inv, slot), owner);
              const float scale =
                  kNormal ? 0.0f
                          : __shfl_sync(0xffffffffu, Pick(own_scale, slot),
                                        owner);
              if (kFull || base + k * teams < g_end) {  // uniform
                const uint64_t g = base + k * teams + team_id;
                QuantizeGroupVectors<T, kVec, 1, kFull, kNormal>(
                    plan, ref.payload, offset(k, 0), lane, team, g < g_end,
                    scale, inv, x[k]);
              }
            }
          };
          if (__any_sync(0xffffffffu, special)) {
            quantize(std::false_type{});
          } else {
            quantize(std::true_type{});
          }
        };
        Vec<T, kVec> x[kGroupsPerLane][kLaneVecs];
#pragma unroll
        for (int k = 0; k < kGroupsPerLane; ++k) {
          const uint64_t g = base + k * teams + team_id;
#pragma unroll
          for (int s = 0; s < kLaneVecs; ++s) {
            if (kFull || (g < g_end && lane + s * team < vecs)) {
              if constexpr (kFromStage) {
                const uint32_t local =
                    (k * teams + team_id) *
                        static_cast<uint32_t>(plan.group_values) +
                    lane * kVec + s * slot_stride;
                x[k][s] = LoadVec<T, kVec>(stage + local);
              } else {
                x[k][s] = LoadVec<T, kVec>(src + offset(k, s));
              }
            } else {
              x[k][s] = ZeroVec<T, kVec>();
            }
          }
        }
        if constexpr (kLaneVecs == 1) {
          if (team >= kMinOwnerTeam && team <= kGroupsPerLane) {  // uniform
            owned_groups_step(base, x);
            return;
          }
        }
#pragma unroll
        for (int k = 0; k < kGroupsPerLane; ++k) {
          if (kFull || base + k * teams < g_end) {  // uniform
            const uint64_t g = base + k * teams + team_id;
            Magnitudes<T, kVec> magnitudes;
#pragma unroll
            for (int s = 0; s < kLaneVecs; ++s) magnitudes.Add(x[k][s]);
            const uint32_t bits = SubWarpMax(magnitudes.Max(), team);
            chunk_bits = max(chunk_bits, bits);
            StoreGroup<T, kVec, kLaneVecs, kFull>(
                plan, ref.payload, g, offset(k, 0), lane, team, g < g_end,
                lane == 0, bits, x[k]);
          }
        }
      };
      const bool full_slots = vecs == team * kLaneVecs;  // uniform
      for (uint64_t base = g_begin; base < g_end; base += step_groups) {
        auto run_step = [&](auto from_stage) {
          if (full_slots && base + step_groups <= g_end) {  // uniform
            step(base, std::true_type{}, from_stage);
          } else {
            step(base, std::false_type{}, from_stage);
          }
        };
        if constexpr (kStaged) {
          // The CTA's first step loads its vectors itself, as unstaged
          // steps do, while the copies of the next kStages land; step n
          // after it reads slot (n - 1) % kStages.
          if (steps_taken == 0) {
            run_step(std::false_type{});
          } else {
            const uint32_t copy = steps_taken - 1;
            const uint32_t slot = copy % kStages;
            WaitBulkPhase(&stage_full[slot], (copy / kStages) & 1);
            stage =
                reinterpret_cast<const T*>(stage_slots + slot * kStageBytes);
            run_step(std::true_type{});
            __syncthreads();  // the slot is read: it takes the next copy
            if (threadIdx.x == 0) issue_step(slot);
          }
          ++steps_taken;
        } else {
          run_step(std::false_type{});
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
        StoreGroup<T, kVec, kGroupItems>(
            plan, ref.payload, g, g * plan.group_values + lane * kVec, lane,
            team, active, lane == 0, bits, x);
      }
    }
    if (out.absmax != nullptr || out.nonfinite != nullptr) {
      chunk_bits = CtaMax(chunk_bits, scratch);
      if (threadIdx.x == 0) ReportBlockMax(out, blocks.first + b, chunk_bits);
    }
  }
}

// Staged launches (kStaged) take at least this many steps on their busiest
// CTA. Measured on an H200 (bench/results/README.md, fifteenth session,
// calls 2 and 3, 2-3 alternating rounds, % of copy), staged against direct
// loads for FP16 group32: 2-5 steps (32-64 MiB) 85-91% -> 75-85%, 7.8 steps
// (96 MiB) 90% -> 88%, 10.3 (128 MiB) 87-88% -> 90-91%, 15.5 (192 MiB)
// 87-88% -> 91-92%, 20.7 (256 MiB) 87% -> 92%, 166 (2 GiB) 89% -> 94%; FP16
// head_dim 64 at 10.3 steps 92-93% -> 90-91%, at 15.5 89-90% -> 92-93%. With
// few steps a CTA's copies have little to overlap, and its first step's
// loads queue behind every CTA's bulk copies.
constexpr uint64_t kMinStagedCtaSteps = 10;

// Whether a launch of 16-bit values in one-vector lanes takes the staged
// kernel: one block (batches of small blocks were not measured staged)
// whose busiest CTA takes kMinStagedCtaSteps or more, on a device with bulk
// copies. FP32 keeps direct loads, at its limit already: staged, FP32
// group32 went 95-96% -> 92-93% at 10.3 steps, 97% either way at 20.7, and
// 96-97% -> 97-98% at 41; so do wider lanes, which lost (FP16 head_dim 128
// 92% -> 89-91%, a 2 MiB BF16 block 86-87% -> 78%: call 1).
bool TakesStagedKernel(uint32_t blocks, uint64_t busiest_cta_steps,
                       bool bulk_copy) {
  return blocks == 1 && busiest_cta_steps >= kMinStagedCtaSteps && bulk_copy;
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
  // Small groups: teams of CeilPow2(vecs) / lane_vecs lanes (at least one),
  // each lane holding lane_vecs vectors of each of kGroupItems / lane_vecs
  // groups. Big groups: enough threads that kGroupItems vectors each cover
  // the group, and at least 128 bytes per step for vectors, a whole warp for
  // scalars, so each load step is coalesced.
  // Measured on an H200 (bench/results/kernels-h200.md and its notes):
  // at 16 vectors or fewer the small-group arrangement wins (FP16 head_dim
  // 128: 58% of copy vs 52% with teams of 8, both one vector per lane); at
  // 32 teams of 8 do (FP32 head_dim 128: 77% vs 70%; FP16 head_dim 256: 65%
  // vs 56%). With one vector per lane the small-group kernel was issue-bound
  // (FP16 head_dim 128: 76% of copy, ~190 instructions per warp and item,
  // most of them each lane's scale, reciprocal, shuffles and addresses for
  // every 8 values), so lanes now hold kWideLaneVecs vectors of a group and
  // do that work once per 4 vectors. Measured (H200, 1 Gi values): FP16
  // head_dim 128 (16 vectors, teams of 4) 76% -> 95%, a batch of 4096
  // 16x8x128 blocks 58% -> 87%; but teams of 1 or 2 lanes lost: group32
  // (4 vectors) 83% -> 53%, FP16 head_dim 64 (8 vectors) 79% -> 70%, as each
  // warp load then touches 16 cache lines. So groups of up to 8 vectors keep
  // one vector per lane, and the wide arrangement takes 9 to 32 vectors
  // (FP32 head_dim 128 and FP16 head_dim 256 left the big-group one, whose
  // 32-vector groups kept 4 loads in flight a thread, for 8: FP32 head_dim
  // 128 89% -> 98%, FP16 head_dim 256 87% -> 89%, FP32 batch 61% -> 94%).
  // Groups of 33 to 256 vectors followed (bench/results/README.md, run 1 of
  // the second session, 256 MiB inputs): FP16 / BF16 head_dim 512 and 1024
  // 85-86% -> 92%, 2048 86% -> 94%; FP32 head_dim 512 and 1024 94% -> 96-98%.
  const bool wide =
      kVec > 1 && vecs >= kWideMinVecs && vecs <= kWideMaxVecs;
  const bool small_groups = wide || vecs <= kSmallGroupVecs;
  const uint32_t lane_vecs =
      !wide                          ? 1
      : vecs <= 32 * kWideLaneVecs ? kWideLaneVecs
                                   : kWidestLaneVecs;
  // A big group's power of two (32+ vectors) is never narrower than the
  // minimum team, and vecs <= kGroupCapacityVecs keeps the team in the CTA.
  const uint32_t team =
      small_groups
          ? std::max<uint32_t>(1, CeilPow2(vecs) / lane_vecs)
          : std::max<uint32_t>(CeilPow2((vecs + kGroupItems - 1) / kGroupItems),
                               kVec > 1 ? 8 : 32);
  const uint32_t teams = kGroupThreads / team;
  const uint64_t step_groups =
      uint64_t{teams} * (small_groups ? kGroupItems / lane_vecs : 1);
  // Steps per chunk: up to kChunkValues' worth, fewer where that leaves
  // the busiest CTA fewer steps (ChunkSteps: the grid is known once the
  // kernel is).
  const uint64_t max_steps =
      std::max<uint64_t>(1, kChunkValues / (step_groups * group_values));
  const uint64_t block_steps = (layout.groups + step_groups - 1) / step_groups;

  GroupPlan plan{};
  plan.group_values = group_values;
  plan.groups_per_block = layout.groups;
  plan.elements = layout.elements;
  plan.scales_offset = layout.scales_offset;
  plan.vecs_per_group = static_cast<uint32_t>(vecs);
  plan.team_shift = Log2(team);

  auto launch = [&](auto small, auto lane_vecs_tag,
                    auto staged) -> absl::Status {
    constexpr bool kStaged = decltype(staged)::value;
    constexpr auto kKernel =
        &QuantizeGroupsKernel<T, kVec, Addr, decltype(small)::value,
                              decltype(lane_vecs_tag)::value, kStaged>;
    constexpr size_t kSmem = kStaged ? kStagedSmem : 0;
    const absl::StatusOr<uint32_t> resident =
        PersistentGrid<kKernel, kSmem>(kGroupThreads, UINT32_MAX);
    if (!resident.ok()) return resident.status();
    plan.groups_per_chunk = static_cast<uint32_t>(
        step_groups *
        ChunkSteps(block_steps, blocks.count, max_steps, *resident));
    const uint64_t chunks_per_block =
        (layout.groups + plan.groups_per_chunk - 1) / plan.groups_per_chunk;
    plan.chunks_per_block = FastDivmod(chunks_per_block);
    if (chunks_per_block > 1) {
      KVQ_RETURN_IF_ERROR(PrepareAtomicAbsmax(blocks, &out, stream));
    }
    return LaunchPersistent<kKernel, &GroupPlan::total_chunks, 0, kSmem>(
        "QuantizeGroupsKernel", kGroupThreads, blocks, chunks_per_block, plan,
        stream, addr, out);
  };
  using One = std::integral_constant<int, 1>;
  if (!small_groups) return launch(std::false_type{}, One{}, std::false_type{});
  if constexpr (kVec > 1) {
    if (lane_vecs == kWideLaneVecs) {
      return launch(std::true_type{},
                    std::integral_constant<int, kWideLaneVecs>{},
                    std::false_type{});
    }
    if (lane_vecs == kWidestLaneVecs) {
      return launch(std::true_type{},
                    std::integral_constant<int, kWidestLaneVecs>{},
                    std::false_type{});
    }
    if constexpr (sizeof(T) == 2) {
      // The busiest CTA's steps as the direct kernel would cut them (the
      // staged one is as resident: three CTAs per SM).
      const absl::StatusOr<uint32_t> resident =
          PersistentGrid<&QuantizeGroupsKernel<T, kVec, Addr, true, 1, false>>(
              kGroupThreads, UINT32_MAX);
      if (!resident.ok()) return resident.status();
      const uint64_t busiest = BusiestCtaSteps(
          block_steps, blocks.count,
          ChunkSteps(block_steps, blocks.count, max_steps, *resident),
          *resident);
      const absl::StatusOr<bool> bulk_copy = DeviceHasBulkCopy();
      if (!bulk_copy.ok()) return bulk_copy.status();
      if (TakesStagedKernel(blocks.count, busiest, *bulk_copy)) {
        return launch(std::true_type{}, One{}, std::true_type{});
      }
    }
  }
  return launch(std::true_type{}, One{}, std::false_type{});
}

#define KVQ_INSTANTIATE(T, V, A)                                          \
  template absl::Status LaunchGroupQuantize<T, V, A>(                     \
      const BlockLayout&, const BlockList&, const A&, QuantizeOutputs,    \
      cudaStream_t);
KVQ_FOR_EACH_LAUNCH_CONFIG(KVQ_INSTANTIATE)
#undef KVQ_INSTANTIATE

}  // namespace kvq::cuda::internal
