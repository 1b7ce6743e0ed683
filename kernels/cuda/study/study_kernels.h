// The seed paper's four CUDA kernel variants, rebuilt for measurement.
//
// The paper quantizes an FP32 key matrix K (tokens x dims, row-major, dims
// fastest) to INT8 with one symmetric scale per channel:
//
//   s_d = max_t |K[t, d]| / 127,   Q[t, d] = round-half-even(K[t, d] / s_d),
//
// clamped to [-127, 127], and reconstructs K'[t, d] = Q[t, d] * s_d. It
// compares four implementations of the elementwise kernels; these are honest
// versions of each idea, plus our own on-GPU computation of the scales (the
// paper computed them on the CPU and timed only the elementwise kernel):
//
//   kNaive       one thread per element, flat index, channel = index % dims;
//                scales by one atomicMax per element.
//   kTiled       32 x 32 tiles staged through shared memory (input tile and
//                the tile's 32 scales); scales by a shared-memory column
//                reduction per tile, one atomicMax per column per tile.
//   kCoarsened   each thread owns one channel over 16 consecutive tokens, so
//                the scale and its reciprocal are loaded once for 16 values;
//                scales: one register absmax, one atomicMax per thread.
//   kVectorized  16-byte accesses: each thread moves 16 consecutive elements
//                (4 x float4 in, one 16-byte int8 store out; dequantize the
//                reverse); scales: float4 loads of 4 channels over 16 tokens.
//                Needs 16-byte-aligned pointers (cudaMalloc gives 256); dims
//                need not be a multiple of 4 or 16 (unaligned rows fall back
//                to scalar loads in the scales kernel only).
//
// Arithmetic is kernels/quant_math.h, so for every variant Q and s equal
// byte for byte kvq's CPU reference (kernels/quantize.h) for Granularity
// kPerChannel with planes = 1, heads = 1, tokens = T, head_dim = D, and the
// dequantized floats equal DequantizeReference's (tested in
// tests/gpu/study_kernels_test.cc).
//
// These are measurement kernels, not the production path
// (kernels/cuda/quantize_cuda.h): inputs are assumed finite (NaN/Inf are not
// detected), and only FP32 is offered, as in the paper.
//
// Every function is asynchronous on `stream` (a cudaStream_t; nullptr is the
// legacy default stream), takes device pointers, and returns INVALID_ARGUMENT
// for a bad shape or misaligned pointer, or INTERNAL with the CUDA error string
// when a launch fails. This header needs no CUDA headers.

#ifndef KVQ_KERNELS_CUDA_STUDY_STUDY_KERNELS_H_
#define KVQ_KERNELS_CUDA_STUDY_STUDY_KERNELS_H_

#include <array>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvq::cuda::study {

using Stream = void*;  // a cudaStream_t

enum class Variant : uint8_t { kNaive, kTiled, kCoarsened, kVectorized };

inline constexpr std::array<Variant, 4> kAllVariants = {
    Variant::kNaive, Variant::kTiled, Variant::kCoarsened,
    Variant::kVectorized};

std::string_view VariantName(Variant v);  // "naive", "tiled", ...
absl::StatusOr<Variant> ParseVariant(std::string_view name);

// A T x D FP32 matrix (row-major, D fastest) and its per-channel INT8 form.
struct StudyShape {
  uint32_t tokens = 0;  // T >= 1
  uint32_t dims = 0;    // D >= 1
  uint64_t elements() const { return uint64_t{tokens} * dims; }
};

// Scales only: scales[d] = max_t |k[t, d]| / 127 for d < D (float[D]).
absl::Status ComputeChannelScales(Variant v, StudyShape shape, const float* k,
                                  float* scales, Stream stream);

// Elementwise quantize with scales already computed (the paper's timed
// kernel): q[t, d] = round-half-even(k[t, d] / scales[d]), clamped.
absl::Status QuantizeWithScales(Variant v, StudyShape shape, const float* k,
                                const float* scales, int8_t* q, Stream stream);

// ComputeChannelScales then QuantizeWithScales, same variant.
absl::Status Quantize(Variant v, StudyShape shape, const float* k,
                      float* scales, int8_t* q, Stream stream);

// out[t, d] = q[t, d] * scales[d].
absl::Status Dequantize(Variant v, StudyShape shape, const int8_t* q,
                        const float* scales, float* out, Stream stream);

}  // namespace kvq::cuda::study

#endif  // KVQ_KERNELS_CUDA_STUDY_STUDY_KERNELS_H_
