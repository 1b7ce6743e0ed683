// How a persistent kernel's work is cut into chunks. Host code, no CUDA:
// the launchers call it, and the CPU tests check it.
//
// A persistent grid's CTAs stride over chunks (CTA i takes chunks i,
// i + ctas, ...), so the launch lasts as long as its busiest CTA. Fixed-size
// chunks leave a tail whenever the chunk count is not a multiple of the
// CTAs: 512 chunks of 4 steps on 396 CTAs give 116 of them a second chunk,
// and the launch takes 8 steps where 5.2 would do.

#ifndef KVQ_KERNELS_CUDA_WORK_SPLIT_H_
#define KVQ_KERNELS_CUDA_WORK_SPLIT_H_

#include <algorithm>
#include <cstdint>

namespace kvq::cuda {

// Steps the busiest of `ctas` CTAs runs when `blocks` blocks of
// `block_steps` steps each are cut into chunks of `chunk_steps` steps (a
// chunk never spans two blocks; a block's last chunk may be shorter, and is
// counted whole). All arguments >= 1.
inline uint64_t BusiestCtaSteps(uint64_t block_steps, uint64_t blocks,
                                uint64_t chunk_steps, uint64_t ctas) {
  const uint64_t chunks =
      blocks * ((block_steps + chunk_steps - 1) / chunk_steps);
  return (chunks + ctas - 1) / ctas * std::min(chunk_steps, block_steps);
}

// The chunk length in steps, 1 .. min(max_steps, block_steps), that leaves
// the busiest CTA the fewest steps; of those, the longest (fewer chunks, so
// less per-chunk work: each chunk reports its block's absmax once). In the
// example above, chunks of 3 steps: 6 steps for the busiest CTA.
//
// `chunk_cost`: what a chunk's own work (its reductions, barriers and
// atomics) costs, in steps; the busiest CTA then pays its steps plus
// chunk_cost per chunk it takes, and the length minimizes that.
inline uint64_t ChunkSteps(uint64_t block_steps, uint64_t blocks,
                           uint64_t max_steps, uint64_t ctas,
                           double chunk_cost = 0) {
  auto cost = [&](uint64_t steps) {
    const uint64_t chunks = blocks * ((block_steps + steps - 1) / steps);
    const uint64_t rounds = (chunks + ctas - 1) / ctas;
    return static_cast<double>(BusiestCtaSteps(block_steps, blocks, steps,
                                               ctas)) +
           chunk_cost * static_cast<double>(rounds);
  };
  const uint64_t longest =
      std::max<uint64_t>(1, std::min(max_steps, block_steps));
  uint64_t best = longest;
  double best_cost = cost(longest);
  for (uint64_t steps = longest - 1; steps >= 1; --steps) {
    const double c = cost(steps);
    if (c < best_cost) {
      best = steps;
      best_cost = c;
    }
  }
  return best;
}

// Whether a launch is big enough to cut its chunks per launch: at least
// `min_bytes` bytes, and at least `min_rounds` chunks of `default_units` per
// CTA. Blocks of `block_units` units (a whole number of a pass's steps; a
// block's last chunk may be shorter), `blocks` of them, on `ctas` CTAs.
inline bool FillsTheGridSeveralTimes(uint64_t block_units, uint64_t blocks,
                                     uint64_t ctas, uint64_t default_units,
                                     uint64_t min_rounds,
                                     uint64_t launch_bytes,
                                     uint64_t min_bytes) {
  const uint64_t default_chunks =
      blocks * ((block_units + default_units - 1) / default_units);
  return launch_bytes >= min_bytes && default_chunks >= min_rounds * ctas;
}

// Per-channel dequantize's chunk length in units, chosen per launch
// (elementwise.cuh, whose launcher calls this): `default_units` unless the
// launch fills the grid several times (FillsTheGridSeveralTimes), else
// ChunkSteps in units up to `default_units`; so always 1 .. default_units.
// E.g. FP16 1 x 2048 x 8 x 8192 (65536 units of one vector per thread) on
// 528 CTAs: 5 units, the busiest CTA 125 of them, where the default 16
// leaves 128 of 528 CTAs idle for the last of 8 rounds (128); measured on
// the H200, 84% -> 88% of copy (elementwise.cuh has the other cases). Small
// launches keep the default: cut shorter, a dequantize written to host
// memory over PCIe slowed 2-4x (many CTAs each writing small pieces).
inline uint64_t PerChannelChunkUnits(uint64_t block_units, uint64_t blocks,
                                     uint64_t ctas, uint64_t default_units,
                                     uint64_t min_rounds,
                                     uint64_t launch_bytes,
                                     uint64_t min_bytes) {
  if (!FillsTheGridSeveralTimes(block_units, blocks, ctas, default_units,
                                min_rounds, launch_bytes, min_bytes)) {
    return default_units;
  }
  return ChunkSteps(block_units, blocks, default_units, ctas);
}

// A grid that works in rounds of one slab per CTA (PhasedDequantize, whose
// grid meets after every round) takes as long as its rounds, each about as
// long as one slab, and a last round that fills few CTAs costs nearly a full
// one. So: the fewest rounds that slabs of at most `max_slab` values allow,
// and the shortest slab (a multiple of `align`) that covers `values` in
// that many rounds of `ctas` slabs, so that every round is as full as the
// next. E.g. 2^25 values on 528 CTAs, at most 49152 a slab, in multiples of
// 128: 2 rounds of 31872-value slabs, where slabs of 49152 (683 of them)
// left a second round of 155. All arguments >= 1; the result is <= max_slab
// when max_slab is a multiple of align.
inline uint64_t EvenSlabValues(uint64_t values, uint64_t ctas,
                               uint64_t max_slab, uint64_t align) {
  const uint64_t per_round = ctas * max_slab;
  const uint64_t rounds = (values + per_round - 1) / per_round;
  const uint64_t slabs = rounds * ctas;
  const uint64_t slab = (values + slabs - 1) / slabs;
  return (slab + align - 1) / align * align;
}

}  // namespace kvq::cuda

#endif  // KVQ_KERNELS_CUDA_WORK_SPLIT_H_
