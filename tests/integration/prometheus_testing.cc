#include "tests/integration/prometheus_testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tests/integration/server_process.h"

#ifndef KVQ_PROMETHEUS_PATH
#error \
    "KVQ_PROMETHEUS_PATH must be defined (tests/integration/prometheus.cmake)"
#endif
#ifndef KVQ_PROMTOOL_PATH
#error "KVQ_PROMTOOL_PATH must be defined (tests/integration/prometheus.cmake)"
#endif

namespace kvq::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(100);
constexpr char kSetupHint[] =
    " was not found when CMake configured this build: run scripts/setup (it "
    "installs the Debian package `prometheus`), then re-run cmake";

absl::Status MissingBinary(const char* path, const char* name) {
  if (std::string(path).empty()) {
    return absl::FailedPreconditionError(absl::StrCat(name, kSetupHint));
  }
  if (!std::filesystem::exists(path)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is gone: run scripts/setup and re-run cmake"));
  }
  return absl::OkStatus();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// A port that was free a moment ago (the kernel's pick for port 0).
absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  const bool ok =
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(fd);
  if (!ok) return absl::InternalError(std::strerror(errno));
  return ntohs(address.sin_port);
}

std::string ScrapeConfig(const std::vector<std::string>& targets) {
  std::vector<std::string> quoted;
  for (const std::string& target : targets) {
    quoted.push_back(absl::StrCat("'", target, "'"));
  }
  return absl::StrCat(
      "global:\n"
      "  scrape_interval: 1s\n"
      "  scrape_timeout: 1s\n"
      "  evaluation_interval: 1s\n"
      "scrape_configs:\n"
      "  - job_name: kvq\n"
      "    static_configs:\n"
      "      - targets: [",
      absl::StrJoin(quoted, ", "), "]\n");
}

// Forks and execs `argv` with stdout and stderr to `log_fd`, and SIGKILL for
// the child if this thread dies. Only async-signal-safe calls after fork.
absl::StatusOr<pid_t> Spawn(std::vector<std::string> argv, int log_fd) {
  std::vector<char*> c_argv;
  for (std::string& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(c_argv[0], c_argv.data());
    _exit(127);
  }
  return pid;
}

// The value of `field` in a JSON object, or null.
const google::protobuf::Value* Field(const google::protobuf::Struct& object,
                                     const std::string& field) {
  const auto it = object.fields().find(field);
  return it == object.fields().end() ? nullptr : &it->second;
}

