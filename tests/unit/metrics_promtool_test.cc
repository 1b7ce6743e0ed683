// `promtool check metrics` (Prometheus' own parser and linter) accepts what
// Render() writes, with every family populated and odd namespace names.
//
// promtool comes from the Debian package `prometheus`; CMake finds it and
// passes its path as KVQ_PROMTOOL_PATH. Without it this test fails (run
// scripts/setup): a skipped check would pass CI without checking anything.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "server/metrics/server_metrics.h"

namespace kvq {
namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs `promtool check metrics < path`, capturing stdout and stderr.
CommandResult CheckMetrics(const std::filesystem::path& path) {
  const std::string command = std::string("'") + KVQ_PROMTOOL_PATH +
                              "' check metrics < '" + path.string() + "' 2>&1";
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    result.output.append(buffer, n);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class PromtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(std::string(KVQ_PROMTOOL_PATH), "")
        << "promtool was not found when CMake configured this build. Run "
           "scripts/setup (it installs the Debian package `prometheus`), "
           "then re-run cmake.";
    ASSERT_TRUE(std::filesystem::exists(KVQ_PROMTOOL_PATH))
        << KVQ_PROMTOOL_PATH << " is gone: run scripts/setup and re-run cmake";
    dir_ = std::filesystem::temp_directory_path() /
           ("kvq_promtool_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  CommandResult Check(const std::string& exposition) {
    const std::filesystem::path path = dir_ / "metrics.txt";
    std::ofstream(path, std::ios::binary) << exposition;
    return CheckMetrics(path);
  }

  std::filesystem::path dir_;
};

TEST_F(PromtoolTest, AcceptsTheRenderedExpositionWithEveryFamilyPopulated) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const auto uniform = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };

  PoolStats pool;
  pool.page_bytes = 65536;
  pool.pages_total = uniform(100, 10000);
  pool.pages_used = uniform(1, pool.pages_total);
  pool.stored_bytes = uniform(1, pool.pages_used * pool.page_bytes);
  pool.logical_bytes = pool.stored_bytes * 2;
  pool.blocks = uniform(1, 1000);
  pool.evictions = uniform(0, 100);
  // More namespaces than labels, with characters that need escaping.
  for (uint64_t i = 0; i < kMaxNamespaceLabels + 8; ++i) {
    pool.namespaces.push_back(
        {.ns = "ns \"" + std::to_string(i) + "\"\\\n\xC3\xA9\xFF",
         .blocks = uniform(1, 100),
         .logical_bytes = uniform(1, 1 << 30),
         .stored_bytes = uniform(1, 1 << 29)});
  }
  ServerMetrics metrics(
      BuildInfo{"0.1.0", "0123456789ab", "cpu", "AMD \"EPYC\" 7B13\\x"},
      [&] { return pool; });
  for (int i = 0; i < 500; ++i) {
    metrics.ObserveRpc(static_cast<Rpc>(uniform(0, 4)),
                       static_cast<int>(uniform(0, 16)),
                       1e-6 * uniform(1, 20000000));
    metrics.ObserveStage(static_cast<Stage>(uniform(0, 5)),
                         1e-6 * uniform(1, 20000000));
    metrics.CountPut(static_cast<DType>(uniform(1, 3)), uniform(1, 1 << 20));
    metrics.CountPutError(static_cast<int>(uniform(1, 16)));
    metrics.CountGetHit(uniform(1, 1 << 20));
    metrics.CountGetMiss();
    metrics.CountLookupKeys(10, uniform(0, 10));
    metrics.CountDeletes(uniform(0, 3));
    metrics.ObserveQuantError(1e-6 * uniform(1, 200000));
  }

  const CommandResult result = Check(metrics.Render());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "") << "promtool found problems";
}

TEST_F(PromtoolTest, RejectsAnExpositionThatBreaksTheConventions) {
  // Shows that the check above can fail: a counter without _total.
  const CommandResult result = Check(
      "# HELP kvq_things Things.\n# TYPE kvq_things counter\n"
      "kvq_things 1\n");
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("_total"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace kvq
