#include "bench/accuracy/accuracy_metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "bench/common/random_fill.h"
#include "kernels/float_convert.h"
#include "kernels/quantize.h"
#include "kernels/status_macros.h"

namespace kvq::bench {
namespace {

constexpr float kOutlierScale = 20.0f;
constexpr uint64_t kOutlierOneIn = 32;

// Index of (plane, token, head, channel) in block order.
struct Indexer {
  BlockShape s;
  uint64_t operator()(uint64_t p, uint64_t t, uint64_t h, uint64_t d) const {
    return ((p * s.tokens + t) * s.heads + h) * s.head_dim + d;
  }
};

bool IsOutlierChannel(uint64_t seed, uint32_t head, uint32_t dim,
                      uint32_t head_dim) {
  if (dim == (head * 13u) % head_dim) return true;  // at least one per head
  return Mix64(seed ^ (uint64_t{head} << 32 | dim)) % kOutlierOneIn == 0;
}

// The input values, before rounding to the dtype.
std::vector<float> Generate(const AccuracyCase& c) {
  const uint64_t n = c.shape.elements();
  std::vector<float> x(n);
  if (c.distribution == Distribution::kUniform) {
    FillUniform(x.data(), n, c.seed);
    return x;
  }
  FillGaussian(x.data(), n, c.seed);
  if (c.distribution == Distribution::kOutlierChannels) {
    const Indexer at{c.shape};
    const uint64_t key = Mix64(c.seed ^ 0x5bd1e995u);
    for (uint32_t h = 0; h < c.shape.heads; ++h) {
      for (uint32_t d = 0; d < c.shape.head_dim; ++d) {
        if (!IsOutlierChannel(key, h, d, c.shape.head_dim)) continue;
        for (uint32_t t = 0; t < c.shape.tokens; ++t) {
          x[at(0, t, h, d)] *= kOutlierScale;  // plane 0 = K only
        }
      }
    }
  }
  return x;
}

// Encodes x in `dtype` (round to nearest even) and replaces x by the values
// the encoding holds exactly, so errors are measured against what kvq saw.
std::vector<uint8_t> Encode(DType dtype, std::vector<float>& x) {
  std::vector<uint8_t> bytes(x.size() * DTypeBytes(dtype));
  if (dtype == DType::kFp32) {
    std::memcpy(bytes.data(), x.data(), bytes.size());
    return bytes;
  }
  auto* bits = reinterpret_cast<uint16_t*>(bytes.data());
  const bool half = dtype == DType::kFp16;
  ParallelRanges(x.size(), [&](uint64_t begin, uint64_t end) {
    for (uint64_t i = begin; i < end; ++i) {
      bits[i] = half ? FloatToHalf(x[i]) : FloatToBf16(x[i]);
      x[i] = half ? HalfToFloat(bits[i]) : Bf16ToFloat(bits[i]);
    }
  });
  return bytes;
}

std::vector<float> Decode(DType dtype, const std::vector<uint8_t>& bytes) {
  std::vector<float> y(bytes.size() / DTypeBytes(dtype));
  if (dtype == DType::kFp32) {
    std::memcpy(y.data(), bytes.data(), bytes.size());
    return y;
  }
  const auto* bits = reinterpret_cast<const uint16_t*>(bytes.data());
  const bool half = dtype == DType::kFp16;
  for (uint64_t i = 0; i < y.size(); ++i) {
    y[i] = half ? HalfToFloat(bits[i]) : Bf16ToFloat(bits[i]);
  }
  return y;
}

// Query j of head h: uniform [-1, 1] for uniform data (the paper's random
// query), standard normal otherwise.
std::vector<float> Queries(const AccuracyCase& c) {
  std::vector<float> q(uint64_t{c.shape.heads} * c.queries * c.shape.head_dim);
  const uint64_t seed = Mix64(c.seed ^ 0x2545f491u);
  if (c.distribution == Distribution::kUniform) {
    FillUniform(q.data(), q.size(), seed);
  } else {
    FillGaussian(q.data(), q.size(), seed);
  }
  return q;
}

// q.k and q.k' in double, with four independent partial sums per product
// (the loop is bound by the adder's latency otherwise).
void Dots(const float* q, const float* k, const float* kq, uint32_t n,
          double* dot, double* dot_q) {
  double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
  uint32_t d = 0;
  for (; d + 4 <= n; d += 4) {
    for (int j = 0; j < 4; ++j) {
      a[j] += static_cast<double>(q[d + j]) * k[d + j];
      b[j] += static_cast<double>(q[d + j]) * kq[d + j];
    }
  }
  for (; d < n; ++d) {
    a[0] += static_cast<double>(q[d]) * k[d];
    b[0] += static_cast<double>(q[d]) * kq[d];
  }
  *dot = (a[0] + a[1]) + (a[2] + a[3]);
  *dot_q = (b[0] + b[1]) + (b[2] + b[3]);
}

void Softmax(std::vector<double>& logits) {
  const double m = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (double& l : logits) sum += (l = std::exp(l - m));
  for (double& l : logits) l /= sum;
}

}  // namespace

std::string_view DistributionName(Distribution d) {
  switch (d) {
    case Distribution::kUniform: return "uniform";
    case Distribution::kGaussian: return "gaussian";
    case Distribution::kOutlierChannels: return "outlier_channels";
  }
  return "unknown";
}

absl::StatusOr<AccuracyResult> MeasureAccuracy(const AccuracyCase& c) {
  const auto start = std::chrono::steady_clock::now();
  auto layout = MakeLayout(c.shape, c.spec);
  if (!layout.ok()) return layout.status();

  std::vector<float> x = Generate(c);
  std::vector<uint8_t> src = Encode(c.dtype, x);
  std::vector<uint8_t> payload(layout->payload_bytes);
  KVQ_RETURN_IF_ERROR(Quantize(*layout, c.dtype, src.data(), payload.data()));
  std::vector<uint8_t>().swap(src);
  std::vector<uint8_t> dst(layout->logical_bytes(c.dtype));
  Dequantize(*layout, payload.data(), c.dtype, dst.data());
  std::vector<uint8_t>().swap(payload);
  const std::vector<float> y = Decode(c.dtype, dst);
  std::vector<uint8_t>().swap(dst);

  AccuracyResult r;
  double max_abs = 0, err2 = 0, ref2 = 0;
  for (uint64_t i = 0; i < x.size(); ++i) {
    const double e = static_cast<double>(x[i]) - y[i];
    max_abs = std::max(max_abs, std::abs(e));
    err2 += e * e;
    ref2 += static_cast<double>(x[i]) * x[i];
  }
  r.max_abs_err = max_abs;
  r.rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;

  const BlockShape& s = c.shape;
  const Indexer at{s};
  const std::vector<float> q = Queries(c);
  const uint32_t nq = c.queries;
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  const bool attention = s.planes >= 2;
  double qk_sum = 0, qk_max = 0, attn_rel_sum = 0, attn_max = 0;
  uint64_t qk_count = 0, attn_count = 0;
  std::vector<double> logits, logits_q;
  for (uint32_t h = 0; h < s.heads; ++h) {
    if (attention) {
      logits.assign(uint64_t{nq} * s.tokens, 0.0);
      logits_q.assign(uint64_t{nq} * s.tokens, 0.0);
    }
    for (uint32_t t = 0; t < s.tokens; ++t) {
      const float* k = &x[at(0, t, h, 0)];
      const float* kq = &y[at(0, t, h, 0)];
      for (uint32_t j = 0; j < nq; ++j) {
        const float* qj = &q[(uint64_t{h} * nq + j) * s.head_dim];
        double dot, dot_q;
        Dots(qj, k, kq, s.head_dim, &dot, &dot_q);
        const double diff = std::abs(dot - dot_q);
        qk_sum += diff;
        qk_max = std::max(qk_max, diff);
        ++qk_count;
        if (attention) {
          logits[uint64_t{j} * s.tokens + t] = dot * inv_sqrt_d;
          logits_q[uint64_t{j} * s.tokens + t] = dot_q * inv_sqrt_d;
        }
      }
    }
    if (!attention) continue;
    std::vector<double> o(s.head_dim), o_q(s.head_dim);
    for (uint32_t j = 0; j < nq; ++j) {
      std::vector<double> p(logits.begin() + uint64_t{j} * s.tokens,
                            logits.begin() + uint64_t{j + 1} * s.tokens);
      std::vector<double> p_q(logits_q.begin() + uint64_t{j} * s.tokens,
                              logits_q.begin() + uint64_t{j + 1} * s.tokens);
      Softmax(p);
      Softmax(p_q);
      std::fill(o.begin(), o.end(), 0.0);
      std::fill(o_q.begin(), o_q.end(), 0.0);
      for (uint32_t t = 0; t < s.tokens; ++t) {
        const float* v = &x[at(1, t, h, 0)];
        const float* vq = &y[at(1, t, h, 0)];
        for (uint32_t d = 0; d < s.head_dim; ++d) {
          o[d] += p[t] * v[d];
          o_q[d] += p_q[t] * vq[d];
        }
      }
      double e2 = 0, o2 = 0;
      for (uint32_t d = 0; d < s.head_dim; ++d) {
        const double e = o[d] - o_q[d];
        e2 += e * e;
        o2 += o[d] * o[d];
        attn_max = std::max(attn_max, std::abs(e));
      }
      attn_rel_sum += o2 > 0 ? std::sqrt(e2 / o2) : 0.0;
      ++attn_count;
    }
  }
  if (qk_count > 0) {
    r.qk_mean_abs_err = qk_sum / qk_count;
    r.qk_max_abs_err = qk_max;
    r.score_mean_abs_err = r.qk_mean_abs_err * inv_sqrt_d;
  }
  if (attn_count > 0) {
    r.attn_out_rel_l2 = attn_rel_sum / attn_count;
    r.attn_out_max_abs_err = attn_max;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                            start)
                  .count();
  return r;
}

}  // namespace kvq::bench