absl::StatusOr<std::vector<PromSample>> ParseVector(const std::string& json) {
  google::protobuf::Struct body;
  if (!google::protobuf::util::JsonStringToMessage(json, &body).ok()) {
    return absl::InternalError(absl::StrCat("not JSON: ", json));
  }
  const google::protobuf::Value* status = Field(body, "status");
  const google::protobuf::Value* data = Field(body, "data");
  if (status == nullptr || status->string_value() != "success" ||
      data == nullptr || !data->has_struct_value()) {
    return absl::InternalError(absl::StrCat("query failed: ", json));
  }
  const google::protobuf::Value* type =
      Field(data->struct_value(), "resultType");
  const google::protobuf::Value* result = Field(data->struct_value(), "result");
  if (type == nullptr || type->string_value() != "vector" ||
      result == nullptr || !result->has_list_value()) {
    return absl::InternalError(absl::StrCat("not an instant vector: ", json));
  }
  std::vector<PromSample> samples;
  for (const google::protobuf::Value& element : result->list_value().values()) {
    PromSample sample;
    const google::protobuf::Value* metric =
        Field(element.struct_value(), "metric");
    const google::protobuf::Value* value =
        Field(element.struct_value(), "value");
    if (metric == nullptr || value == nullptr ||
        value->list_value().values_size() != 2) {
      return absl::InternalError(absl::StrCat("bad sample in: ", json));
    }
    for (const auto& [name, label] : metric->struct_value().fields()) {
      sample.metric[name] = label.string_value();
    }
    sample.timestamp = value->list_value().values(0).number_value();
    const std::string& text = value->list_value().values(1).string_value();
    if (!absl::SimpleAtod(text, &sample.value)) {
      return absl::InternalError(absl::StrCat("bad value \"", text, "\""));
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrometheusProcess>> PrometheusProcess::Start(
    const std::vector<std::string>& targets, absl::Duration ready_timeout) {
  if (absl::Status missing = MissingBinary(KVQ_PROMETHEUS_PATH, "prometheus");
      !missing.ok()) {
    return missing;
  }
  std::unique_ptr<PrometheusProcess> prometheus(new PrometheusProcess());
  char dir_template[] = "/tmp/kvq-test-prometheus-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  prometheus->dir_ = dir_template;
  prometheus->log_path_ = prometheus->dir_ + "/prometheus.log";
  prometheus->targets_ = targets.size();
  const std::string config_path = prometheus->dir_ + "/prometheus.yml";
  std::ofstream(config_path) << ScrapeConfig(targets);

  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  prometheus->port_ = *port;
  const std::vector<std::string> argv = {
      KVQ_PROMETHEUS_PATH,
      absl::StrCat("--config.file=", config_path),
      absl::StrCat("--storage.tsdb.path=", prometheus->dir_, "/data"),
      absl::StrCat("--web.listen-address=127.0.0.1:", *port),
      "--log.level=warn",
  };
  const int log_fd =
      open(prometheus->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("open ", prometheus->log_path_,
                                            ": ", std::strerror(errno)));
  }
  absl::StatusOr<pid_t> pid = Spawn(argv, log_fd);
  close(log_fd);
  if (!pid.ok()) return pid.status();
  prometheus->pid_ = *pid;

  httplib::Client http("127.0.0.1", *port);
  http.set_connection_timeout(1);
  http.set_read_timeout(5);
  const absl::Time deadline = absl::Now() + ready_timeout;
  while (true) {
    const httplib::Result ready = http.Get("/-/ready");
    if (ready && ready->status == 200) return prometheus;
    if (!prometheus->Running()) {
      return absl::UnavailableError(absl::StrCat(
          "prometheus exited before it was ready; command: ",
          absl::StrJoin(argv, " "), "\nlog:\n", prometheus->log_tail()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "prometheus not ready within ", absl::FormatDuration(ready_timeout),
          "; command: ", absl::StrJoin(argv, " "), "\nlog:\n",
          prometheus->log_tail()));
    }
    absl::SleepFor(kPollInterval);
  }
}

bool PrometheusProcess::Running() {
  if (pid_ <= 0 || reaped_) return false;
  int status = 0;
  const pid_t done = waitpid(pid_, &status, WNOHANG);
  if (done == pid_ || (done < 0 && errno != EINTR)) {
    reaped_ = true;
    return false;
  }
  return true;
}

PrometheusProcess::~PrometheusProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (Running() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (Running()) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string PrometheusProcess::log_tail(size_t bytes) const {
  const std::string log = ReadWholeFile(log_path_);
  return log.size() <= bytes ? log : log.substr(log.size() - bytes);
}

absl::StatusOr<std::vector<PromSample>> PrometheusProcess::Query(
    const std::string& promql) {
  httplib::Client http("127.0.0.1", port_);
  http.set_connection_timeout(5);
  http.set_read_timeout(10);
  const httplib::Params params = {{"query", promql}};
  const httplib::Result result =
      http.Get("/api/v1/query", params, httplib::Headers());
  if (!result) {
    return absl::UnavailableError(absl::StrCat(
        "query ", promql, ": ", httplib::to_string(result.error())));
  }
  if (result->status != 200) {
    return absl::InternalError(absl::StrCat("query ", promql, ": HTTP ",
                                            result->status, " ", result->body));
  }
  return ParseVector(result->body);
}

absl::StatusOr<double> PrometheusProcess::QueryOne(const std::string& promql) {
  absl::StatusOr<std::vector<PromSample>> samples = Query(promql);
  if (!samples.ok()) return samples.status();
  if (samples->size() != 1) {
    return absl::NotFoundError(absl::StrCat(
        "query ", promql, " returned ", samples->size(), " samples, not 1"));
  }
  return samples->front().value;
}

absl::Status PrometheusProcess::WaitForScrapeAfter(absl::Time after,
                                                   absl::Duration timeout) {
  const double after_seconds = absl::ToDoubleSeconds(after - absl::UnixEpoch());
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "no answer";
  while (true) {
    // timestamp(up) is when each target's last scrape started.
    absl::StatusOr<std::vector<PromSample>> scraped =
        Query("timestamp(up{job=\"kvq\"})");
    absl::StatusOr<std::vector<PromSample>> up = Query("up{job=\"kvq\"}");
    if (scraped.ok() && up.ok()) {
      size_t fresh = 0;
      for (const PromSample& sample : *scraped) {
        if (sample.value > after_seconds) ++fresh;
      }
      double up_targets = 0;
      for (const PromSample& sample : *up) up_targets += sample.value;
      if (fresh == targets_ && up_targets == static_cast<double>(targets_)) {
        return absl::OkStatus();
      }
      last = absl::StrCat(fresh, " of ", targets_, " targets scraped after ",
                          after_seconds, ", ", up_targets, " up");
    } else {
      last = std::string(scraped.ok() ? up.status().message()
                                      : scraped.status().message());
    }
    if (!Running()) {
      return absl::UnavailableError(
          absl::StrCat("prometheus exited\nlog:\n", log_tail()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no scrape of every target within ", absl::FormatDuration(timeout),
          ": ", last, "\nprometheus log:\n", log_tail()));
    }
    absl::SleepFor(kPollInterval);
  }
}

absl::Status PromtoolCheckMetrics(const std::string& exposition) {
  if (absl::Status missing = MissingBinary(KVQ_PROMTOOL_PATH, "promtool");
      !missing.ok()) {
    return missing;
  }
  char dir_template[] = "/tmp/kvq-test-promtool-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  const std::string dir = dir_template;
  const std::string path = dir + "/metrics.txt";
  std::ofstream(path, std::ios::binary) << exposition;
  // promtool reads the exposition from stdin.
  absl::StatusOr<ProcessOutput> output =
      RunProcess({"/bin/sh", "-c",
                  absl::StrCat("exec '", KVQ_PROMTOOL_PATH,
                               "' check metrics < '", path, "'")},
                 absl::Seconds(30));
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  if (!output.ok()) return output.status();
  if (!output->status.exited || output->status.code != 0 ||
      !output->out.empty() || !output->err.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("promtool check metrics: ", output->status.ToString(),
                     "\n", output->out, output->err));
  }
  return absl::OkStatus();
}

}  // namespace kvq::testing
