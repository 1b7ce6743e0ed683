// ServerMetrics: the kvq families, their definitions, and their labels, read
// back from Render() by the strict exposition parser.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/metrics/server_metrics.h"
#include "tests/unit/metrics_exposition_parser.h"

namespace kvq {
namespace {

using ::kvq::testing::Exposition;

class ServerMetricsTest : public ::testing::Test {
 protected:
  ServerMetricsTest()
      : seed_(std::random_device{}()),
        rng_(seed_),
        trace_(__FILE__, __LINE__, "seed " + std::to_string(seed_)) {}

  uint64_t Uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }

  // A pool snapshot with random but self-consistent numbers.
  PoolStats RandomPool(size_t namespaces) {
    PoolStats pool;
    pool.page_bytes = 256 * Uniform(1, 1024);
    pool.pages_total = Uniform(1, 100000);
    pool.pages_used = Uniform(1, pool.pages_total);
    const uint64_t used = pool.pages_used * pool.page_bytes;
    pool.stored_bytes = Uniform(0, used);
    pool.logical_bytes = pool.stored_bytes * Uniform(1, 4);
    pool.blocks = Uniform(1, 10000);
    pool.evictions = Uniform(0, 1000000);
    for (size_t i = 0; i < namespaces; ++i) {
      pool.namespaces.push_back(
          NamespaceUsage{.ns = "model-" + std::to_string(i) + "-" +
                               std::to_string(Uniform(0, 1 << 20)),
                         .blocks = Uniform(1, 1000),
                         .logical_bytes = Uniform(1, 1ull << 40),
                         .stored_bytes = Uniform(1, 1ull << 39)});
    }
    return pool;
  }

  static Exposition Parse(const ServerMetrics& metrics) {
    const std::string text = metrics.Render();
    absl::StatusOr<Exposition> parsed = Exposition::Parse(text);
    EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
    return parsed.ok() ? *std::move(parsed) : Exposition();
  }

