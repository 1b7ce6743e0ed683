#include "bench/service/child_process.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kvq::bench {

namespace {

// This process's environment with `extra` ("NAME=VALUE") set on top, built
// before fork: the child of a threaded process may only exec.
std::vector<std::string> ChildEnvironment(
    const std::vector<std::string>& extra) {
  auto name_of = [](std::string_view entry) {
    return entry.substr(0, entry.find('='));
  };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    bool replaced = false;
    for (const std::string& x : extra) {
      replaced = replaced || name_of(x) == name_of(entry);
    }
    if (!replaced) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

}  // namespace

absl::StatusOr<ChildProcess> ChildProcess::Start(
    std::vector<std::string> argv, double timeout_seconds,
    const std::vector<std::string>& env) {
  char dir_template[] = "/tmp/kvq-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError("mkdtemp failed");
  }
  const std::string ready_file = absl::StrCat(dir_template, "/ready");
  argv.push_back("--ready_file=" + ready_file);

  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<std::string> environment = ChildEnvironment(env);
  std::vector<char*> envp;
  for (std::string& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(ready_file);
    if (in) {
      std::map<std::string, std::string> ready;
      std::string line;
      while (std::getline(in, line)) {
        std::pair<std::string, std::string> kv =
            absl::StrSplit(line, absl::MaxSplits('=', 1));
        ready[kv.first] = kv.second;
      }
      return ChildProcess(pid, dir_template, std::move(ready));
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      rmdir(dir_template);
      const std::string how =
          WIFEXITED(status)
              ? absl::StrCat("exit code ", WEXITSTATUS(status),
                             WEXITSTATUS(status) == 127 ? ": cannot exec" : "")
              : absl::StrCat("signal ", WTERMSIG(status));
      return absl::FailedPreconditionError(absl::StrCat(
          argv[0], " exited before it was ready (", how,
          "); its stderr above says why"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::remove(ready_file.c_str());
  rmdir(dir_template);
  return absl::DeadlineExceededError(
      absl::StrCat(argv[0], " was not ready within ", timeout_seconds, " s"));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_),
      dir_(std::move(other.dir_)),
      ready_(std::move(other.ready_)) {
  other.pid_ = -1;
  other.dir_.clear();
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) {
    std::remove((dir_ + "/ready").c_str());
    rmdir(dir_.c_str());
  }
}

}  // namespace kvq::bench
