// A real Prometheus scrapes a real kvq-server while a known workload runs;
// what Prometheus then answers through its query API matches the workload
// exactly: memory (bytes saved = logical - physical), puts, RPC latency
// histogram counts, hits and misses, lookups, deletes, quantization error.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_testing.h"
#include "tests/integration/prometheus_testing.h"
#include "tests/unit/metrics_exposition_parser.h"

namespace kvq::testing {
namespace {

constexpr absl::Duration kSettleTimeout = absl::Seconds(30);

class PrometheusScrapeTest : public ServerTest {
 protected:
  // Measure the quantization error of every stored block, so that its
  // histogram count is known exactly.
  std::vector<std::string> ServerFlags() const override {
    return {"--quality_sample_every=1"};
  }
};

// What the workload did, as the metrics must report it.
struct Expected {
  uint64_t stored_blocks = 0;  // puts that succeeded
  std::map<std::string, uint64_t> puts_by_dtype;
  uint64_t received_bytes = 0;
  uint64_t put_rpcs = 0, get_rpcs = 0, lookup_rpcs = 0, delete_rpcs = 0;
  uint64_t hits = 0, misses = 0, sent_bytes = 0;
  uint64_t lookup_present = 0, lookup_absent = 0;
  uint64_t deleted = 0;
  uint64_t put_errors_invalid = 0;
  // Memory held at the end.
  uint64_t blocks = 0, logical = 0, stored = 0, used = 0;
  std::map<std::string, uint64_t> blocks_by_namespace;

