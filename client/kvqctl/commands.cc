#include "client/kvqctl/commands.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace kvq::kvqctl {

std::span<const Command> Commands() {
  static constexpr Command kCommands[] = {
      {"health", "health [--service=NAME]  exit 0 iff the server is SERVING",
       RunHealth},
      {"put",
       "put --ns=NS (--key=K | --key_hex=H) --shape=P,T,H,D "
       "(--file=F --dtype=D | --random [--dtype=D] [--seed=N]) "
       "[--granularity=G] [--group_size=N]",
       RunPut},
      {"get", "get --ns=NS (--key=K | --key_hex=H) --out=F [--dtype=D]",
       RunGet},
      {"lookup",
       "lookup --ns=NS [--hex] KEY...  present flags and prefix length",
       RunLookup},
      {"delete", "delete --ns=NS [--hex] KEY...", RunDelete},
      {"stats", "stats  pool, memory and traffic totals as a table", RunStats},
  };
  return kCommands;
}

int Fail(std::string_view command, const absl::Status& status,
         bool before_rpc) {
  std::fprintf(stderr, "kvqctl %.*s: %s: %s\n",
               static_cast<int>(command.size()), command.data(),
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  if (before_rpc && status.code() == absl::StatusCode::kInvalidArgument) {
    return kExitUsage;
  }
  return kExitFailed;
}

}  // namespace kvq::kvqctl
