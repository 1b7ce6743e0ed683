// A real Prometheus server for integration tests, and promtool.
//
// Contract:
//   - PrometheusProcess::Start runs the Debian `prometheus` binary
//     (KVQ_PROMETHEUS_PATH, found by tests/integration/prometheus.cmake) on a
//     free loopback port, with a generated config scraping `targets` (job
//     "kvq") every second and its TSDB in a private temporary directory, and
//     waits (bounded) until /-/ready answers 200. It fails with the tail of
//     Prometheus' log if Prometheus exits or is not ready in time.
//   - Prometheus gets SIGKILL if the thread that started it dies: start it
//     from the test's main thread. The destructor sends SIGTERM, waits up to
//     30 s (then SIGKILL) and removes the temporary directory.
//   - Query() asks /api/v1/query for an instant vector; WaitForScrapeAfter()
//     waits until Prometheus holds a sample of up{job="kvq"} scraped after a
//     given time (its first scrape comes ~5 s after start: target updates
//     are applied every 5 s).
//   - PromtoolCheckMetrics runs `promtool check metrics` (KVQ_PROMTOOL_PATH)
//     on an exposition: OK only if promtool exits 0 and prints nothing.
//   - When CMake did not find the binaries these fail with a message saying
//     to run scripts/setup; nothing is skipped.

#ifndef KVQ_TESTS_INTEGRATION_PROMETHEUS_TESTING_H_
#define KVQ_TESTS_INTEGRATION_PROMETHEUS_TESTING_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvq::testing {

// One element of an instant vector.
struct PromSample {
  std::map<std::string, std::string> metric;  // labels, with __name__
  double timestamp = 0;                       // seconds since the epoch
  double value = 0;
};

class PrometheusProcess {
 public:
  // `targets`: "host:port" of the /metrics endpoints to scrape.
  static absl::StatusOr<std::unique_ptr<PrometheusProcess>> Start(
      const std::vector<std::string>& targets,
      absl::Duration ready_timeout = absl::Seconds(30));
  ~PrometheusProcess();

  PrometheusProcess(const PrometheusProcess&) = delete;
  PrometheusProcess& operator=(const PrometheusProcess&) = delete;

  int port() const { return port_; }

  // GET /api/v1/query?query=`promql`: the samples of the instant vector.
  absl::StatusOr<std::vector<PromSample>> Query(const std::string& promql);
  // The value of a query that must return exactly one sample.
  absl::StatusOr<double> QueryOne(const std::string& promql);

  // Waits until every target has a sample of `up` scraped after `after`, and
  // each target was up then. DEADLINE_EXCEEDED after `timeout`.
  absl::Status WaitForScrapeAfter(absl::Time after,
                                  absl::Duration timeout = absl::Seconds(30));

  std::string log_tail(size_t bytes = 4096) const;

 private:
  PrometheusProcess() = default;
  bool Running();

  pid_t pid_ = -1;
  bool reaped_ = false;
  int port_ = 0;
  size_t targets_ = 0;
  std::string dir_;
  std::string log_path_;
};

// `promtool check metrics` on `exposition`.
absl::Status PromtoolCheckMetrics(const std::string& exposition);

}  // namespace kvq::testing

#endif  // KVQ_TESTS_INTEGRATION_PROMETHEUS_TESTING_H_
