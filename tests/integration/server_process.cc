#include "tests/integration/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#ifndef KVQ_SERVER_PATH
#error "KVQ_SERVER_PATH must be defined (tests/integration/server.cmake)"
#endif

extern char** environ;

namespace kvq::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

ExitStatus DecodeWaitStatus(int wait_status) {
  ExitStatus status;
  if (WIFEXITED(wait_status)) {
    status.exited = true;
    status.code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    status.signal = WTERMSIG(wait_status);
  }
  return status;
}

// Waits up to `timeout` for `pid`; nullopt-like false if still running.
bool WaitFor(pid_t pid, absl::Duration timeout, ExitStatus* status) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int wait_status = 0;
    const pid_t done = waitpid(pid, &wait_status, WNOHANG);
    if (done == pid) {
      *status = DecodeWaitStatus(wait_status);
      return true;
    }
    if (done < 0 && errno != EINTR) {
      *status = ExitStatus{};  // not our child any more: treat as gone
      return true;
    }
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(kPollInterval);
  }
}

// The environment for children: ours without KVQ_* server settings.
std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const absl::string_view entry(*e);
    if (absl::StartsWith(entry, "KVQ_") &&
        !absl::StartsWith(entry, "KVQ_TEST_")) {
      continue;
    }
    env.emplace_back(entry);
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Forks and execs `argv` with stdout / stderr redirected to the given file
// descriptors (or files). Everything the child runs between fork and exec is
// async-signal-safe, as it must be in a multi-threaded parent.
absl::StatusOr<pid_t> Spawn(std::vector<std::string> argv, int stdout_fd,
                            int stderr_fd, bool die_with_parent) {
  std::vector<std::string> env = ChildEnvironment();
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
    }
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(stdout_fd, STDOUT_FILENO);
    dup2(stderr_fd, STDERR_FILENO);
    execve(c_argv[0], c_argv.data(), c_env.data());
    static const char kExecFailed[] = "exec failed\n";
    (void)!write(STDERR_FILENO, kExecFailed, sizeof(kExecFailed) - 1);
    _exit(127);
  }
  return pid;
}

// Parses "grpc_port=N\nmetrics_port=M\n".
absl::Status ParseReadyFile(const std::string& text, int* grpc_port,
                            int* metrics_port) {
  *grpc_port = 0;
  *metrics_port = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    int value = 0;
    if (!absl::SimpleAtoi(kv.second, &value)) continue;
    if (kv.first == "grpc_port") *grpc_port = value;
    if (kv.first == "metrics_port") *metrics_port = value;
  }
  if (*grpc_port <= 0 || *metrics_port <= 0) {
    return absl::InternalError(absl::StrCat(
        "ready file lacks grpc_port / metrics_port: \"", text, "\""));
  }
  return absl::OkStatus();
}

}  // namespace

std::string TestDevice() {
  const char* device = std::getenv("KVQ_TEST_DEVICE");
  return device != nullptr && *device != '\0' ? device : "cpu";
}

std::string BinaryPath(const char* env_name, const char* built) {
  const char* path = std::getenv(env_name);
  return path != nullptr && *path != '\0' ? path : built;
}

