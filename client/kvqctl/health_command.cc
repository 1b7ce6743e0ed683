// kvqctl health: grpc.health.v1 Check; the exit code is the answer (Docker
// HEALTHCHECK and scripts use it).

#include <cstdio>

#include "absl/flags/flag.h"
#include "client/kvqctl/commands.h"
#include "client/kvqctl/flags.h"

namespace kvq::kvqctl {

int RunHealth(Client& client, std::span<const std::string> args) {
  if (!args.empty()) {
    return Fail("health", absl::InvalidArgumentError("takes no arguments"),
                /*before_rpc=*/true);
  }
  absl::StatusOr<ServingStatus> status =
      client.Health(absl::GetFlag(FLAGS_service));
  if (!status.ok()) return Fail("health", status.status());
  const std::string_view name = ServingStatusName(*status);
  std::printf("%.*s\n", static_cast<int>(name.size()), name.data());
  return *status == ServingStatus::kServing ? kExitOk : kExitFailed;
}

}  // namespace kvq::kvqctl
