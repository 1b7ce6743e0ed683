// ServerProcess: a real kvq-server child process for integration tests.
//
// Contract:
//   - Start() runs the kvq-server binary (env KVQ_TEST_SERVER_BIN, else
//     KVQ_SERVER_PATH, compiled in by server.cmake) with
//     --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0, --device from env
//     KVQ_TEST_DEVICE (cpu|cuda, default cpu), a fresh --ready_file and the
//     caller's extra flags (later flags win), and waits until the server
//     has written the ready file ("grpc_port=N\nmetrics_port=M\n"). It
//     fails with the tail of the server's log if the server exits or the
//     file does not appear in time.
//   - The server's stdout and stderr go to a log file in a private temporary
//     directory; log_tail() returns its end (tests print it on failure).
//   - The child gets SIGKILL if the thread that started it dies (so a crashed
//     test leaves no server behind): start it from the test's main thread.
//   - The destructor sends SIGTERM, waits for the exit (SIGKILL after a
//     timeout) and removes the temporary directory.
//   - Environment variables named KVQ_* other than KVQ_TEST_* are removed from
//     the child's environment, so that the flags given here are the whole
//     configuration (the server reads KVQ_<FLAG> variables).
//
// Also here: RunProcess, which runs a command (e.g. kvqctl) to completion and
// captures its exit status and output.

#ifndef KVQ_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define KVQ_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvq::testing {

// The backend the suite runs against: env KVQ_TEST_DEVICE, default "cpu".
std::string TestDevice();

// The program to run: env `env_name` when set (a bundle carried to the GPU
// machine lives elsewhere than the build tree), else `built`.
std::string BinaryPath(const char* env_name, const char* built);

struct ServerOptions {
  // Flags appended after the fixture's own, e.g. "--pool_bytes=1048576".
  std::vector<std::string> flags;
  // Time allowed from exec to the ready file.
  absl::Duration ready_timeout = absl::Seconds(60);
};

// How a child process ended.
struct ExitStatus {
  bool exited = false;  // exited normally (else killed by `signal`)
  int code = -1;        // exit code when `exited`
  int signal = 0;       // terminating signal otherwise
  std::string ToString() const;
};

class ServerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const ServerOptions& options = {});
  ~ServerProcess();

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string grpc_address() const;     // "127.0.0.1:N"
  std::string metrics_address() const;  // "127.0.0.1:M"
  pid_t pid() const { return pid_; }

  // Sends `signal` and waits up to `timeout` for the exit. DEADLINE_EXCEEDED
  // (after which the process is killed) if it did not exit in time.
  absl::StatusOr<ExitStatus> Stop(int signal, absl::Duration timeout);

  // Whether the process is still running (reaps it if it has exited).
  bool Running();

  // The last `bytes` of the server's log.
  std::string log_tail(size_t bytes = 4096) const;

 private:
  ServerProcess() = default;

  pid_t pid_ = -1;
  bool reaped_ = false;
  ExitStatus exit_status_;
  std::string dir_;
  std::string log_path_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
};

// The result of RunProcess.
struct ProcessOutput {
  ExitStatus status;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs argv[0] (a path) with `argv` and returns its exit status and output.
// Kills it and returns DEADLINE_EXCEEDED after `timeout`.
absl::StatusOr<ProcessOutput> RunProcess(
    const std::vector<std::string>& argv,
    absl::Duration timeout = absl::Seconds(60));

}  // namespace kvq::testing

#endif  // KVQ_TESTS_INTEGRATION_SERVER_PROCESS_H_
