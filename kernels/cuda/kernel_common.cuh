// Device helpers shared by the production kernels: magnitudes as integer
// bits, team / CTA max reductions, quantizing a vector with quant_math.h
// (QuantizeVec, whose bytes equal QuantizeValue's, packed for StoreQuantized;
// it skips the clamp where the scales are the values' own: RoundBits)
// and back (DequantizeVec, DequantizeValue's floats), and the per-block
// outputs (absmax, non-finite flag, payload padding).
//
// Magnitudes are reduced as the bit patterns of |x| (sign cleared): for
// non-negative floats integer order is float order, so the max is exact and
// order-independent, atomicMax on the bits works, and NaN (0x7f800001 and
// up) and Inf (0x7f800000) compare above every finite value, so one compare
// of the group's max detects non-finite input.

#ifndef KVQ_KERNELS_CUDA_KERNEL_COMMON_CUH_
#define KVQ_KERNELS_CUDA_KERNEL_COMMON_CUH_

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/addressing.cuh"
#include "kernels/cuda/dtype_traits.cuh"
#include "kernels/quant_math.h"

namespace kvq::cuda::internal {

inline constexpr uint32_t kInfBits = 0x7f800000u;

// Where a quantize launch reports per-block results; either may be null.
struct QuantizeOutputs {
  float* absmax = nullptr;       // float[batch]: max |x| of each block
  uint32_t* nonfinite = nullptr;  // set non-zero if any input is NaN / Inf
  // True when several CTAs contribute to one block's absmax: the host then
  // zeroes absmax first and kernels combine with atomicMax.
  bool atomic_absmax = false;
};

__device__ __forceinline__ uint32_t AbsBits(float x) {
  return __float_as_uint(x) & 0x7fffffffu;
}

// Max over aligned runs of `width` lanes (a power of two <= 32). Every lane
// of the warp must call it.
__device__ __forceinline__ uint32_t SubWarpMax(uint32_t v, uint32_t width) {
  for (uint32_t offset = width >> 1; offset > 0; offset >>= 1) {
    v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Max over the `warps` warps from `first_warp` on, returned to every thread
// of them. Every thread of the CTA must call it (blockDim.x a multiple of 32,
// <= 1024); `scratch` holds 32 words.
__device__ __forceinline__ uint32_t WarpRangeMax(uint32_t v,
                                                 uint32_t first_warp,
                                                 uint32_t warps,
                                                 uint32_t* scratch) {
  v = SubWarpMax(v, 32);
  __syncthreads();  // scratch may still be read from the previous call
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  v = 0;
  for (uint32_t w = 0; w < warps; ++w) v = max(v, scratch[first_warp + w]);
  return v;
}

// Max over the whole CTA, returned to every thread; every thread must call it.
__device__ __forceinline__ uint32_t CtaMax(uint32_t v, uint32_t* scratch) {
  return WarpRangeMax(v, 0, blockDim.x >> 5, scratch);
}

// Max over aligned teams of `team` threads (a power of two dividing
// blockDim.x), returned to every thread of each team. Every thread of the CTA
// must call it; `scratch` holds 32 words (unused for teams of <= 32).
__device__ __forceinline__ uint32_t TeamMax(uint32_t v, uint32_t team,
                                            uint32_t* scratch) {
  if (team <= 32) return SubWarpMax(v, team);
  const uint32_t warps = team >> 5;
  return WarpRangeMax(v, (threadIdx.x >> 5) & ~(warps - 1), warps, scratch);
}

// Records the max magnitude `bits` of (part of) block `block`: one thread
// per CTA calls it.
__device__ __forceinline__ void ReportBlockMax(const QuantizeOutputs& out,
                                               uint32_t block, uint32_t bits) {
  if (out.nonfinite != nullptr && bits >= kInfBits) *out.nonfinite = 1;
  if (out.absmax != nullptr) {
    if (out.atomic_absmax) {
      atomicMax(reinterpret_cast<unsigned int*>(out.absmax + block), bits);
    } else {
      out.absmax[block] = __uint_as_float(bits);
    }
  }
}

// Combines `absmax_bits` (|x| bits of a part of a group) into the group's
// scale slot: atomicMax of ScaleFromAbsmax's bits. ScaleFromAbsmax is a
// correctly rounded division by 127, monotone in absmax, so the max of the
// parts' scales is the scale of the group's max, and the slot (zeroed
// first) holds the final scale once every part is in.
__device__ __forceinline__ void CombineScale(uint32_t* slot,
                                             uint32_t absmax_bits) {
  atomicMax(reinterpret_cast<unsigned int*>(slot),
            __float_as_uint(ScaleFromAbsmax(__uint_as_float(absmax_bits))));
}

// The n-th item a CTA takes in the second pass of a two-pass quantize, of
// `total`: the items in reverse. The first pass read the input front to
// back, so its tail may still be in L2 when the second pass starts; taken
// first, those items read it from there instead of DRAM. Measured on an
// H200 (60 MiB of L2), quantize of 64 MiB FP32 blocks: per-channel 86-87%
// -> 100% of copy, per-tensor 90-91% -> 104-105%; 256 MiB and up within a
// point of forward order. Within one launch only: a batch split over
// launches (ForEachSubBatch) reverses each launch's items.
__device__ __forceinline__ uint32_t SecondPassItem(uint32_t n,
                                                   uint32_t total) {
  return total - 1 - n;
}

// Magnitudes of a vector, packed as the raw storage allows: a float's
// |x| bits, or two 16-bit |x| patterns per word for FP16 / BF16 (integer
// order of a 16-bit magnitude pattern is value order too, NaN and Inf on
// top). Taking maxima on packed patterns converts nothing until the end,
// which keeps the loaded vectors as the only live registers.
template <typename T, int kN>
struct Magnitudes {
  static constexpr bool kPacked = sizeof(T) == 2 && kN % 2 == 0;
  static constexpr int kWords = kPacked ? kN / 2 : kN;
  uint32_t w[kWords];

  __device__ __forceinline__ Magnitudes() {
#pragma unroll
    for (int i = 0; i < kWords; ++i) w[i] = 0;
  }

  __device__ __forceinline__ void Add(const Vec<T, kN>& x) {
    if constexpr (kPacked) {
#pragma unroll
      for (int i = 0; i < kWords; ++i) {
        w[i] = __vmaxu2(w[i], x.w[i] & 0x7fff7fffu);
      }
    } else if constexpr (sizeof(T) == 2) {
#pragma unroll
      for (int i = 0; i < kWords; ++i) w[i] = max(w[i], x.v[i].bits & 0x7fffu);
    } else {
#pragma unroll
      for (int i = 0; i < kWords; ++i) w[i] = max(w[i], AbsBits(x.v[i]));
    }
  }

  // |x| bits (of the float value) of element e's running max.
  __device__ __forceinline__ uint32_t Element(int e) const {
    if constexpr (kPacked) {
      return FloatBitsOf((w[e / 2] >> (16 * (e % 2))) & 0xffffu);
    } else if constexpr (sizeof(T) == 2) {
      return FloatBitsOf(w[e]);
    } else {
      return w[e];
    }
  }

  // |x| bits of the max over all elements.
  __device__ __forceinline__ uint32_t Max() const {
    uint32_t m = 0;
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      // Packed words hold two magnitudes: the max is per half, never of the
      // 32-bit words (which would let a high half hide a larger low half).
      m = kPacked ? __vmaxu2(m, w[i]) : max(m, w[i]);
    }
    if constexpr (kPacked) {
      return FloatBitsOf(max(m & 0xffffu, m >> 16));
    } else if constexpr (sizeof(T) == 2) {
      return FloatBitsOf(m);
    } else {
      return m;
    }
  }

 private:
  // Float bits of a 16-bit magnitude pattern (exact widening).
  static __device__ __forceinline__ uint32_t FloatBitsOf(uint32_t h) {
    if constexpr (sizeof(T) == 2 && std::is_same_v<T, Bf16>) {
      return h << 16;
    } else {
      return __float_as_uint(
          __half2float(__ushort_as_half(static_cast<unsigned short>(h))));
    }
  }
};

// kN int8 results in their stored form. A multiple of 4 is kept as 32-bit
// words (element 4i + k in byte k of word i: memory order), so that the
// results stay packed from the PRMTs that build them to the store; held as
// Vec<int8_t, kN> instead, they are split into bytes and repacked.
template <int kN>
struct QuantizedVec {
  Vec<int8_t, kN> bytes;
};
template <int kN>
  requires(kN % 4 == 0)
struct QuantizedVec<kN> {
  Vec<uint32_t, kN / 4> words;
};

// Stores q at p, which is aligned to kN bytes (as for Vec<int8_t, kN>).
template <int kN>
__device__ __forceinline__ void StoreQuantized(int8_t* p,
                                               const QuantizedVec<kN>& q) {
  if constexpr (kN % 4 == 0) {
    StoreVec<uint32_t, kN / 4>(reinterpret_cast<uint32_t*>(p), q.words);
  } else {
    StoreVec<int8_t, kN>(p, q.bytes);
  }
}

// Loads what StoreQuantized stores.
template <int kN>
__device__ __forceinline__ QuantizedVec<kN> LoadQuantized(const int8_t* p) {
  QuantizedVec<kN> q;
  if constexpr (kN % 4 == 0) {
    q.words = LoadVec<uint32_t, kN / 4>(reinterpret_cast<const uint32_t*>(p));
  } else {
    q.bytes = LoadVec<int8_t, kN>(p);
  }
  return q;
}

// DequantizeValue of each element of q, scale[e] for element e, through
// Int8ToFloat: a word's sign bits flip in one operation, then each element
// takes one PRMT and one addition where I2F would take a quarter-rate slot.
template <int kN>
__device__ __forceinline__ void DequantizeVec(const QuantizedVec<kN>& q,
                                              const float* scale, float* y) {
  if constexpr (kN % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kN / 4; ++i) {
      const uint32_t biased = BiasInt8x4(q.words.v[i]);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        y[4 * i + k] = BiasedInt8ToFloat(biased, k) * scale[4 * i + k];
      }
    }
  } else {
#pragma unroll
    for (int e = 0; e < kN; ++e) y[e] = Int8ToFloat(q.bytes.v[e]) * scale[e];
  }
}