  const unsigned seed_;
  std::mt19937_64 rng_;
  ::testing::ScopedTrace trace_;
};

BuildInfo TestBuild() {
  return BuildInfo{.version = "0.1.0",
                   .git_revision = "abcdef012345",
                   .backend = "cpu",
                   .device_name = "Test CPU"};
}

TEST_F(ServerMetricsTest, EveryFamilyHasHelpTypeAndItsPrometheusName) {
  const PoolStats pool = RandomPool(3);
  ServerMetrics metrics(TestBuild(), [&] { return pool; });
  const Exposition e = Parse(metrics);
  const std::map<std::string, std::string> expected = {
      {"kvq_build_info", "gauge"},
      {"kvq_uptime_seconds", "gauge"},
      {"kvq_start_time_seconds", "gauge"},
      {"kvq_logical_bytes", "gauge"},
      {"kvq_stored_bytes", "gauge"},
      {"kvq_pool_used_bytes", "gauge"},
      {"kvq_bytes_saved", "gauge"},
      {"kvq_compression_ratio", "gauge"},
      {"kvq_pool_capacity_bytes", "gauge"},
      {"kvq_pool_page_bytes", "gauge"},
      {"kvq_pool_pages", "gauge"},
      {"kvq_pool_fragmentation_ratio", "gauge"},
      {"kvq_blocks", "gauge"},
      {"kvq_namespace_logical_bytes", "gauge"},
      {"kvq_namespace_stored_bytes", "gauge"},
      {"kvq_namespace_blocks", "gauge"},
      {"kvq_staging_bytes", "gauge"},
      {"kvq_staging_heap_fallbacks_total", "counter"},
      {"kvq_pinned_heap_bytes", "gauge"},
      {"kvq_heap_outside_pinned_bytes", "gauge"},
      {"kvq_rpcs_total", "counter"},
      {"kvq_rpcs_in_flight", "gauge"},
      {"kvq_puts_total", "counter"},
      {"kvq_put_errors_total", "counter"},
      {"kvq_get_keys_total", "counter"},
      {"kvq_lookup_keys_total", "counter"},
      {"kvq_deletes_total", "counter"},
      {"kvq_evictions_total", "counter"},
      {"kvq_received_bytes_total", "counter"},
      {"kvq_sent_bytes_total", "counter"},
      {"kvq_rpc_duration_seconds", "histogram"},
      {"kvq_stage_duration_seconds", "histogram"},
      {"kvq_quantization_relative_l2_error", "histogram"},
  };
  std::map<std::string, std::string> rendered;
  for (const auto& [name, family] : e.families()) {
    rendered[name] = family.type;
    EXPECT_FALSE(family.help.empty()) << name;
    EXPECT_FALSE(family.samples.empty()) << name << " has no sample";
    if (family.type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
  }
  EXPECT_EQ(rendered, expected);
}

TEST_F(ServerMetricsTest, PoolGaugesAreReadFromTheSnapshotAtEachScrape) {
  PoolStats pool = RandomPool(2);
  int snapshots = 0;
  ServerMetrics metrics(TestBuild(), [&] {
    ++snapshots;
    return pool;
  });
  EXPECT_EQ(snapshots, 0);
  for (int scrape = 1; scrape <= 3; ++scrape) {
    pool = RandomPool(2);
    const Exposition e = Parse(metrics);
    EXPECT_EQ(snapshots, scrape);
    const double used = static_cast<double>(pool.pages_used * pool.page_bytes);
    EXPECT_EQ(e.Value("kvq_logical_bytes"), pool.logical_bytes);
    EXPECT_EQ(e.Value("kvq_stored_bytes"), pool.stored_bytes);
    EXPECT_EQ(e.Value("kvq_pool_used_bytes"), used);
    EXPECT_EQ(e.Value("kvq_pool_capacity_bytes"),
              pool.pages_total * pool.page_bytes);
    EXPECT_EQ(e.Value("kvq_pool_page_bytes"), pool.page_bytes);
    EXPECT_EQ(e.Value("kvq_pool_pages", {{"state", "used"}}), pool.pages_used);
    EXPECT_EQ(e.Value("kvq_pool_pages", {{"state", "free"}}),
              pool.pages_total - pool.pages_used);
    EXPECT_EQ(e.Value("kvq_blocks"), pool.blocks);
    EXPECT_EQ(e.Value("kvq_evictions_total", {{"reason", "lru"}}),
              pool.evictions);
    // bytes saved = logical - physical, physical = pool used bytes.
    EXPECT_EQ(e.Value("kvq_bytes_saved"),
              static_cast<double>(pool.logical_bytes) - used);
    EXPECT_EQ(e.Value("kvq_compression_ratio"),
              static_cast<double>(pool.logical_bytes) / used);
    EXPECT_EQ(e.Value("kvq_pool_fragmentation_ratio"),
              (used - static_cast<double>(pool.stored_bytes)) / used);
  }
}

TEST_F(ServerMetricsTest, StagingFiguresAreReadFromTheirSnapshotAtEachScrape) {
  StagingStats staging;
  ServerMetrics metrics(TestBuild(), {}, [&] { return staging; });
  for (int scrape = 0; scrape < 3; ++scrape) {
    staging = StagingStats{Uniform(0, 1 << 30), Uniform(0, 1 << 30),
                           Uniform(0, 1000)};
    staging.pinned_heap_bytes = Uniform(1, 1 << 30);
    staging.pinned_heap_used_bytes = Uniform(0, staging.pinned_heap_bytes);
    staging.heap_outside_pinned_bytes = Uniform(0, 1 << 30);
    const Exposition e = Parse(metrics);
    EXPECT_EQ(e.Value("kvq_pinned_heap_bytes", {{"state", "used"}}),
              staging.pinned_heap_used_bytes);
    EXPECT_EQ(e.Value("kvq_pinned_heap_bytes", {{"state", "free"}}),
              staging.pinned_heap_bytes - staging.pinned_heap_used_bytes);
    EXPECT_EQ(e.Value("kvq_heap_outside_pinned_bytes"),
              staging.heap_outside_pinned_bytes);
    EXPECT_EQ(e.Value("kvq_staging_bytes", {{"state", "lent"}}),
              staging.lent_bytes);
    EXPECT_EQ(e.Value("kvq_staging_bytes", {{"state", "kept"}}),
              staging.kept_bytes);
    EXPECT_EQ(e.Value("kvq_staging_heap_fallbacks_total"),
              staging.heap_buffers);
  }
}

TEST_F(ServerMetricsTest, BytesSavedIsNegativeWhenPagesOutweighTheSaving) {
  PoolStats pool;
  pool.page_bytes = 65536;
  pool.pages_total = 100;
  pool.pages_used = 3;
  pool.blocks = 3;
  pool.logical_bytes = 3 * Uniform(1, 65536);  // small blocks, one page each
  pool.stored_bytes = pool.logical_bytes / 2;
  const MemoryFigures f = ComputeMemoryFigures(pool);
  EXPECT_EQ(f.used_bytes, 3u * 65536);
  EXPECT_EQ(f.bytes_saved,
            static_cast<int64_t>(pool.logical_bytes) - 3 * 65536);
  EXPECT_LT(f.bytes_saved, 0);
  ServerMetrics metrics(TestBuild(), [&] { return pool; });
  EXPECT_EQ(Parse(metrics).Value("kvq_bytes_saved"),
            static_cast<double>(f.bytes_saved));
}

TEST_F(ServerMetricsTest, AnEmptyPoolHasZeroRatiosNotNaN) {
  PoolStats pool;
  pool.page_bytes = 4096;
  pool.pages_total = Uniform(1, 1000);
  const MemoryFigures f = ComputeMemoryFigures(pool);
  EXPECT_EQ(f.compression_ratio, 0);
  EXPECT_EQ(f.fragmentation_ratio, 0);
  EXPECT_EQ(f.bytes_saved, 0);
  EXPECT_EQ(f.capacity_bytes, pool.pages_total * 4096);
  ServerMetrics metrics(TestBuild(), [&] { return pool; });
  const Exposition e = Parse(metrics);
  EXPECT_EQ(e.Value("kvq_compression_ratio"), 0);
  EXPECT_EQ(e.Value("kvq_pool_fragmentation_ratio"), 0);
}

TEST_F(ServerMetricsTest, WithoutASnapshotSourcePoolGaugesAreZero) {
  ServerMetrics metrics(TestBuild(), nullptr);
  const Exposition e = Parse(metrics);
  EXPECT_EQ(e.Value("kvq_logical_bytes"), 0);
  EXPECT_EQ(e.Value("kvq_pool_capacity_bytes"), 0);
  EXPECT_TRUE(e.Samples("kvq_namespace_blocks").empty());
}

TEST_F(ServerMetricsTest, NamespacesPastTheLimitAreSummedIntoOther) {
  const size_t count = kMaxNamespaceLabels + Uniform(1, 40);
  const PoolStats pool = RandomPool(count);
  ServerMetrics metrics(TestBuild(), [&] { return pool; });
  const Exposition e = Parse(metrics);

  std::vector<NamespaceUsage> by_size = pool.namespaces;
  std::sort(by_size.begin(), by_size.end(), [](const auto& a, const auto& b) {
    return a.logical_bytes > b.logical_bytes;
  });
  const auto series = e.Samples("kvq_namespace_logical_bytes");
  ASSERT_EQ(series.size(), kMaxNamespaceLabels);
  // The largest keep their own label, exactly.
  for (size_t i = 0; i + 1 < kMaxNamespaceLabels; ++i) {
    const NamespaceUsage& usage = by_size[i];
    EXPECT_EQ(e.Value("kvq_namespace_logical_bytes", {{"namespace", usage.ns}}),
              usage.logical_bytes);
    EXPECT_EQ(e.Value("kvq_namespace_stored_bytes", {{"namespace", usage.ns}}),
              usage.stored_bytes);
    EXPECT_EQ(e.Value("kvq_namespace_blocks", {{"namespace", usage.ns}}),
              usage.blocks);
  }
  // The rest are summed into "_other".
  uint64_t logical = 0, stored = 0, blocks = 0;
  for (size_t i = kMaxNamespaceLabels - 1; i < by_size.size(); ++i) {
    logical += by_size[i].logical_bytes;
    stored += by_size[i].stored_bytes;
    blocks += by_size[i].blocks;
    EXPECT_TRUE(
        e.Samples("kvq_namespace_blocks", {{"namespace", by_size[i].ns}})
            .empty());
  }
  EXPECT_EQ(e.Value("kvq_namespace_logical_bytes", {{"namespace", "_other"}}),
            static_cast<double>(logical));
  EXPECT_EQ(e.Value("kvq_namespace_stored_bytes", {{"namespace", "_other"}}),
            static_cast<double>(stored));
  EXPECT_EQ(e.Value("kvq_namespace_blocks", {{"namespace", "_other"}}),
            static_cast<double>(blocks));
}

TEST_F(ServerMetricsTest, UpToTheLimitEveryNamespaceHasItsOwnLabel) {
  const PoolStats pool = RandomPool(Uniform(1, kMaxNamespaceLabels));
  ServerMetrics metrics(TestBuild(), [&] { return pool; });
  const Exposition e = Parse(metrics);
  EXPECT_EQ(e.Samples("kvq_namespace_blocks").size(), pool.namespaces.size());
  for (const NamespaceUsage& usage : pool.namespaces) {
    EXPECT_EQ(e.Value("kvq_namespace_blocks", {{"namespace", usage.ns}}),
              usage.blocks);
  }
  EXPECT_TRUE(
      e.Samples("kvq_namespace_blocks", {{"namespace", "_other"}}).empty());
}

TEST_F(ServerMetricsTest, ANamespaceCalledOtherNeverRepeatsTheOtherSeries) {
  PoolStats pool = RandomPool(kMaxNamespaceLabels + 5);
  pool.namespaces[Uniform(0, pool.namespaces.size() - 1)].ns = "_other";
  ServerMetrics metrics(TestBuild(), [&] { return pool; });
  const Exposition e = Parse(metrics);  // the parser rejects repeated series
  double total = 0;
  for (const NamespaceUsage& usage : pool.namespaces) total += usage.blocks;
  EXPECT_EQ(e.Sum("kvq_namespace_blocks"), total);
  EXPECT_EQ(e.Samples("kvq_namespace_blocks", {{"namespace", "_other"}}).size(),
            1u);
}

TEST_F(ServerMetricsTest, LabelValuesFromClientsAndBuildAreEscaped) {
  PoolStats pool = RandomPool(0);
  const std::string odd_namespace = "tenant \"a\"\\b\nc/\xC3\xA9";
  pool.namespaces.push_back({.ns = odd_namespace,
                             .blocks = 7,
                             .logical_bytes = 70,
                             .stored_bytes = 35});
  BuildInfo build = TestBuild();
  build.device_name = "NVIDIA \"H100\" 80GB\\HBM3";
  ServerMetrics metrics(build, [&] { return pool; });
  const Exposition e = Parse(metrics);
  EXPECT_EQ(e.Value("kvq_namespace_blocks", {{"namespace", odd_namespace}}), 7);
  EXPECT_EQ(e.Value("kvq_build_info", {{"version", "0.1.0"},
                                       {"git_revision", "abcdef012345"},
                                       {"backend", "cpu"},
                                       {"device", build.device_name}}),
            1);
}

TEST_F(ServerMetricsTest, RpcsAreCountedByMethodAndStatusCode) {
  ServerMetrics metrics(TestBuild(), nullptr);
  const std::vector<Rpc> rpcs = {Rpc::kPut, Rpc::kGet, Rpc::kLookup,
                                 Rpc::kDelete, Rpc::kStats};
  const std::map<int, std::string> code_names = {{0, "OK"},
                                                 {3, "INVALID_ARGUMENT"},
                                                 {5, "NOT_FOUND"},
                                                 {8, "RESOURCE_EXHAUSTED"},
                                                 {16, "UNAUTHENTICATED"}};
  std::map<std::pair<std::string, std::string>, int> expected;
  std::map<std::string, int> per_rpc;
  for (int i = 0; i < 2000; ++i) {
    const Rpc rpc = rpcs[Uniform(0, rpcs.size() - 1)];
    auto code = code_names.begin();
    std::advance(code, Uniform(0, code_names.size() - 1));
    metrics.ObserveRpc(rpc, code->first, 1e-3 * Uniform(1, 1000));
    ++expected[{std::string(RpcName(rpc)), code->second}];
    ++per_rpc[std::string(RpcName(rpc))];
  }
  metrics.ObserveRpc(Rpc::kGet, 99, 0.1);  // not a gRPC code: UNKNOWN
  metrics.ObserveRpc(Rpc::kGet, -1, 0.1);
  ++per_rpc["get"];
  ++per_rpc["get"];

  const Exposition e = Parse(metrics);
  for (const auto& [key, n] : expected) {
    EXPECT_EQ(
        e.Value("kvq_rpcs_total", {{"rpc", key.first}, {"code", key.second}}),
        n)
        << key.first << " " << key.second;
  }
  EXPECT_EQ(e.Value("kvq_rpcs_total", {{"rpc", "get"}, {"code", "UNKNOWN"}}),
            2);
  for (Rpc rpc : rpcs) {
    const std::string name(RpcName(rpc));
    // OK is always there (0 until seen), so rate() works from the start.
    EXPECT_TRUE(e.Value("kvq_rpcs_total", {{"rpc", name}, {"code", "OK"}}));
    EXPECT_EQ(e.Sum("kvq_rpcs_total", {{"rpc", name}}), per_rpc[name]);
    EXPECT_EQ(e.Value("kvq_rpc_duration_seconds_count", {{"rpc", name}}),
              per_rpc[name]);
  }
}

// Calls in flight: each method counts the handlers running now, starts
// minus ends, read back by RpcsInFlight and rendered as a gauge for every
// method (0 included).
TEST_F(ServerMetricsTest, RpcsInFlightCountStartsLessEndsByMethod) {
  ServerMetrics metrics(TestBuild(), nullptr);
  const std::vector<Rpc> rpcs = {Rpc::kPut, Rpc::kGet, Rpc::kLookup,
                                 Rpc::kDelete, Rpc::kStats};
  std::map<std::string, uint64_t> open;
  std::vector<Rpc> running;
  for (int i = 0; i < 2000; ++i) {
    if (running.empty() || Uniform(0, 2) != 0) {
      const Rpc rpc = rpcs[Uniform(0, rpcs.size() - 1)];
      metrics.RpcStarted(rpc);
      running.push_back(rpc);
      ++open[std::string(RpcName(rpc))];
    } else {
      const size_t k = Uniform(0, running.size() - 1);
      metrics.RpcEnded(running[k]);
      --open[std::string(RpcName(running[k]))];
      running.erase(running.begin() + k);
    }
  }
  const Exposition e = Parse(metrics);
  for (Rpc rpc : rpcs) {
    const std::string name(RpcName(rpc));
    EXPECT_EQ(metrics.RpcsInFlight(rpc), open[name]) << name;
    EXPECT_EQ(e.Value("kvq_rpcs_in_flight", {{"rpc", name}}), open[name])
        << name;
  }

  for (Rpc rpc : running) metrics.RpcEnded(rpc);
  const Exposition after = Parse(metrics);
  for (Rpc rpc : rpcs) {
    EXPECT_EQ(metrics.RpcsInFlight(rpc), 0u);
    EXPECT_EQ(after.Value("kvq_rpcs_in_flight", {{"rpc", std::string(RpcName(rpc))}}),
              0);
  }
}

TEST_F(ServerMetricsTest, LatencyBucketsResolveTenMicrosecondsToTenSeconds) {
  ServerMetrics metrics(TestBuild(), nullptr);
  metrics.ObserveStage(Stage::kQuantize, 12e-6);
  metrics.ObserveStage(Stage::kQuantize, 3.0);
  metrics.ObserveStage(Stage::kQuantize, 30.0);
  const Exposition e = Parse(metrics);
  const auto buckets =
      e.Samples("kvq_stage_duration_seconds_bucket", {{"stage", "quantize"}});
  std::vector<std::string> les;
  for (const auto* b : buckets) les.push_back(b->labels.at("le"));
  const std::vector<std::string> expected = {
      "1e-05",  "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001",
      "0.0025", "0.005",   "0.01",  "0.025",  "0.05",    "0.1",    "0.25",
      "0.5",    "1",       "2.5",   "5",      "10",      "+Inf"};
  EXPECT_EQ(les, expected);
  const auto le = [&](const char* bound) {
    return e.Value("kvq_stage_duration_seconds_bucket",
                   {{"stage", "quantize"}, {"le", bound}});
  };
  EXPECT_EQ(le("1e-05"), 0);
  EXPECT_EQ(le("2.5e-05"), 1);
  EXPECT_EQ(le("2.5"), 1);
  EXPECT_EQ(le("5"), 2);
  EXPECT_EQ(le("10"), 2);
  EXPECT_EQ(le("+Inf"), 3);
  EXPECT_EQ(e.Value("kvq_stage_duration_seconds_sum", {{"stage", "quantize"}}),
            12e-6 + 3.0 + 30.0);
}

TEST_F(ServerMetricsTest, EveryStageHasItsOwnHistogram) {
  ServerMetrics metrics(TestBuild(), nullptr);
  const std::vector<Stage> stages = {
      Stage::kReceive,      Stage::kAssemble, Stage::kQueue,
      Stage::kStore,        Stage::kFetch,    Stage::kIndex,
      Stage::kHostToDevice, Stage::kQuantize, Stage::kDequantize,
      Stage::kDeviceToHost, Stage::kSend,     Stage::kAnswer};
  std::map<std::string, int> expected;
  for (int i = 0; i < 500; ++i) {
    const Stage stage = stages[Uniform(0, stages.size() - 1)];
    metrics.ObserveStage(stage, 1e-6 * Uniform(1, 1000000));
    ++expected[std::string(StageName(stage))];
  }
  const Exposition e = Parse(metrics);
  for (Stage stage : stages) {
    const std::string name(StageName(stage));
    EXPECT_EQ(e.Value("kvq_stage_duration_seconds_count", {{"stage", name}}),
              expected[name])
        << name;
  }
  std::set<std::string> names;
  for (Stage stage : stages) names.insert(std::string(StageName(stage)));
  EXPECT_EQ(names, (std::set<std::string>{
                       "receive", "assemble", "queue", "store", "fetch",
                       "index", "host_to_device", "quantize", "dequantize",
                       "device_to_host", "send", "answer"}));
}

TEST_F(ServerMetricsTest, QuantizationErrorIsAHistogramFromOneInTenThousand) {
  ServerMetrics metrics(TestBuild(), nullptr);
  std::vector<double> errors;
  for (int i = 0; i < 300; ++i) {
    errors.push_back(std::pow(10.0, -5.0 + 5.0 * Uniform(0, 1000) / 1000.0));
    metrics.ObserveQuantError(errors.back());
  }
  const Exposition e = Parse(metrics);
  const auto buckets = e.Samples("kvq_quantization_relative_l2_error_bucket");
  ASSERT_EQ(buckets.size(), 11u);  // 1e-4 .. 1e-1, 1-2.5-5, and +Inf
  EXPECT_EQ(buckets.front()->labels.at("le"), "0.0001");
  EXPECT_EQ(buckets[buckets.size() - 2]->labels.at("le"), "0.1");
  for (const auto* bucket : buckets) {
    const double bound =
        std::stod(bucket->labels.at("le") == "+Inf" ? std::string("inf")
                                                    : bucket->labels.at("le"));
    EXPECT_EQ(bucket->value,
              std::count_if(errors.begin(), errors.end(),
                            [&](double v) { return v <= bound; }));
  }
}

TEST_F(ServerMetricsTest, TrafficCountersAndTotalsMatchTheRecordedEvents) {
  ServerMetrics metrics(TestBuild(), nullptr);
  std::map<DType, uint64_t> puts;
  uint64_t received = 0, sent = 0, hits = 0, misses = 0, lookup_keys = 0,
           present = 0, deletes = 0, put_errors = 0;
  const DType dtypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};
  for (int i = 0; i < 3000; ++i) {
    switch (Uniform(0, 5)) {
      case 0: {
        const DType dtype = dtypes[Uniform(0, 2)];
        const uint64_t bytes = Uniform(1, 1 << 24);
        metrics.CountPut(dtype, bytes);
        ++puts[dtype];
        received += bytes;
        break;
      }
      case 1: {
        const uint64_t bytes = Uniform(1, 1 << 24);
        metrics.CountGetHit(bytes);
        ++hits;
        sent += bytes;
        break;
      }
      case 2:
        metrics.CountGetMiss();
        ++misses;
        break;
      case 3: {
        const uint64_t keys = Uniform(1, 64);
        const uint64_t found = Uniform(0, keys);
        metrics.CountLookupKeys(keys, found);
        lookup_keys += keys;
        present += found;
        break;
      }
      case 4: {
        const uint64_t n = Uniform(0, 10);
        metrics.CountDeletes(n);
        deletes += n;
        break;
      }
      case 5:
        metrics.CountPutError(Uniform(0, 1) ? 3 : 8);
        ++put_errors;
        break;
    }
  }
  const Exposition e = Parse(metrics);
  EXPECT_EQ(e.Value("kvq_puts_total", {{"dtype", "fp16"}}), puts[DType::kFp16]);
  EXPECT_EQ(e.Value("kvq_puts_total", {{"dtype", "bf16"}}), puts[DType::kBf16]);
  EXPECT_EQ(e.Value("kvq_puts_total", {{"dtype", "fp32"}}), puts[DType::kFp32]);
  EXPECT_EQ(e.Value("kvq_received_bytes_total"), received);
  EXPECT_EQ(e.Value("kvq_sent_bytes_total"), sent);
  EXPECT_EQ(e.Value("kvq_get_keys_total", {{"result", "hit"}}), hits);
  EXPECT_EQ(e.Value("kvq_get_keys_total", {{"result", "miss"}}), misses);
  EXPECT_EQ(e.Value("kvq_lookup_keys_total", {{"result", "present"}}), present);
  EXPECT_EQ(e.Value("kvq_lookup_keys_total", {{"result", "absent"}}),
            lookup_keys - present);
  EXPECT_EQ(e.Value("kvq_deletes_total"), deletes);
  EXPECT_EQ(e.Sum("kvq_put_errors_total"), put_errors);

  const ServerMetrics::Totals t = metrics.totals();
  EXPECT_EQ(t.puts,
            puts[DType::kFp16] + puts[DType::kBf16] + puts[DType::kFp32]);
  EXPECT_EQ(t.hits, hits);
  EXPECT_EQ(t.misses, misses);
  EXPECT_EQ(t.gets, hits + misses);
  EXPECT_EQ(t.deletes, deletes);
  EXPECT_EQ(t.put_errors, put_errors);
  EXPECT_EQ(t.lookup_keys, lookup_keys);
  EXPECT_EQ(t.received_bytes, received);
  EXPECT_EQ(t.sent_bytes, sent);
  EXPECT_GE(t.uptime_seconds, 0);
}

TEST_F(ServerMetricsTest, StartTimeIsWhenTheMetricsWereCreated) {
  const double before = std::chrono::duration<double>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  ServerMetrics metrics(TestBuild(), nullptr);
  const double after = std::chrono::duration<double>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  const Exposition e = Parse(metrics);
  const std::optional<double> start = e.Value("kvq_start_time_seconds");
  ASSERT_TRUE(start);
  EXPECT_GE(*start, before);
  EXPECT_LE(*start, after);
  const std::optional<double> uptime = e.Value("kvq_uptime_seconds");
  ASSERT_TRUE(uptime);
  EXPECT_GE(*uptime, 0);
}

}  // namespace
}  // namespace kvq
