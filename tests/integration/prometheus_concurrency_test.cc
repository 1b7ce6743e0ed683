// Many client streams put and get while /metrics is scraped in a loop: every
// scrape is a valid exposition (and promtool accepts one taken mid-load),
// counters never go down between scrapes, and the final counts are exact.

#include <atomic>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_testing.h"
#include "tests/integration/prometheus_testing.h"
#include "tests/unit/metrics_exposition_parser.h"

namespace kvq::testing {
namespace {

class PrometheusConcurrencyTest : public ServerTest {};

// Counter samples and histogram buckets/counts by series.
std::map<std::string, double> MonotonicSeries(const Exposition& e) {
  std::map<std::string, double> series;
  for (const auto& [name, family] : e.families()) {
    if (family.type != "counter" && family.type != "histogram") continue;
    for (const ParsedSample& sample : family.samples) {
      if (sample.name.ends_with("_sum")) continue;
      std::string key = sample.name;
      for (const auto& [label, value] : sample.labels) {
        absl::StrAppend(&key, ",", label, "=", value);
      }
      series[key] = sample.value;
    }
  }
  return series;
}

// What one client thread did.
struct Tally {
  uint64_t put_rpcs = 0, puts = 0, get_rpcs = 0, hits = 0, misses = 0;
  uint64_t lookup_rpcs = 0, lookup_keys = 0;
  uint64_t received = 0, sent = 0;
};

TEST_F(PrometheusConcurrencyTest, ScrapesStayValidAndFinalCountsAreExact) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  constexpr int kClients = 6;
  constexpr int kRounds = 30;

