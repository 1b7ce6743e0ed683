// kvqctl: command-line client for kvq-server.
//
//   kvqctl [--server=127.0.0.1:50051] [--deadline_ms=N] COMMAND [flags] [args]
//
// Commands are listed in commands.cc; exit codes in commands.h.

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "client/kvq_client.h"
#include "client/kvqctl/commands.h"
#include "client/kvqctl/flags.h"

namespace kvq::kvqctl {
namespace {

std::string UsageText() {
  std::string text =
      "command-line client for kvq-server.\n\n"
      "usage: kvqctl [--server=HOST:PORT] [--deadline_ms=N] COMMAND ...\n\n"
      "commands:\n";
  for (const Command& command : Commands()) {
    absl::StrAppend(&text, "  ", std::string(command.synopsis), "\n");
  }
  absl::StrAppend(&text,
                  "\nexit codes: 0 done, 1 refused / unreachable / not "
                  "serving / miss, 2 bad command line.\n"
                  "Keys are text; use --key_hex or --hex for binary keys.");
  return text;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(UsageText());
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) {
    std::fprintf(stderr, "kvqctl: a COMMAND is required\n\n%s\n",
                 UsageText().c_str());
    return kExitUsage;
  }
  const std::string name = positional[1];
  const std::vector<std::string> args(positional.begin() + 2, positional.end());
  const Command* command = nullptr;
  for (const Command& candidate : Commands()) {
    if (candidate.name == name) command = &candidate;
  }
  if (command == nullptr) {
    std::fprintf(stderr, "kvqctl: unknown command \"%s\"\n\n%s\n", name.c_str(),
                 UsageText().c_str());
    return kExitUsage;
  }

  ClientOptions options;
  const int64_t deadline_ms = absl::GetFlag(FLAGS_deadline_ms);
  if (deadline_ms <= 0) {
    return Fail(name, absl::InvalidArgumentError("--deadline_ms must be >= 1"),
                /*before_rpc=*/true);
  }
  options.deadline = absl::Milliseconds(deadline_ms);
  options.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  if (options.chunk_bytes == 0 || options.chunk_bytes > (1u << 30)) {
    return Fail(name,
                absl::InvalidArgumentError(
                    "--chunk_bytes must be between 1 and 1073741824"),
                /*before_rpc=*/true);
  }
  // Accept whatever chunk size was asked for, with room for the header.
  options.max_message_bytes = static_cast<int>(std::max<uint64_t>(
      options.max_message_bytes, uint64_t{options.chunk_bytes} + (64 << 10)));
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(absl::GetFlag(FLAGS_server), options);
  if (!client.ok()) return Fail(name, client.status(), /*before_rpc=*/true);
  return command->run(**client, args);
}

}  // namespace
}  // namespace kvq::kvqctl

int main(int argc, char** argv) { return kvq::kvqctl::Main(argc, argv); }