// The kN results whose bits (ClampRoundBits: the int8 in the low byte) are
// bits_of(e), packed as they are computed, four at a time, so that a
// vector's results never all wait in registers at once.
template <int kN, class BitsOf>
__device__ __forceinline__ QuantizedVec<kN> PackQuantized(BitsOf bits_of) {
  QuantizedVec<kN> q;
  if constexpr (kN % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kN / 4; ++i) {
      q.words.v[i] = PackLowBytes(bits_of(4 * i), bits_of(4 * i + 1),
                                  bits_of(4 * i + 2), bits_of(4 * i + 3));
    }
  } else {
#pragma unroll
    for (int e = 0; e < kN; ++e) q.bytes.v[e] = static_cast<int8_t>(bits_of(e));
  }
  return q;
}

// Which values a quantize sees against its scales.
enum class ScaleSource {
  kOwn,    // the scales were derived from these very values (their absmax):
           // no quotient reaches the clamp (RoundBits), which is skipped
  kGiven,  // scales from the payload: the clamp decides quotients past 127
};

// ClampRoundBits(v), or RoundBits(v) where that is the same (kOwn).
template <ScaleSource kSource>
__device__ __forceinline__ uint32_t RoundedBits(float v) {
  if constexpr (kSource == ScaleSource::kOwn) {
    return RoundBits(v);
  } else {
    return ClampRoundBits(v);
  }
}

