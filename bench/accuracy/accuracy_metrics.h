// Quantization error of one block, measured the ways that matter for
// attention. A block (format.h: planes x tokens x heads x head_dim) is filled
// with random values of a distribution, rounded to the input dtype, quantized
// and dequantized by kvq's CPU fast path (byte-identical to the reference and,
// as tests/gpu check, to the CUDA kernels), and compared with its input:
//
//   elementwise   max |x - x'| and relative L2 ||x - x'|| / ||x|| over the
//                 whole block;
//   scores        plane 0 is K: for random queries q (per head), the paper's
//                 "attention surrogate" mean |q.k - q.k'| over tokens, its max,
//                 and the same divided by sqrt(head_dim) (the logits attention
//                 actually uses);
//   attention     with planes >= 2, plane 1 is V: o = softmax(q K^T / sqrt(d))
//                 V with the original K, V versus the quantized K', V':
//                 ||o - o'|| / ||o|| averaged over (query, head), and the
//                 largest |o - o'|.
//
// Distributions: uniform [-1, 1] (the paper's), standard normal, and normal
// with outlier channels in K (about 1 channel in 32 of each head scaled by 20,
// as keys of real LLMs have; V stays normal).

#ifndef KVQ_BENCH_ACCURACY_ACCURACY_METRICS_H_
#define KVQ_BENCH_ACCURACY_ACCURACY_METRICS_H_

#include <cstdint>
#include <limits>
#include <string_view>

#include "absl/status/statusor.h"
#include "kernels/format.h"

namespace kvq::bench {

enum class Distribution : uint8_t { kUniform, kGaussian, kOutlierChannels };
std::string_view DistributionName(Distribution d);  // "uniform", ...

struct AccuracyCase {
  BlockShape shape;
  DType dtype = DType::kFp32;
  QuantSpec spec;
  Distribution distribution = Distribution::kUniform;
  uint32_t queries = 8;  // per head
  uint64_t seed = 1;
};

struct AccuracyResult {
  static constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
  double max_abs_err = kNone;
  double rel_l2 = kNone;
  double qk_mean_abs_err = kNone;        // mean |q.k - q.k'|
  double qk_max_abs_err = kNone;         // max |q.k - q.k'|
  double score_mean_abs_err = kNone;     // mean |q.k - q.k'| / sqrt(d)
  double attn_out_rel_l2 = kNone;        // planes >= 2 only
  double attn_out_max_abs_err = kNone;   // planes >= 2 only
  double seconds = 0;                    // wall time of the whole case
};

// Runs one case. Fails only if kvq refuses the block (e.g. a group size that
// does not divide head_dim).
absl::StatusOr<AccuracyResult> MeasureAccuracy(const AccuracyCase& c);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_ACCURACY_ACCURACY_METRICS_H_
