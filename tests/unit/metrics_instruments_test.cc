// Instruments: exact counts, Prometheus bucket semantics, shards per thread.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/metrics/instruments.h"

namespace kvq::metrics {
namespace {

class InstrumentsTest : public ::testing::Test {
 protected:
  InstrumentsTest() : seed_(std::random_device{}()), rng_(seed_) {}
  const unsigned seed_;
  std::mt19937_64 rng_;
};

TEST_F(InstrumentsTest, CounterSumsEveryAdd) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  Counter counter;
  EXPECT_EQ(counter.Value(), 0u);
  uint64_t expected = 0;
  std::uniform_int_distribution<uint64_t> amount(1, 1'000'000);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t n = amount(rng_);
    counter.Add(n);
    expected += n;
  }
  EXPECT_EQ(counter.Value(), expected);
}

TEST_F(InstrumentsTest, DecadeBucketsAreOneTwoAndAHalfFivePerDecade) {
  const std::vector<double> bounds = DecadeBuckets(-5, 1);
  const std::vector<double> expected = {
      1e-5,   2.5e-5, 5e-5, 1e-4,   2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
      2.5e-2, 5e-2,   1e-1, 2.5e-1, 5e-1,   1,    2.5,  5,      10};
  EXPECT_EQ(bounds, expected);
  EXPECT_TRUE(std::is_sorted(bounds.begin(), bounds.end()));
  EXPECT_LE(bounds.size(), Histogram::kMaxBounds);
}

TEST_F(InstrumentsTest, HistogramBucketsAreCumulativeWithLessOrEqualBounds) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  const std::vector<double> bounds = DecadeBuckets(-5, 1);
  Histogram histogram(bounds);
  std::vector<double> values;
  // Log-uniform over 1e-7 .. 1e3, plus every bound exactly (le is <=).
  std::uniform_real_distribution<double> exponent(-7, 3);
  for (int i = 0; i < 5000; ++i) values.push_back(std::pow(10, exponent(rng_)));
  values.insert(values.end(), bounds.begin(), bounds.end());
  values.push_back(-1.0);  // below every bound: first bucket
  values.push_back(std::numeric_limits<double>::infinity());  // +Inf only
  for (double v : values) histogram.Observe(v);
  histogram.Observe(std::numeric_limits<double>::quiet_NaN());  // ignored

  const Histogram::Snapshot snapshot = histogram.Collect();
  ASSERT_EQ(snapshot.cumulative.size(), bounds.size() + 1);
  for (size_t i = 0; i < bounds.size(); ++i) {
    const auto at_or_below = std::count_if(
        values.begin(), values.end(), [&](double v) { return v <= bounds[i]; });
    EXPECT_EQ(snapshot.cumulative[i], static_cast<uint64_t>(at_or_below))
        << "le=" << bounds[i];
  }
  EXPECT_EQ(snapshot.cumulative.back(), values.size());
  EXPECT_EQ(snapshot.count(), values.size());
  EXPECT_TRUE(std::isinf(snapshot.sum));  // the +Inf observation
}

TEST_F(InstrumentsTest, HistogramSumIsTheSumOfObservations) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  const std::vector<double> bounds = DecadeBuckets(-4, -1);
  Histogram histogram(bounds);
  std::uniform_real_distribution<double> value(0, 0.2);
  double sum = 0;
  for (int i = 0; i < 1000; ++i) {
    const double v = value(rng_);
    histogram.Observe(v);
    sum += v;
  }
  const Histogram::Snapshot snapshot = histogram.Collect();
  EXPECT_NEAR(snapshot.sum, sum, 1e-9 * sum);
  EXPECT_EQ(snapshot.count(), 1000u);
}

TEST_F(InstrumentsTest, ThreadsKeepOneShardAndSpreadOverShards) {
  std::vector<size_t> first(kMetricShards), second(kMetricShards);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kMetricShards; ++t) {
    threads.emplace_back([&, t] {
      first[t] = ThisThreadShard();
      second[t] = ThisThreadShard();
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(first, second);
  // Shards are handed out round-robin: kMetricShards threads started one
  // after another (and no other thread starting) get every shard once.
  EXPECT_EQ(std::set<size_t>(first.begin(), first.end()).size(), kMetricShards);
}

TEST_F(InstrumentsTest, ConcurrentRecordingLosesNothing) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  const std::vector<double> bounds = DecadeBuckets(-5, 1);
  Counter counter;
  Histogram histogram(bounds);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<uint64_t> added(kThreads, 0);
  std::vector<std::vector<uint64_t>> per_bucket(
      kThreads, std::vector<uint64_t>(bounds.size() + 1, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t, thread_seed = rng_()] {
      std::mt19937_64 rng(thread_seed);
      std::uniform_int_distribution<uint64_t> amount(1, 100);
      std::uniform_real_distribution<double> exponent(-6, 2);
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t n = amount(rng);
        counter.Add(n);
        added[t] += n;
        const double v = std::pow(10, exponent(rng));
        histogram.Observe(v);
        ++per_bucket[t][std::lower_bound(bounds.begin(), bounds.end(), v) -
                        bounds.begin()];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  uint64_t expected = 0;
  for (uint64_t n : added) expected += n;
  EXPECT_EQ(counter.Value(), expected);
  const Histogram::Snapshot snapshot = histogram.Collect();
  uint64_t cumulative = 0;
  for (size_t b = 0; b <= bounds.size(); ++b) {
    for (int t = 0; t < kThreads; ++t) cumulative += per_bucket[t][b];
    EXPECT_EQ(snapshot.cumulative[b], cumulative) << "bucket " << b;
  }
  EXPECT_EQ(snapshot.count(), uint64_t{kThreads} * kPerThread);
}

}  // namespace
}  // namespace kvq::metrics
