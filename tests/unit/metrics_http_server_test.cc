// MetricsHttpServer: /metrics with the exposition content type, /healthz,
// port 0, and errors a person can act on.

#include <httplib.h>

#include <random>
#include <string>

#include "gtest/gtest.h"
#include "server/metrics/server_metrics.h"
#include "tests/unit/metrics_exposition_parser.h"

namespace kvq {
namespace {

using ::kvq::testing::Exposition;

TEST(MetricsHttpServerTest, ServesTheExpositionWithItsContentType) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  PoolStats pool;
  pool.page_bytes = 4096;
  pool.pages_total = 1000;
  pool.pages_used = std::uniform_int_distribution<uint64_t>(1, 1000)(rng);
  ServerMetrics metrics(BuildInfo{"0.1.0", "rev", "cpu", "test"},
                        [&] { return pool; });
  const int puts = std::uniform_int_distribution<int>(1, 50)(rng);
  for (int i = 0; i < puts; ++i) metrics.CountPut(DType::kFp16, 1024);

  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", &metrics);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_connection_timeout(10);
  client.set_read_timeout(10);
  const httplib::Result response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"),
            "text/plain; version=0.0.4; charset=utf-8");
  absl::StatusOr<Exposition> parsed = Exposition::Parse(response->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Value("kvq_puts_total", {{"dtype", "fp16"}}), puts);
  EXPECT_EQ(parsed->Value("kvq_pool_pages", {{"state", "used"}}),
            pool.pages_used);

  const httplib::Result health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");

  const httplib::Result missing = client.Get("/nothing-here");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST(MetricsHttpServerTest, RefusesAnAddressItCannotParse) {
  ServerMetrics metrics(BuildInfo{}, nullptr);
  for (const char* address :
       {"", "9400", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", ":9400",
        "127.0.0.1:70000", "127.0.0.1:-1"}) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start(address, &metrics);
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
        << address;
    EXPECT_NE(server.status().message().find("host:port"),
              std::string_view::npos)
        << server.status();
  }
}

TEST(MetricsHttpServerTest, RefusesAPortThatIsTaken) {
  ServerMetrics metrics(BuildInfo{}, nullptr);
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> first =
      MetricsHttpServer::Start("127.0.0.1:0", &metrics);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start(taken, &metrics);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(taken), std::string_view::npos)
      << second.status();
}

TEST(MetricsHttpServerTest, StopsPromptlyRightAfterStarting) {
  // Destroying the server before its accept loop ran must not hang.
  ServerMetrics metrics(BuildInfo{}, nullptr);
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start("127.0.0.1:0", &metrics);
    ASSERT_TRUE(server.ok()) << server.status();
  }
}

}  // namespace
}  // namespace kvq