  uint64_t rpcs() const {
    return put_rpcs + get_rpcs + lookup_rpcs + delete_rpcs;
  }
};

std::string DTypeLabel(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FP16:
      return "fp16";
    case v1::DTYPE_BF16:
      return "bf16";
    default:
      return "fp32";
  }
}

// Waits (bounded) until /metrics reports `rpcs` finished Put, Get, Lookup
// and Delete RPCs: the server has recorded everything the workload did.
absl::StatusOr<Exposition> ScrapeAfterRpcs(const ServerProcess& server,
                                           uint64_t rpcs) {
  const absl::Time deadline = absl::Now() + kSettleTimeout;
  std::string last;
  while (true) {
    absl::StatusOr<std::string> text =
        HttpGet("127.0.0.1", server.metrics_port(), "/metrics");
    if (text.ok()) {
      absl::StatusOr<Exposition> parsed = Exposition::Parse(*text);
      if (!parsed.ok()) return parsed.status();
      // Stats calls of the test itself aside.
      const double seen =
          parsed->Sum("kvq_rpc_duration_seconds_count") -
          parsed->Sum("kvq_rpc_duration_seconds_count", {{"rpc", "stats"}});
      if (seen == static_cast<double>(rpcs)) return parsed;
      last = absl::StrCat(seen, " RPCs recorded, expected ", rpcs);
    } else {
      last = std::string(text.status().message());
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(last);
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

TEST_F(PrometheusScrapeTest, PrometheusReportsTheWorkloadExactly) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const auto uniform = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };

  // Prometheus first: its first scrape comes ~5 s after it starts, and the
  // workload runs meanwhile.
  absl::StatusOr<std::unique_ptr<PrometheusProcess>> prometheus =
      PrometheusProcess::Start({server_->metrics_address()});
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();
  PrometheusProcess& prom = **prometheus;

  const v1::StatsResponse initial = Stats();
  const uint64_t page = initial.page_bytes();
  ASSERT_GT(page, 0u);

  // --- Put: blocks of random dtype and shape in two namespaces, some one
  // per RPC, the rest over two pipelined streams.
  Expected want;
  const std::vector<std::string> namespaces = {"model-a", "model-b"};
  const v1::DType dtypes[] = {v1::DTYPE_FP16, v1::DTYPE_BF16, v1::DTYPE_FP32};
  std::vector<TestBlock> blocks;
  const uint64_t n = uniform(9, 18);
  for (uint64_t i = 0; i < n; ++i) {
    blocks.push_back(
        RandomBlock(rng, namespaces[i % 2],
                    absl::StrCat("block-", i, "-", uniform(0, 999999999)),
                    dtypes[uniform(0, 2)],
                    // 1.03 payload bytes per element (int8 + a scale per 128
                    // values) on 64 KiB pages: 2-3x smaller than FP16/BF16/FP32
                    // even after page rounding, so the workload saves memory.
                    Shape(2, uniform(0, 1) ? 64 : 128, 8, 128)));
  }
  const size_t singles = uniform(1, n / 3);
  for (size_t i = 0; i < singles; ++i) {
    absl::StatusOr<PutResult> put = client_->Put(blocks[i].ToPut());
    ASSERT_TRUE(put.ok()) << put.status();
    ++want.put_rpcs;
  }
  const size_t middle = singles + (n - singles) / 2;
  for (auto [begin, end] : {std::pair{singles, middle}, std::pair{middle, n}}) {
    std::vector<BlockToPut> batch;
    for (size_t i = begin; i < end; ++i) batch.push_back(blocks[i].ToPut());
    absl::StatusOr<std::vector<PutResult>> put = client_->PutMany(batch);
    ASSERT_TRUE(put.ok()) << put.status();
    for (const PutResult& result : *put) {
      ASSERT_TRUE(result.status.ok()) << result.status;
    }
    ++want.put_rpcs;
  }
  for (const TestBlock& block : blocks) {
    ++want.stored_blocks;
    ++want.puts_by_dtype[DTypeLabel(block.dtype)];
    want.received_bytes += block.data.size();
  }
  // One block refused: a NaN is not stored.
  TestBlock bad =
      RandomBlock(rng, "model-a", "bad", v1::DTYPE_FP32, Shape(2, 16, 4, 128));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bad.data.data() + 4 * uniform(0, bad.elements() - 1), &nan, 4);
  absl::StatusOr<PutResult> refused = client_->Put(bad.ToPut());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  ++want.put_rpcs;
  ++want.put_errors_invalid;

  // --- Get: every key of a namespace plus some that are not there.
  for (const std::string& ns : namespaces) {
    std::vector<std::string> keys;
    std::map<std::string, const TestBlock*> by_key;
    for (const TestBlock& block : blocks) {
      if (block.ns != ns || uniform(0, 3) == 0) continue;  // ask for most
      keys.push_back(block.key);
      by_key[block.key] = &block;
    }
    const uint64_t missing = uniform(1, 4);
    for (uint64_t i = 0; i < missing; ++i) {
      keys.push_back(absl::StrCat("missing-", i));
    }
    std::shuffle(keys.begin(), keys.end(), rng);
    absl::StatusOr<std::vector<GetResult>> got = client_->Get(ns, keys);
    ASSERT_TRUE(got.ok()) << got.status();
    ++want.get_rpcs;
    ASSERT_EQ(got->size(), keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      const auto it = by_key.find(keys[i]);
      if (it == by_key.end()) {
        EXPECT_EQ((*got)[i].status.code(), absl::StatusCode::kNotFound);
        ++want.misses;
      } else {
        ASSERT_TRUE((*got)[i].status.ok()) << (*got)[i].status;
        ++want.hits;
        want.sent_bytes += (*got)[i].data.size();
      }
    }
  }

  // --- Lookup: the keys of model-b and a few that are not there.
  {
    std::vector<std::string> keys;
    for (const TestBlock& block : blocks) {
      if (block.ns == "model-b") keys.push_back(block.key);
    }
    want.lookup_present = keys.size();
    want.lookup_absent = uniform(1, 5);
    for (uint64_t i = 0; i < want.lookup_absent; ++i) {
      keys.push_back(absl::StrCat("absent-", i));
    }
    absl::StatusOr<LookupResult> lookup = client_->Lookup("model-b", keys);
    ASSERT_TRUE(lookup.ok()) << lookup.status();
    ++want.lookup_rpcs;
  }

  // --- Delete: some blocks of model-a, and one key that is not there.
  std::vector<std::string> doomed;
  for (const TestBlock& block : blocks) {
    if (block.ns == "model-a" && uniform(0, 1) == 0)
      doomed.push_back(block.key);
  }
  want.deleted = doomed.size();
  doomed.push_back("never-put");
  absl::StatusOr<DeleteResult> deleted = client_->Delete("model-a", doomed);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_EQ(deleted->deleted, want.deleted);
  ++want.delete_rpcs;

  // What the pool holds now, from the block format: int8 values, padding to
  // 16 bytes, FP32 scales; each block on whole pages.
  for (const TestBlock& block : blocks) {
    if (block.ns == "model-a" &&
        std::find(doomed.begin(), doomed.end(), block.key) != doomed.end()) {
      continue;
    }
    absl::StatusOr<BlockLayout> layout = KernelLayout(block);
    ASSERT_TRUE(layout.ok()) << layout.status();
    ++want.blocks;
    ++want.blocks_by_namespace[block.ns];
    want.logical += block.data.size();
    want.stored += layout->payload_bytes;
    want.used += (layout->payload_bytes + page - 1) / page * page;
  }
  ASSERT_GT(want.logical, want.used) << "the workload should save memory";

  // The server has recorded every RPC; then wait for Prometheus to scrape.
  absl::StatusOr<Exposition> direct = ScrapeAfterRpcs(*server_, want.rpcs());
  ASSERT_TRUE(direct.ok()) << direct.status();
  const absl::Status scraped = prom.WaitForScrapeAfter(absl::Now());
  ASSERT_TRUE(scraped.ok()) << scraped.message();

  const auto q = [&](const std::string& promql) -> double {
    absl::StatusOr<double> value = prom.QueryOne(promql);
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() ? *value : std::nan("");
  };
  const auto d = [](uint64_t v) { return static_cast<double>(v); };

  // Memory: bytes saved = logical - physical, physical = pool used bytes.
  const double logical = q("kvq_logical_bytes");
  const double used = q("kvq_pool_used_bytes");
  EXPECT_EQ(logical, d(want.logical));
  EXPECT_EQ(used, d(want.used));
  EXPECT_EQ(q("kvq_bytes_saved"), logical - used);
  EXPECT_EQ(q("kvq_bytes_saved"), d(want.logical) - d(want.used));
  EXPECT_EQ(q("kvq_stored_bytes"), d(want.stored));
  EXPECT_DOUBLE_EQ(q("kvq_compression_ratio"), logical / used);
  EXPECT_EQ(q("kvq_blocks"), d(want.blocks));
  EXPECT_EQ(q("kvq_pool_pages{state=\"used\"}"), d(want.used / page));
  EXPECT_EQ(q("sum(kvq_pool_pages)"), d(initial.pages_total()));
  EXPECT_EQ(q("kvq_pool_capacity_bytes"), d(initial.pool_capacity_bytes()));
  EXPECT_DOUBLE_EQ(q("kvq_pool_fragmentation_ratio"),
                   (d(want.used) - d(want.stored)) / d(want.used));
  for (const auto& [ns, count] : want.blocks_by_namespace) {
    EXPECT_EQ(q(absl::StrCat("kvq_namespace_blocks{namespace=\"", ns, "\"}")),
              d(count))
        << ns;
  }

  // Traffic.
  EXPECT_EQ(q("sum(kvq_puts_total)"), d(want.stored_blocks));
  for (const char* dtype : {"fp16", "bf16", "fp32"}) {
    EXPECT_EQ(q(absl::StrCat("kvq_puts_total{dtype=\"", dtype, "\"}")),
              d(want.puts_by_dtype[dtype]))
        << dtype;
  }
  EXPECT_EQ(q("kvq_put_errors_total{code=\"INVALID_ARGUMENT\"}"),
            d(want.put_errors_invalid));
  EXPECT_EQ(q("kvq_received_bytes_total"), d(want.received_bytes));
  EXPECT_EQ(q("kvq_get_keys_total{result=\"hit\"}"), d(want.hits));
  EXPECT_EQ(q("kvq_get_keys_total{result=\"miss\"}"), d(want.misses));
  EXPECT_EQ(q("kvq_sent_bytes_total"), d(want.sent_bytes));
  EXPECT_EQ(q("kvq_lookup_keys_total{result=\"present\"}"),
            d(want.lookup_present));
  EXPECT_EQ(q("kvq_lookup_keys_total{result=\"absent\"}"),
            d(want.lookup_absent));
  EXPECT_EQ(q("kvq_deletes_total"), d(want.deleted));
  EXPECT_EQ(q("kvq_evictions_total{reason=\"lru\"}"), 0);

  // Latency histograms: one observation per RPC, by method.
  const std::map<std::string, uint64_t> rpcs = {{"put", want.put_rpcs},
                                                {"get", want.get_rpcs},
                                                {"lookup", want.lookup_rpcs},
                                                {"delete", want.delete_rpcs}};
  for (const auto& [rpc, count] : rpcs) {
    const std::string sel = absl::StrCat("{rpc=\"", rpc, "\"}");
    EXPECT_EQ(q(absl::StrCat("kvq_rpc_duration_seconds_count", sel)), d(count))
        << rpc;
    EXPECT_EQ(q(absl::StrCat("kvq_rpc_duration_seconds_bucket{rpc=\"", rpc,
                             "\",le=\"+Inf\"}")),
              d(count))
        << rpc;
    EXPECT_EQ(q(absl::StrCat("sum(kvq_rpcs_total", sel, ")")), d(count)) << rpc;
    EXPECT_GT(q(absl::StrCat("kvq_rpc_duration_seconds_sum", sel)), 0) << rpc;
  }
  // Prometheus can compute quantiles from the buckets: a finite latency.
  const double p99 =
      q("histogram_quantile(0.99, sum by (le) "
        "(kvq_rpc_duration_seconds_bucket{rpc=\"put\"}))");
  EXPECT_TRUE(std::isfinite(p99) && p99 > 0) << p99;
  // Stages: each hit was sent; each stored block was received first.
  EXPECT_EQ(q("kvq_stage_duration_seconds_count{stage=\"send\"}"),
            d(want.hits));
  EXPECT_GE(q("kvq_stage_duration_seconds_count{stage=\"receive\"}"),
            d(want.stored_blocks));
  // ... and assembled, once per block received, within its receive time.
  EXPECT_EQ(q("kvq_stage_duration_seconds_count{stage=\"assemble\"}"),
            q("kvq_stage_duration_seconds_count{stage=\"receive\"}"));
  EXPECT_LE(q("kvq_stage_duration_seconds_sum{stage=\"assemble\"}"),
            q("kvq_stage_duration_seconds_sum{stage=\"receive\"}"));
  // Each received block waited once for the thread that stores it and was
  // stored (or refused: the NaN block) once; each key a Get asked for was
  // fetched once; each of those went through the pool's index once (the NaN
  // block too: the pool reserved its pages before the kernel refused it).
  EXPECT_EQ(q("kvq_stage_duration_seconds_count{stage=\"queue\"}"),
            q("kvq_stage_duration_seconds_count{stage=\"receive\"}"));
  EXPECT_EQ(q("kvq_stage_duration_seconds_count{stage=\"store\"}"),
            q("kvq_stage_duration_seconds_count{stage=\"receive\"}"));
  // Every put result written back, stored or refused, was timed once.
  EXPECT_EQ(q("kvq_stage_duration_seconds_count{stage=\"answer\"}"),
            q("sum(kvq_puts_total)") + q("sum(kvq_put_errors_total)"));
  EXPECT_EQ(q("kvq_stage_duration_seconds_count{stage=\"fetch\"}"),
            d(want.hits + want.misses));
  EXPECT_EQ(q("kvq_stage_duration_seconds_count{stage=\"index\"}"),
            q("kvq_stage_duration_seconds_count{stage=\"receive\"}") +
                d(want.hits + want.misses));

  // Quality: every stored block measured, each well under 10% error.
  EXPECT_EQ(q("kvq_quantization_relative_l2_error_count"),
            d(want.stored_blocks));
  EXPECT_EQ(q("kvq_quantization_relative_l2_error_bucket{le=\"0.1\"}"),
            d(want.stored_blocks));

  // Process.
  EXPECT_EQ(q(absl::StrCat("kvq_build_info{backend=\"", TestDevice(), "\"}")),
            1);
  EXPECT_GT(q("kvq_uptime_seconds"), 0);
  EXPECT_LE(q("kvq_start_time_seconds"),
            absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));

