// The CPU fast path: the same arithmetic as the reference (quant_math.h, in
// the same order per element), restructured into loops a compiler vectorizes
// and spread over WorkerPool threads for large blocks.
//
// Two shapes of grouping cover every granularity:
//   contiguous  per-token-head, group and per-tensor: group g is the values
//               [g * n, (g + 1) * n) with n = layout.group_values.
//   columns     per-channel: a plane is a tokens x (heads * head_dim) matrix
//               and each column is a group, so absmax is a row-wise running
//               maximum along the channels and each row uses a row of scales.
//
// absmax is found on the magnitude bits of the input (integer max of
// |bits|): for finite values their order is the order of the values, and
// any Inf or NaN has magnitude bits >= those of Inf, so one pass both finds
// every group's absmax and detects non-finite input. Only then, on the error
// path, a second scan finds the first bad element to name it.

#include "kernels/quantize.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/parallel.h"
#include "kernels/quant_math.h"
#include "kernels/quantize_internal.h"

namespace kvq {
namespace {

// Blocks above this many input bytes are spread over threads.
constexpr uint64_t kParallelBytes = uint64_t{1} << 20;
// Elements per unit of work handed to a thread.
constexpr uint64_t kChunkValues = uint64_t{1} << 16;

// The range kernels below are the hot loops. On x86-64 with GCC each is
// compiled twice, for x86-64-v3 (AVX2, F16C, FMA) and for the baseline, and
// the loader picks one per machine (an ifunc): about 2x on FP16 / BF16 blocks.
// Both compute the same IEEE operations (no contraction: -ffp-contract=off),
// so the bytes do not depend on the clone. Each kernel takes a whole range of
// work, so the indirect call is paid once per chunk, not per group.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__has_attribute)
#if __has_attribute(target_clones)
#define KVQ_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
#endif
#ifndef KVQ_CPU_CLONES
#define KVQ_CPU_CLONES
#endif

template <typename E>
using Storage = typename E::Storage;
template <typename E>
using AbsBits = typename E::AbsBits;

// Largest magnitude bits of n values.
template <typename E>
inline AbsBits<E> MaxAbsBits(const Storage<E>* x, uint64_t n) {
  AbsBits<E> m = 0;
  for (uint64_t j = 0; j < n; ++j) m = std::max(m, E::Abs(x[j]));
  return m;
}

// Quantizes n values sharing one scale.
template <typename E>
inline void QuantizeRun(const Storage<E>* x, uint64_t n, float scale,
                        float inv_scale, int8_t* q) {
  if (inv_scale != 0.0f || scale == 0.0f) {
    // A zero scale has inv_scale 0: x * 0 rounds to 0, as QuantizeValue.
    for (uint64_t j = 0; j < n; ++j) {
      q[j] = static_cast<int8_t>(ClampRound(E::ToFloat(x[j]) * inv_scale));
    }
  } else {
    for (uint64_t j = 0; j < n; ++j) {
      q[j] = QuantizeValue(E::ToFloat(x[j]), scale, inv_scale);
    }
  }
}

// --- range kernels ---------------------------------------------------------

// amax[g] = largest magnitude bits of x[g * n, (g + 1) * n), g in [g0, g1).
template <typename E>
KVQ_CPU_CLONES void AbsmaxGroups(const Storage<E>* x, uint64_t n, uint64_t g0,
                                 uint64_t g1, AbsBits<E>* amax) {
  for (uint64_t g = g0; g < g1; ++g) amax[g] = MaxAbsBits<E>(x + g * n, n);
}

// m[j] = max(m[j], |row r, value j|) over rows [r0, r1) of width values.
template <typename E>
KVQ_CPU_CLONES void AbsmaxRows(const Storage<E>* x, uint64_t width, uint64_t r0,
                               uint64_t r1, AbsBits<E>* m) {
  for (uint64_t r = r0; r < r1; ++r) {
    const Storage<E>* row = x + r * width;
    for (uint64_t j = 0; j < width; ++j) m[j] = std::max(m[j], E::Abs(row[j]));
  }
}

// Quantizes values [i0, i1) of contiguous groups of n values.
template <typename E>
KVQ_CPU_CLONES void QuantizeSpan(const Storage<E>* x, uint64_t n, uint64_t i0,
                                 uint64_t i1, const float* scale,
                                 const float* inv_scale, int8_t* q) {
  for (uint64_t i = i0; i < i1;) {  // [i0, i1) may cut groups
    const uint64_t g = i / n;
    const uint64_t stop = std::min(i1, (g + 1) * n);
    QuantizeRun<E>(x + i, stop - i, scale[g], inv_scale[g], q + i);
    i = stop;
  }
}

// Quantizes rows [r0, r1) of width values; row r belongs to plane
// r / rows_per_plane, whose scales are scale[plane * width, ...).
template <typename E>
KVQ_CPU_CLONES void QuantizeRows(const Storage<E>* x, uint64_t width,
                                 uint64_t rows_per_plane, uint64_t r0,
                                 uint64_t r1, const float* scale,
                                 const float* inv_scale,
                                 const char* plane_has_subnormal_scale,
                                 int8_t* q) {
  for (uint64_t r = r0; r < r1; ++r) {
    const uint64_t p = r / rows_per_plane;
    const Storage<E>* in = x + r * width;
    const float* s = scale + p * width;
    const float* inv = inv_scale + p * width;
    int8_t* out = q + r * width;
    if (!plane_has_subnormal_scale[p]) {
      for (uint64_t j = 0; j < width; ++j) {
        out[j] = static_cast<int8_t>(ClampRound(E::ToFloat(in[j]) * inv[j]));
      }
    } else {
      for (uint64_t j = 0; j < width; ++j) {
        out[j] = QuantizeValue(E::ToFloat(in[j]), s[j], inv[j]);
      }
    }
  }
}

// Dequantizes values [i0, i1) of contiguous groups of n values.
template <typename E>
KVQ_CPU_CLONES void DequantizeSpan(const int8_t* q, uint64_t n, uint64_t i0,
                                   uint64_t i1, const float* scale,
                                   Storage<E>* y) {
  for (uint64_t i = i0; i < i1;) {
    const uint64_t g = i / n;
    const uint64_t stop = std::min(i1, (g + 1) * n);
    const float s = scale[g];
    for (uint64_t j = i; j < stop; ++j) {
      y[j] = E::FromFloat(DequantizeValue(q[j], s));
    }
    i = stop;
  }
}

// Dequantizes rows [r0, r1) of width values (see QuantizeRows).
template <typename E>
KVQ_CPU_CLONES void DequantizeRows(const int8_t* q, uint64_t width,
                                   uint64_t rows_per_plane, uint64_t r0,
                                   uint64_t r1, const float* scale,
                                   Storage<E>* y) {
  for (uint64_t r = r0; r < r1; ++r) {
    const float* s = scale + r / rows_per_plane * width;
    const int8_t* in = q + r * width;
    Storage<E>* out = y + r * width;
    for (uint64_t j = 0; j < width; ++j) {
      out[j] = E::FromFloat(DequantizeValue(in[j], s[j]));
    }
  }
}

// --- block drivers ---------------------------------------------------------

// How a block's groups lie in memory; see the file comment.
struct Geometry {
  bool columns = false;
  uint64_t group_values = 0;  // contiguous: values per group
  uint64_t planes = 0;        // columns: planes
  uint64_t rows = 0;          // columns: tokens per plane
  uint64_t width = 0;         // columns: heads * head_dim, groups per plane
};

Geometry GeometryOf(const BlockLayout& layout) {
  Geometry g;
  if (layout.spec.granularity == Granularity::kPerChannel) {
    g.columns = true;
    g.planes = layout.shape.planes;
    g.rows = layout.shape.tokens;
    g.width = uint64_t{layout.shape.heads} * layout.shape.head_dim;
  } else {
    g.group_values = layout.group_values;
  }
  return g;
}

// Per-group magnitude bits of the largest value.
template <typename E>
std::vector<AbsBits<E>> GroupAbsmaxBits(const BlockLayout& layout,
                                        const Geometry& geo,
                                        const Storage<E>* x, bool threaded) {
  std::vector<AbsBits<E>> amax(layout.groups, 0);
  if (!geo.columns) {
    const uint64_t n = geo.group_values;
    if (n < kChunkValues || !threaded) {
      const uint64_t grain =
          threaded ? std::max<uint64_t>(1, kChunkValues / n) : layout.groups;
      ParallelFor(layout.groups, grain, [&](size_t begin, size_t end) {
        AbsmaxGroups<E>(x, n, begin, end, amax.data());
      });
    } else {
      // Few large groups (per-tensor): reduce chunks, then chunk maxima.
      const uint64_t chunks = (n + kChunkValues - 1) / kChunkValues;
      std::vector<AbsBits<E>> partial(layout.groups * chunks);
      ParallelFor(partial.size(), 1, [&](size_t begin, size_t end) {
        for (size_t c = begin; c < end; ++c) {
          const uint64_t first = c / chunks * n + c % chunks * kChunkValues;
          const uint64_t count =
              std::min(kChunkValues, n - c % chunks * kChunkValues);
          AbsmaxGroups<E>(x + first, count, 0, 1, &partial[c]);
        }
      });
      for (uint64_t c = 0; c < partial.size(); ++c) {
        amax[c / chunks] = std::max(amax[c / chunks], partial[c]);
      }
    }
    return amax;
  }
  // Columns: each task takes a run of rows of one plane into its own row of
  // partial maxima; the partial rows are then reduced per plane.
  const uint64_t rows_per_task =
      threaded ? std::max<uint64_t>(1, kChunkValues / geo.width) : geo.rows;
  const uint64_t tasks_per_plane =
      (geo.rows + rows_per_task - 1) / rows_per_task;
  if (tasks_per_plane == 1) {
    for (uint64_t p = 0; p < geo.planes; ++p) {
      AbsmaxRows<E>(x + p * geo.rows * geo.width, geo.width, 0, geo.rows,
                    amax.data() + p * geo.width);
    }
    return amax;
  }
  std::vector<AbsBits<E>> partial(geo.planes * tasks_per_plane * geo.width, 0);
  ParallelFor(geo.planes * tasks_per_plane, 1, [&](size_t begin, size_t end) {
    for (size_t task = begin; task < end; ++task) {
      const uint64_t p = task / tasks_per_plane;
      const uint64_t r0 = (task % tasks_per_plane) * rows_per_task;
      const uint64_t r1 = std::min(geo.rows, r0 + rows_per_task);
      AbsmaxRows<E>(x + p * geo.rows * geo.width, geo.width, r0, r1,
                    partial.data() + task * geo.width);
    }
  });
  for (uint64_t p = 0; p < geo.planes; ++p) {
    AbsBits<E>* out = amax.data() + p * geo.width;
    for (uint64_t t = 0; t < tasks_per_plane; ++t) {
      const AbsBits<E>* m =
          partial.data() + (p * tasks_per_plane + t) * geo.width;
      for (uint64_t j = 0; j < geo.width; ++j) out[j] = std::max(out[j], m[j]);
    }
  }
  return amax;
}

template <typename E>
absl::Status QuantizeBlock(const BlockLayout& layout, const Storage<E>* x,
                           uint8_t* payload) {
  const bool threaded = layout.elements * sizeof(Storage<E>) > kParallelBytes;
  const Geometry geo = GeometryOf(layout);

  const std::vector<AbsBits<E>> amax =
      GroupAbsmaxBits<E>(layout, geo, x, threaded);
  const AbsBits<E> largest =
      amax.empty() ? 0 : *std::max_element(amax.begin(), amax.end());
  if (largest >= E::kInfBits) {
    for (uint64_t i = 0;; ++i) {
      if (E::Abs(x[i]) >= E::kInfBits) {
        return internal::NonFiniteError(i, E::ToFloat(x[i]));
      }
    }
  }

  std::vector<float> scale(layout.groups), inv_scale(layout.groups);
  for (uint64_t g = 0; g < layout.groups; ++g) {
    scale[g] = ScaleFromAbsmax(E::AbsToFloat(amax[g]));
    inv_scale[g] = InverseScale(scale[g]);
  }

  auto* q = reinterpret_cast<int8_t*>(payload);
  if (!geo.columns) {
    const uint64_t grain = threaded ? kChunkValues : layout.elements;
    ParallelFor(layout.elements, grain, [&](size_t begin, size_t end) {
      QuantizeSpan<E>(x, geo.group_values, begin, end, scale.data(),
                      inv_scale.data(), q);
    });
  } else {
    std::vector<char> subnormal(geo.planes, 0);
    for (uint64_t g = 0; g < layout.groups; ++g) {
      if (inv_scale[g] == 0.0f && scale[g] != 0.0f) {
        subnormal[g / geo.width] = 1;
      }
    }
    const uint64_t rows = geo.planes * geo.rows;
    const uint64_t grain =
        threaded ? std::max<uint64_t>(1, kChunkValues / geo.width) : rows;
    ParallelFor(rows, grain, [&](size_t begin, size_t end) {
      QuantizeRows<E>(x, geo.width, geo.rows, begin, end, scale.data(),
                      inv_scale.data(), subnormal.data(), q);
    });
  }

  std::memset(payload + layout.elements, 0,
              layout.scales_offset - layout.elements);
  std::memcpy(payload + layout.scales_offset, scale.data(),
              sizeof(float) * layout.groups);
  return absl::OkStatus();
}

template <typename E>
void DequantizeBlock(const BlockLayout& layout, const uint8_t* payload,
                     Storage<E>* y) {
  const bool threaded = layout.elements * sizeof(Storage<E>) > kParallelBytes;
  const Geometry geo = GeometryOf(layout);
  std::vector<float> scale(layout.groups);
  std::memcpy(scale.data(), payload + layout.scales_offset,
              sizeof(float) * layout.groups);
  const auto* q = reinterpret_cast<const int8_t*>(payload);

  if (!geo.columns) {
    const uint64_t grain = threaded ? kChunkValues : layout.elements;
    ParallelFor(layout.elements, grain, [&](size_t begin, size_t end) {
      DequantizeSpan<E>(q, geo.group_values, begin, end, scale.data(), y);
    });
  } else {
    const uint64_t rows = geo.planes * geo.rows;
    const uint64_t grain =
        threaded ? std::max<uint64_t>(1, kChunkValues / geo.width) : rows;
    ParallelFor(rows, grain, [&](size_t begin, size_t end) {
      DequantizeRows<E>(q, geo.width, geo.rows, begin, end, scale.data(), y);
    });
  }
}

}  // namespace

absl::Status Quantize(const BlockLayout& layout, DType dtype, const void* src,
                      uint8_t* payload) {
  if (absl::Status s = internal::CheckDType(dtype); !s.ok()) return s;
  return internal::VisitDType(dtype, [&](auto element) {
    using E = decltype(element);
    return QuantizeBlock<E>(layout, static_cast<const Storage<E>*>(src),
                            payload);
  });
}

void Dequantize(const BlockLayout& layout, const uint8_t* payload, DType dtype,
                void* dst) {
  if (!internal::CheckDType(dtype).ok()) return;
  internal::VisitDType(dtype, [&](auto element) {
    using E = decltype(element);
    DequantizeBlock<E>(layout, payload, static_cast<Storage<E>*>(dst));
  });
}

}  // namespace kvq
