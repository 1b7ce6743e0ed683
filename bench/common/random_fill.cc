#include "bench/common/random_fill.h"

#include <cmath>

namespace kvq::bench {

void FillUniform(float* out, uint64_t n, uint64_t seed, float lo, float hi) {
  const uint64_t key = Mix64(seed);
  const float width = hi - lo;
  ParallelRanges(n, [=](uint64_t begin, uint64_t end) {
    for (uint64_t i = begin; i < end; ++i) {
      out[i] = lo + width * Unit24(Mix64(key ^ i));
    }
  });
}

void FillGaussian(float* out, uint64_t n, uint64_t seed) {
  const uint64_t key = Mix64(seed ^ 0x6a09e667f3bcc909ull);
  ParallelRanges(n, [=](uint64_t begin, uint64_t end) {
    for (uint64_t i = begin; i < end; ++i) {
      const uint64_t bits = Mix64(key ^ i);
      // Two 24-bit uniforms from one draw; u1 in (0, 1] so log is finite.
      const double u1 = (static_cast<double>(bits >> 40) + 1.0) * 0x1p-24;
      const double u2 = static_cast<double>((bits >> 16) & 0xffffff) * 0x1p-24;
      out[i] = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) *
                                  std::cos(6.283185307179586 * u2));
    }
  });
}

}  // namespace kvq::bench
