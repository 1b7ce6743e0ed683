// kvqctl's commands: one function per command, listed in one table.
//
// Every command prints what it did to stdout and returns the process exit
// code: 0 done, 1 the server refused or could not be reached (or, for
// health, is not SERVING; for get, a miss), 2 a bad command line. Errors go
// to stderr as "kvqctl COMMAND: CODE: message", with the server's message
// as it sent it.

#ifndef KVQ_CLIENT_KVQCTL_COMMANDS_H_
#define KVQ_CLIENT_KVQCTL_COMMANDS_H_

#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "client/kvq_client.h"

namespace kvq::kvqctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

using CommandFn = int (*)(Client& client, std::span<const std::string> args);

struct Command {
  std::string_view name;
  std::string_view synopsis;  // one line for the usage text
  CommandFn run;
};

// Every command, in the order the usage text lists them.
std::span<const Command> Commands();

// Reports `status` for `command` on stderr; returns kExitUsage for
// INVALID_ARGUMENT found before any RPC (`before_rpc`), else kExitFailed.
int Fail(std::string_view command, const absl::Status& status,
         bool before_rpc = false);

int RunHealth(Client& client, std::span<const std::string> args);
int RunPut(Client& client, std::span<const std::string> args);
int RunGet(Client& client, std::span<const std::string> args);
int RunLookup(Client& client, std::span<const std::string> args);
int RunDelete(Client& client, std::span<const std::string> args);
int RunStats(Client& client, std::span<const std::string> args);

}  // namespace kvq::kvqctl

#endif  // KVQ_CLIENT_KVQCTL_COMMANDS_H_