  // The Stats RPC reports the same numbers.
  const v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.logical_bytes(), want.logical);
  EXPECT_EQ(stats.pool_used_bytes(), want.used);
  EXPECT_EQ(stats.bytes_saved(), want.logical - want.used);
  EXPECT_EQ(stats.puts(), want.stored_blocks);
  EXPECT_EQ(stats.hits(), want.hits);
  EXPECT_EQ(stats.misses(), want.misses);
  EXPECT_EQ(stats.gets(), want.hits + want.misses);
  EXPECT_EQ(stats.deletes(), want.deleted);
  EXPECT_EQ(stats.blocks(), want.blocks);
}

TEST_F(PrometheusScrapeTest, PromtoolAcceptsALiveScrape) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  // Traffic first, so that every family has samples worth checking.
  for (int i = 0; i < 5; ++i) {
    const TestBlock block =
        RandomBlock(rng, "ns \"quoted\"", absl::StrCat("k", i), v1::DTYPE_FP16,
                    Shape(2, 16, 4, 64));
    ASSERT_TRUE(client_->Put(block.ToPut()).ok());
    ASSERT_TRUE(client_->GetOne(block.ns, block.key).ok());
  }
  EXPECT_FALSE(client_->GetOne("ns", "missing").ok());
  absl::StatusOr<std::string> text =
      HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(text.ok()) << text.status();
  const absl::Status check = PromtoolCheckMetrics(*text);
  EXPECT_TRUE(check.ok()) << check.message() << "\n" << *text;
}

}  // namespace
}  // namespace kvq::testing
