// A child process for kvq-bench-service: started with arguments, waited for
// through its ready file ("key=value" lines), stopped with SIGTERM. The child
// gets SIGKILL if this process dies first, so no server outlives the run.

#ifndef KVQ_BENCH_SERVICE_CHILD_PROCESS_H_
#define KVQ_BENCH_SERVICE_CHILD_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvq::bench {

class ChildProcess {
 public:
  // Starts `argv` with "--ready_file=<tmp>" appended and waits (up to
  // `timeout_seconds`) for the ready file; returns its key=value pairs.
  // The child's environment is this process's, with the "NAME=VALUE"
  // entries of `env` set on top.
  static absl::StatusOr<ChildProcess> Start(
      std::vector<std::string> argv, double timeout_seconds,
      const std::vector<std::string>& env = {});
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ~ChildProcess();  // SIGTERM, then wait

  const std::map<std::string, std::string>& ready() const { return ready_; }

 private:
  ChildProcess(pid_t pid, std::string dir,
               std::map<std::string, std::string> ready)
      : pid_(pid), dir_(std::move(dir)), ready_(std::move(ready)) {}
  pid_t pid_ = -1;
  std::string dir_;  // holds the ready file; removed at the end
  std::map<std::string, std::string> ready_;
};

}  // namespace kvq::bench

#endif  // KVQ_BENCH_SERVICE_CHILD_PROCESS_H_