// Quantizes kN values that share one scale: QuantizeValue's bytes, with its
// branch on the kind of scale taken once for the vector. First the case
// without the branch, for callers that know the scale is normal.
template <ScaleSource kSource, typename T, int kN>
__device__ __forceinline__ QuantizedVec<kN> QuantizeVecNormalScale(
    const Vec<T, kN>& x, float inv_scale) {
  return PackQuantized<kN>(
      [&](int e) { return RoundedBits<kSource>(Get(x, e) * inv_scale); });
}

// QuantizeVecNormalScale where the scale is normal (inv_scale != 0), else
// the division or the zeros that QuantizeValue takes.
template <ScaleSource kSource, typename T, int kN>
__device__ __forceinline__ QuantizedVec<kN> QuantizeVec(const Vec<T, kN>& x,
                                                        float scale,
                                                        float inv_scale) {
  if (inv_scale != 0.0f) {  // normal scale: the common case
    return QuantizeVecNormalScale<kSource>(x, inv_scale);
  }
  if (scale != 0.0f) {  // subnormal scale: the reciprocal would overflow
    return PackQuantized<kN>(
        [&](int e) { return ClampRoundBits(Get(x, e) / scale); });
  }
  return PackQuantized<kN>([](int) { return 0u; });  // zero scale: zeros
}

