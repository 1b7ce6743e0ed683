// kvqctl lookup: which keys are held, and the longest present prefix.

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/kvqctl/commands.h"
#include "client/kvqctl/flags.h"
#include "client/kvqctl/format.h"
#include "client/kvqctl/keys.h"

namespace kvq::kvqctl {

int RunLookup(Client& client, std::span<const std::string> args) {
  absl::StatusOr<std::vector<std::string>> keys = KeysFromArgs(args);
  if (!keys.ok()) return Fail("lookup", keys.status(), /*before_rpc=*/true);
  absl::StatusOr<LookupResult> result =
      client.Lookup(absl::GetFlag(FLAGS_ns), *keys);
  if (!result.ok()) return Fail("lookup", result.status());

  Table table;
  table.AddRow({"KEY", "PRESENT"});
  for (size_t i = 0; i < keys->size(); ++i) {
    table.AddRow({PrintableKey((*keys)[i]), result->present[i] ? "yes" : "no"});
  }
  std::printf("%sprefix_length %u of %zu\n", table.Render().c_str(),
              result->prefix_length, keys->size());
  return kExitOk;
}

}  // namespace kvq::kvqctl