  std::vector<Tally> tallies(kClients);
  std::vector<std::unique_ptr<Client>> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(NewClient());  // one connection each
    ASSERT_NE(clients.back(), nullptr);
  }
  std::atomic<int> running{kClients};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(seed + c);
      Tally& tally = tallies[c];
      Client& client = *clients[c];
      const std::string ns = absl::StrCat("tenant-", c % 3);
      for (int round = 0; round < kRounds; ++round) {
        // A pipelined stream of 1-3 blocks.
        std::vector<TestBlock> blocks;
        const int count = 1 + static_cast<int>(rng() % 3);
        for (int b = 0; b < count; ++b) {
          blocks.push_back(
              RandomBlock(rng, ns, absl::StrCat("c", c, "-r", round, "-b", b),
                          rng() % 2 ? v1::DTYPE_FP16 : v1::DTYPE_BF16,
                          Shape(2, 16, 4, 64)));
        }
        std::vector<BlockToPut> batch;
        for (const TestBlock& block : blocks) batch.push_back(block.ToPut());
        absl::StatusOr<std::vector<PutResult>> put = client.PutMany(batch);
        ++tally.put_rpcs;
        if (!put.ok()) {
          ADD_FAILURE() << put.status();
          break;
        }
        for (size_t b = 0; b < blocks.size(); ++b) {
          EXPECT_TRUE((*put)[b].status.ok()) << (*put)[b].status;
          ++tally.puts;
          tally.received += blocks[b].data.size();
        }
        // Get what was put and one key that is not there.
        std::vector<std::string> keys = {blocks.front().key,
                                         absl::StrCat("absent-", round)};
        absl::StatusOr<std::vector<GetResult>> got = client.Get(ns, keys);
        ++tally.get_rpcs;
        if (!got.ok()) {
          ADD_FAILURE() << got.status();
          break;
        }
        EXPECT_TRUE((*got)[0].status.ok()) << (*got)[0].status;
        EXPECT_EQ((*got)[1].status.code(), absl::StatusCode::kNotFound);
        ++tally.hits;
        ++tally.misses;
        tally.sent += (*got)[0].data.size();
        if (round % 5 == 0) {
          absl::StatusOr<LookupResult> lookup = client.Lookup(ns, keys);
          EXPECT_TRUE(lookup.ok()) << lookup.status();
          ++tally.lookup_rpcs;
          tally.lookup_keys += keys.size();
        }
      }
      running.fetch_sub(1);
    });
  }

  // Scrape in a loop while the clients run. A failure stops the loop (the
  // client threads are joined before the test may return).
  int scrapes = 0;
  std::string mid_load_scrape;
  std::string failure;
  std::map<std::string, double> previous;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while ((running.load() > 0 || scrapes < 2) && failure.empty()) {
    if (absl::Now() > deadline) {
      failure = "clients still running after 120 s";
      break;
    }
    absl::StatusOr<std::string> text =
        HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
    if (!text.ok()) {
      failure = std::string(text.status().message());
      break;
    }
    absl::StatusOr<Exposition> parsed = Exposition::Parse(*text);
    if (!parsed.ok()) {
      failure =
          absl::StrCat("scrape ", scrapes, ": ", parsed.status().message());
      break;
    }
    std::map<std::string, double> current = MonotonicSeries(*parsed);
    for (const auto& [key, value] : previous) {
      const auto it = current.find(key);
      if (it == current.end()) {
        failure = absl::StrCat(key, " disappeared at scrape ", scrapes);
      } else if (it->second < value) {
        failure = absl::StrCat(key, " went down from ", value, " to ",
                               it->second, " at scrape ", scrapes);
      }
    }
    previous = std::move(current);
    if (running.load() > 0) mid_load_scrape = *std::move(text);
    ++scrapes;
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(failure, "");
  std::cout << scrapes << " scrapes while " << kClients
            << " clients were running\n";

  Tally sum;
  for (const Tally& t : tallies) {
    sum.put_rpcs += t.put_rpcs;
    sum.puts += t.puts;
    sum.get_rpcs += t.get_rpcs;
    sum.hits += t.hits;
    sum.misses += t.misses;
    sum.lookup_rpcs += t.lookup_rpcs;
    sum.lookup_keys += t.lookup_keys;
    sum.received += t.received;
    sum.sent += t.sent;
  }
  absl::StatusOr<std::string> text =
      HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<Exposition> last = Exposition::Parse(*text);
  ASSERT_TRUE(last.ok()) << last.status();
  const auto d = [](uint64_t v) { return static_cast<double>(v); };
  EXPECT_EQ(last->Sum("kvq_puts_total"), d(sum.puts));
  EXPECT_EQ(last->Value("kvq_received_bytes_total"), d(sum.received));
  EXPECT_EQ(last->Value("kvq_get_keys_total", {{"result", "hit"}}),
            d(sum.hits));
  EXPECT_EQ(last->Value("kvq_get_keys_total", {{"result", "miss"}}),
            d(sum.misses));
  EXPECT_EQ(last->Value("kvq_sent_bytes_total"), d(sum.sent));
  EXPECT_EQ(last->Sum("kvq_lookup_keys_total"), d(sum.lookup_keys));
  EXPECT_EQ(last->Value("kvq_rpc_duration_seconds_count", {{"rpc", "put"}}),
            d(sum.put_rpcs));
  EXPECT_EQ(last->Value("kvq_rpc_duration_seconds_count", {{"rpc", "get"}}),
            d(sum.get_rpcs));
  EXPECT_EQ(last->Value("kvq_rpc_duration_seconds_count", {{"rpc", "lookup"}}),
            d(sum.lookup_rpcs));
  EXPECT_EQ(last->Value("kvq_rpcs_total", {{"rpc", "put"}, {"code", "OK"}}),
            d(sum.put_rpcs));
  EXPECT_EQ(last->Value("kvq_blocks"), d(sum.puts));

  // promtool accepts a scrape taken while the load ran.
  ASSERT_FALSE(mid_load_scrape.empty()) << "no scrape while clients ran";
  const absl::Status check = PromtoolCheckMetrics(mid_load_scrape);
  EXPECT_TRUE(check.ok()) << check.message();
}

}  // namespace
}  // namespace kvq::testing