// Quantizes kN values with one scale each. When every scale is normal (all
// but the rarest blocks), one test covers the vector and each value takes
// the multiplication; otherwise each value takes QuantizeValue's branches.
template <ScaleSource kSource, typename T, int kN>
__device__ __forceinline__ QuantizedVec<kN> QuantizeVec(
    const Vec<T, kN>& x, const float* scale, const float* inv_scale) {
  bool all_normal = true;
#pragma unroll
  for (int e = 0; e < kN; ++e) all_normal &= inv_scale[e] != 0.0f;
  if (all_normal) {
    return PackQuantized<kN>([&](int e) {
      return RoundedBits<kSource>(Get(x, e) * inv_scale[e]);
    });
  }
  return PackQuantized<kN>(
      [&](int e) { return QuantizeBits(Get(x, e), scale[e], inv_scale[e]); });
}

// kN consecutive scales starting at scale index g (g a multiple of kN when
// kN > 1), read or written in 16-byte pieces: the scale region starts
// 16-byte aligned, so every piece is aligned and inside one page.
template <int kN, class Payload>
__device__ __forceinline__ void LoadScales(const Payload& payload,
                                           uint64_t scales_offset, uint64_t g,
                                           float* scale) {
  constexpr int kPiece = kN < 4 ? kN : 4;
#pragma unroll
  for (int e = 0; e < kN; e += kPiece) {
    const Vec<float, kPiece> s = LoadVec<float, kPiece>(
        reinterpret_cast<const float*>(
            payload.At(scales_offset + 4 * (g + e))));
#pragma unroll
    for (int k = 0; k < kPiece; ++k) scale[e + k] = s.v[k];
  }
}

template <int kN, class Payload>
__device__ __forceinline__ void StoreScales(const Payload& payload,
                                            uint64_t scales_offset, uint64_t g,
                                            const float* scale) {
  constexpr int kPiece = kN < 4 ? kN : 4;
#pragma unroll
  for (int e = 0; e < kN; e += kPiece) {
    Vec<float, kPiece> s;
#pragma unroll
    for (int k = 0; k < kPiece; ++k) s.v[k] = scale[e + k];
    StoreVec<float, kPiece>(
        reinterpret_cast<float*>(payload.At(scales_offset + 4 * (g + e))), s);
  }
}

// Zeroes the (at most 15) padding bytes between the values and the scales.
template <class Payload>
__device__ __forceinline__ void WritePadding(const Payload& payload,
                                             uint64_t elements,
                                             uint64_t scales_offset) {
  for (uint64_t b = elements; b < scales_offset; ++b) *payload.At(b) = 0;
}

}  // namespace kvq::cuda::internal

#endif  // KVQ_KERNELS_CUDA_KERNEL_COMMON_CUH_
