// Fast, reproducible random inputs for the benchmarks. Value i of a fill
// depends only on (seed, i) (a counter-based generator: splitmix64 of the
// index), so large arrays are filled by all cores and the same seed gives the
// same data on any machine and thread count.

#ifndef KVQ_BENCH_COMMON_RANDOM_FILL_H_
#define KVQ_BENCH_COMMON_RANDOM_FILL_H_

#include <cstdint>

namespace kvq::bench {

// splitmix64's output function: a bijective 64-bit mix.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 24 random bits (exact in float).
inline float Unit24(uint64_t bits) {
  return static_cast<float>(bits >> 40) * 0x1p-24f;
}

// out[i] uniform in [lo, hi), i < n.
void FillUniform(float* out, uint64_t n, uint64_t seed, float lo = -1.0f,
                 float hi = 1.0f);

// out[i] standard normal (Box-Muller on two 24-bit uniforms), i < n.
void FillGaussian(float* out, uint64_t n, uint64_t seed);

// Runs fn(begin, end) over [0, n) split across the machine's cores.
template <typename Fn>
void ParallelRanges(uint64_t n, Fn fn);

}  // namespace kvq::bench

#include <algorithm>
#include <thread>
#include <vector>

namespace kvq::bench {

template <typename Fn>
void ParallelRanges(uint64_t n, Fn fn) {
  const uint64_t threads = std::max(1u, std::thread::hardware_concurrency());
  constexpr uint64_t kMinPerThread = uint64_t{1} << 16;
  const uint64_t parts =
      std::max<uint64_t>(1, std::min(threads, n / kMinPerThread));
  if (parts == 1) {
    fn(uint64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  for (uint64_t p = 0; p < parts; ++p) {
    pool.emplace_back([&, p] { fn(n * p / parts, n * (p + 1) / parts); });
  }
  for (auto& t : pool) t.join();
}

}  // namespace kvq::bench

#endif  // KVQ_BENCH_COMMON_RANDOM_FILL_H_
