// Many threads record while Render() runs in a loop: every scrape parses,
// counters never go down between scrapes, and the final totals are exact.

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/metrics/server_metrics.h"
#include "tests/unit/metrics_exposition_parser.h"

namespace kvq {
namespace {

using ::kvq::testing::Exposition;
using ::kvq::testing::ParsedFamily;

// What one recording thread did.
struct Tally {
  uint64_t puts = 0, received = 0, hits = 0, misses = 0, sent = 0;
  uint64_t lookup_keys = 0, present = 0, deletes = 0, put_errors = 0;
  uint64_t rpcs = 0, stages = 0, quant = 0;
};

// Every counter sample and histogram bucket/count, keyed by series.
std::map<std::string, double> MonotonicSeries(const Exposition& e) {
  std::map<std::string, double> series;
  for (const auto& [name, family] : e.families()) {
    if (family.type != "counter" && family.type != "histogram") continue;
    for (const auto& sample : family.samples) {
      if (sample.name.ends_with("_sum")) continue;
      std::string key = sample.name;
      for (const auto& [label, value] : sample.labels) {
        key += "," + label + "=" + value;
      }
      series[key] = sample.value;
    }
  }
  return series;
}

TEST(MetricsConcurrencyTest, ScrapesParseCountersGrowAndTotalsAreExact) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  PoolStats pool;
  pool.page_bytes = 65536;
  pool.pages_total = 1024;
  ServerMetrics metrics(BuildInfo{"0.1.0", "test", "cpu", "test"},
                        [&] { return pool; });

  constexpr int kThreads = 8;
  constexpr int kEventsPerThread = 200000;
  std::vector<Tally> tallies(kThreads);
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t, thread_seed = seed + t] {
      std::mt19937_64 rng(thread_seed);
      const auto uniform = [&](uint64_t lo, uint64_t hi) {
        return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
      };
      Tally& tally = tallies[t];
      for (int i = 0; i < kEventsPerThread; ++i) {
        switch (uniform(0, 8)) {
          case 0: {
            const uint64_t bytes = uniform(1, 1 << 20);
            metrics.CountPut(static_cast<DType>(uniform(1, 3)), bytes);
            ++tally.puts;
            tally.received += bytes;
            break;
          }
          case 1: {
            const uint64_t bytes = uniform(1, 1 << 20);
            metrics.CountGetHit(bytes);
            ++tally.hits;
            tally.sent += bytes;
            break;
          }
          case 2:
            metrics.CountGetMiss();
            ++tally.misses;
            break;
          case 3: {
            const uint64_t keys = uniform(1, 32);
            const uint64_t present = uniform(0, keys);
            metrics.CountLookupKeys(keys, present);
            tally.lookup_keys += keys;
            tally.present += present;
            break;
          }
          case 4: {
            const uint64_t n = uniform(0, 4);
            metrics.CountDeletes(n);
            tally.deletes += n;
            break;
          }
          case 5:
            metrics.CountPutError(8);
            ++tally.put_errors;
            break;
          case 6:
            metrics.ObserveRpc(static_cast<Rpc>(uniform(0, 4)), 0,
                               1e-6 * uniform(1, 10000000));
            ++tally.rpcs;
            break;
          case 7:
            metrics.ObserveStage(static_cast<Stage>(uniform(0, 5)),
                                 1e-6 * uniform(1, 1000000));
            ++tally.stages;
            break;
          case 8:
            metrics.ObserveQuantError(1e-5 * uniform(1, 10000));
            ++tally.quant;
            break;
        }
      }
      running.fetch_sub(1);
    });
  }

  // Scrape until the recorders finish (and at least a few times).
  int scrapes = 0;
  std::map<std::string, double> previous;
  while (running.load() > 0 || scrapes < 3) {
    const std::string text = metrics.Render();
    absl::StatusOr<Exposition> parsed = Exposition::Parse(text);
    ASSERT_TRUE(parsed.ok()) << "scrape " << scrapes << ": " << parsed.status();
    std::map<std::string, double> current = MonotonicSeries(*parsed);
    for (const auto& [key, value] : previous) {
      const auto it = current.find(key);
      ASSERT_NE(it, current.end()) << key << " disappeared";
      ASSERT_GE(it->second, value) << key << " went down";
    }
    previous = std::move(current);
    ++scrapes;
  }
  for (std::thread& thread : threads) thread.join();

  Tally sum;
  for (const Tally& t : tallies) {
    sum.puts += t.puts;
    sum.received += t.received;
    sum.hits += t.hits;
    sum.misses += t.misses;
    sum.sent += t.sent;
    sum.lookup_keys += t.lookup_keys;
    sum.present += t.present;
    sum.deletes += t.deletes;
    sum.put_errors += t.put_errors;
    sum.rpcs += t.rpcs;
    sum.stages += t.stages;
    sum.quant += t.quant;
  }
  const ServerMetrics::Totals totals = metrics.totals();
  EXPECT_EQ(totals.puts, sum.puts);
  EXPECT_EQ(totals.received_bytes, sum.received);
  EXPECT_EQ(totals.hits, sum.hits);
  EXPECT_EQ(totals.misses, sum.misses);
  EXPECT_EQ(totals.gets, sum.hits + sum.misses);
  EXPECT_EQ(totals.sent_bytes, sum.sent);
  EXPECT_EQ(totals.lookup_keys, sum.lookup_keys);
  EXPECT_EQ(totals.deletes, sum.deletes);
  EXPECT_EQ(totals.put_errors, sum.put_errors);

  absl::StatusOr<Exposition> last = Exposition::Parse(metrics.Render());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->Sum("kvq_puts_total"), sum.puts);
  EXPECT_EQ(last->Value("kvq_received_bytes_total"), sum.received);
  EXPECT_EQ(last->Value("kvq_get_keys_total", {{"result", "hit"}}), sum.hits);
  EXPECT_EQ(last->Value("kvq_get_keys_total", {{"result", "miss"}}),
            sum.misses);
  EXPECT_EQ(last->Value("kvq_lookup_keys_total", {{"result", "present"}}),
            sum.present);
  EXPECT_EQ(last->Value("kvq_lookup_keys_total", {{"result", "absent"}}),
            sum.lookup_keys - sum.present);
  EXPECT_EQ(
      last->Value("kvq_put_errors_total", {{"code", "RESOURCE_EXHAUSTED"}}),
      sum.put_errors);
  EXPECT_EQ(last->Sum("kvq_rpcs_total"), sum.rpcs);
  EXPECT_EQ(last->Sum("kvq_rpc_duration_seconds_count"), sum.rpcs);
  EXPECT_EQ(last->Sum("kvq_stage_duration_seconds_count"), sum.stages);
  EXPECT_EQ(last->Value("kvq_quantization_relative_l2_error_count"), sum.quant);
  std::cout << scrapes << " scrapes while recording\n";
}

}  // namespace
}  // namespace kvq
