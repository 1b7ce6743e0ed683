#include "server/metrics/instruments.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kvq::metrics {

size_t ThisThreadShard() {
  static std::atomic<size_t> next_shard{0};
  thread_local const size_t shard =
      next_shard.fetch_add(1, std::memory_order_relaxed) % kMetricShards;
  return shard;
}

uint64_t Counter::Value() const {
  uint64_t total = 0;
  for (const Shard& shard : shards_) {
    total += shard.value.load(std::memory_order_relaxed);
  }
  return total;
}

std::vector<double> DecadeBuckets(int first_exponent, int last_exponent) {
  std::vector<double> bounds;
  for (int e = first_exponent; e <= last_exponent; ++e) {
    for (const char* mantissa : {"1", "2.5", "5"}) {
      if (e == last_exponent && mantissa[0] != '1') break;
      // Parsed from the decimal text so that each bound is the double
      // nearest to it and prints as written ("2.5e-05").
      char text[32];
      std::snprintf(text, sizeof(text), "%se%d", mantissa, e);
      bounds.push_back(std::strtod(text, nullptr));
    }
  }
  return bounds;
}

Histogram::Histogram(BucketBounds bounds) : bounds_(bounds) {
  assert(bounds.size() <= kMaxBounds);
  assert(std::is_sorted(bounds.begin(), bounds.end()));
  if (bounds_.size() > kMaxBounds) bounds_ = bounds_.first(kMaxBounds);
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  const size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  Shard& shard = shards_[ThisThreadShard()];
  shard.counts[bucket].fetch_add(1, std::memory_order_relaxed);
  shard.sum.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Collect() const {
  Snapshot snapshot;
  snapshot.cumulative.assign(bounds_.size() + 1, 0);
  for (const Shard& shard : shards_) {
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      snapshot.cumulative[i] += shard.counts[i].load(std::memory_order_relaxed);
    }
    snapshot.sum += shard.sum.load(std::memory_order_relaxed);
  }
  for (size_t i = 1; i < snapshot.cumulative.size(); ++i) {
    snapshot.cumulative[i] += snapshot.cumulative[i - 1];
  }
  return snapshot;
}

}  // namespace kvq::metrics
