// kvqctl delete: removes blocks; keys that were not held are not an error.

#include <cstdio>

#include "absl/flags/flag.h"
#include "client/kvqctl/commands.h"
#include "client/kvqctl/flags.h"
#include "client/kvqctl/format.h"
#include "client/kvqctl/keys.h"

namespace kvq::kvqctl {

int RunDelete(Client& client, std::span<const std::string> args) {
  absl::StatusOr<std::vector<std::string>> keys = KeysFromArgs(args);
  if (!keys.ok()) return Fail("delete", keys.status(), /*before_rpc=*/true);
  absl::StatusOr<DeleteResult> result =
      client.Delete(absl::GetFlag(FLAGS_ns), *keys);
  if (!result.ok()) return Fail("delete", result.status());

  Table table;
  table.AddRow({"KEY", "EXISTED"});
  for (size_t i = 0; i < keys->size(); ++i) {
    table.AddRow({PrintableKey((*keys)[i]), result->existed[i] ? "yes" : "no"});
  }
  std::printf("%sdeleted %u of %zu\n", table.Render().c_str(), result->deleted,
              keys->size());
  return kExitOk;
}

}  // namespace kvq::kvqctl
