// Lock-free instruments: a counter and a fixed-bucket histogram that many
// threads record into at once without a shared lock or a shared cache line.
//
// Each instrument keeps kMetricShards copies of its cells, one per cache
// line; a thread always records into the shard picked for it on first use
// (round-robin), with relaxed atomic adds. Reading sums the shards. So:
//   - recording never blocks and never waits for a reader;
//   - a read is not a snapshot of one instant, but every cell only grows, so
//     successive reads never go down (what Prometheus needs of a counter),
//     and once the recording threads are done a read is exact;
//   - a histogram's count is derived from its bucket cells in the same read,
//     so _count always equals the +Inf bucket and buckets are cumulative.
//
// Gauges are not instruments here: kvq's gauges are read from the pool at
// scrape time (see server_metrics.h).

#ifndef KVQ_SERVER_METRICS_INSTRUMENTS_H_
#define KVQ_SERVER_METRICS_INSTRUMENTS_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kvq::metrics {

inline constexpr size_t kMetricShards = 16;
inline constexpr size_t kCacheLine = 64;

// The shard this thread records into: stable for the thread's life.
size_t ThisThreadShard();

class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Add(uint64_t n = 1) {
    shards_[ThisThreadShard()].value.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t Value() const;

 private:
  struct alignas(kCacheLine) Shard {
    std::atomic<uint64_t> value{0};
  };
  std::array<Shard, kMetricShards> shards_;
};

// Upper bounds of a histogram's finite buckets, strictly increasing; the
// +Inf bucket is implicit.
using BucketBounds = std::span<const double>;

// 1, 2.5, 5 per decade from `first` up to and including `last` (both powers
// of ten), e.g. (1e-5, 10) -> 1e-5, 2.5e-5, 5e-5, 1e-4, ..., 5, 10.
std::vector<double> DecadeBuckets(int first_exponent, int last_exponent);

class Histogram {
 public:
  // Most finite buckets a histogram may have.
  static constexpr size_t kMaxBounds = 31;

  // `bounds` must outlive the histogram, be strictly increasing and finite,
  // and hold at most kMaxBounds values (checked by assert; extra bounds are
  // ignored in release builds).
  explicit Histogram(BucketBounds bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose bound is >= value (Prometheus'
  // "le" semantics). NaN is ignored: it would poison the sum forever.
  void Observe(double value);

  struct Snapshot {
    // cumulative[i] = observations <= bounds[i]; the last entry is +Inf.
    std::vector<uint64_t> cumulative;
    double sum = 0;
    uint64_t count() const {
      return cumulative.empty() ? 0 : cumulative.back();
    }
  };
  Snapshot Collect() const;

  BucketBounds bounds() const { return bounds_; }

 private:
  struct alignas(kCacheLine) Shard {
    std::atomic<double> sum{0};
    std::array<std::atomic<uint64_t>, kMaxBounds + 1> counts{};
  };
  BucketBounds bounds_;
  std::array<Shard, kMetricShards> shards_;
};

}  // namespace kvq::metrics

#endif  // KVQ_SERVER_METRICS_INSTRUMENTS_H_