std::string ExitStatus::ToString() const {
  if (exited) return absl::StrCat("exited with code ", code);
  if (signal != 0) {
    return absl::StrCat("killed by signal ", signal, " (", strsignal(signal),
                        ")");
  }
  return "ended in an unknown way";
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const ServerOptions& options) {
  std::unique_ptr<ServerProcess> server(new ServerProcess());
  char dir_template[] = "/tmp/kvq-test-server-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  server->dir_ = dir_template;
  server->log_path_ = server->dir_ + "/server.log";
  const std::string ready_path = server->dir_ + "/ready";

  std::vector<std::string> argv = {
      BinaryPath("KVQ_TEST_SERVER_BIN", KVQ_SERVER_PATH),
      "--listen=127.0.0.1:0",
      "--metrics_listen=127.0.0.1:0",
      absl::StrCat("--device=", TestDevice()),
      absl::StrCat("--ready_file=", ready_path),
  };
  argv.insert(argv.end(), options.flags.begin(), options.flags.end());

  const int log_fd =
      open(server->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("open ", server->log_path_, ": ", std::strerror(errno)));
  }
  absl::StatusOr<pid_t> pid =
      Spawn(argv, log_fd, log_fd, /*die_with_parent=*/true);
  close(log_fd);
  if (!pid.ok()) return pid.status();
  server->pid_ = *pid;

  const absl::Time deadline = absl::Now() + options.ready_timeout;
  while (true) {
    if (access(ready_path.c_str(), F_OK) == 0) {
      absl::Status parsed =
          ParseReadyFile(ReadWholeFile(ready_path), &server->grpc_port_,
                         &server->metrics_port_);
      if (!parsed.ok()) {
        return absl::Status(parsed.code(),
                            absl::StrCat(parsed.message(), "\nserver log:\n",
                                         server->log_tail()));
      }
      return server;
    }
    if (!server->Running()) {
      return absl::UnavailableError(absl::StrCat(
          "kvq-server ", server->exit_status_.ToString(),
          " before it was ready; command: ", absl::StrJoin(argv, " "),
          "\nserver log:\n", server->log_tail()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "kvq-server wrote no ready file within ",
          absl::FormatDuration(options.ready_timeout), "; command: ",
          absl::StrJoin(argv, " "), "\nserver log:\n", server->log_tail()));
    }
    absl::SleepFor(kPollInterval);
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !reaped_) {
    absl::StatusOr<ExitStatus> stopped = Stop(SIGTERM, absl::Seconds(30));
    (void)stopped;
  }
  if (!dir_.empty()) {
    std::remove((dir_ + "/ready").c_str());
    std::remove((dir_ + "/ready.tmp").c_str());
    std::remove(log_path_.c_str());
    rmdir(dir_.c_str());
  }
}

std::string ServerProcess::grpc_address() const {
  return absl::StrCat("127.0.0.1:", grpc_port_);
}

std::string ServerProcess::metrics_address() const {
  return absl::StrCat("127.0.0.1:", metrics_port_);
}

bool ServerProcess::Running() {
  if (pid_ <= 0 || reaped_) return false;
  if (WaitFor(pid_, absl::ZeroDuration(), &exit_status_)) {
    reaped_ = true;
    return false;
  }
  return true;
}

absl::StatusOr<ExitStatus> ServerProcess::Stop(int signal,
                                               absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("server never started");
  if (reaped_) return exit_status_;
  kill(pid_, signal);
  if (WaitFor(pid_, timeout, &exit_status_)) {
    reaped_ = true;
    return exit_status_;
  }
  kill(pid_, SIGKILL);
  WaitFor(pid_, absl::InfiniteDuration(), &exit_status_);
  reaped_ = true;
  return absl::DeadlineExceededError(absl::StrCat(
      "kvq-server did not exit within ", absl::FormatDuration(timeout),
      " of signal ", signal, "; killed"));
}

std::string ServerProcess::log_tail(size_t bytes) const {
  const std::string log = ReadWholeFile(log_path_);
  if (log.size() <= bytes) return log;
  return "..." + log.substr(log.size() - bytes);
}

absl::StatusOr<ProcessOutput> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  char dir_template[] = "/tmp/kvq-test-run-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  const std::string dir = dir_template;
  const std::string out_path = dir + "/stdout";
  const std::string err_path = dir + "/stderr";
  absl::Cleanup remove_dir = [&] {
    std::remove(out_path.c_str());
    std::remove(err_path.c_str());
    rmdir(dir.c_str());
  };
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  absl::StatusOr<pid_t> pid = absl::InternalError("cannot open output files");
  if (out_fd >= 0 && err_fd >= 0) {
    pid = Spawn(argv, out_fd, err_fd, /*die_with_parent=*/true);
  }
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (!pid.ok()) return pid.status();

  ProcessOutput output;
  if (!WaitFor(*pid, timeout, &output.status)) {
    kill(*pid, SIGKILL);
    WaitFor(*pid, absl::InfiniteDuration(), &output.status);
    return absl::DeadlineExceededError(
        absl::StrCat(absl::StrJoin(argv, " "), " ran longer than ",
                     absl::FormatDuration(timeout), "; killed"));
  }
  output.out = ReadWholeFile(out_path);
  output.err = ReadWholeFile(err_path);
  return output;
}

}  // namespace kvq::testing
