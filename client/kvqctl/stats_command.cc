// kvqctl stats: the server's Stats as an aligned, readable table.

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/kvqctl/commands.h"
#include "client/kvqctl/format.h"

namespace kvq::kvqctl {
namespace {

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  return absl::StrFormat("%.1f%%", 100.0 * static_cast<double>(part) / whole);
}

// "384.0 KiB (393216 B)": readable, and exact for scripts and tests.
std::string Bytes(uint64_t bytes) {
  if (bytes < 1024) return HumanBytes(bytes);
  return absl::StrCat(HumanBytes(bytes), " (", bytes, " B)");
}

}  // namespace

int RunStats(Client& client, std::span<const std::string> args) {
  if (!args.empty()) {
    return Fail("stats", absl::InvalidArgumentError("takes no arguments"),
                /*before_rpc=*/true);
  }
  absl::StatusOr<v1::StatsResponse> stats = client.Stats();
  if (!stats.ok()) return Fail("stats", stats.status());
  const v1::StatsResponse& s = *stats;

  Table table;
  table.AddRow({"backend", s.backend()});
  table.AddRow({"device", s.device_name()});
  table.AddRow({"version", s.version()});
  table.AddRow({"uptime", absl::StrFormat("%.1f s", s.uptime_seconds())});
  table.AddRow({"pool", absl::StrCat(Bytes(s.pool_capacity_bytes()), " in ",
                                     s.pages_total(), " pages of ",
                                     HumanBytes(s.page_bytes()))});
  table.AddRow({"pages used",
                absl::StrCat(s.pages_used(), " of ", s.pages_total(), " (",
                             Percent(s.pages_used(), s.pages_total()), ")")});
  table.AddRow({"blocks", absl::StrCat(s.blocks())});
  table.AddRow({"logical bytes", Bytes(s.logical_bytes())});
  table.AddRow({"stored bytes", Bytes(s.stored_bytes())});
  table.AddRow({"pool used bytes", Bytes(s.pool_used_bytes())});
  table.AddRow({"bytes saved", Bytes(s.bytes_saved())});
  table.AddRow(
      {"compression ratio", absl::StrFormat("%.2fx", s.compression_ratio())});
  table.AddRow({"puts", absl::StrCat(s.puts())});
  table.AddRow({"gets", absl::StrCat(s.gets())});
  table.AddRow({"hits", absl::StrCat(s.hits())});
  table.AddRow({"misses", absl::StrCat(s.misses())});
  table.AddRow({"hit rate", Percent(s.hits(), s.hits() + s.misses())});
  table.AddRow({"evictions", absl::StrCat(s.evictions())});
  table.AddRow({"deletes", absl::StrCat(s.deletes())});
  std::printf("%s", table.Render().c_str());

  if (s.namespaces_size() > 0) {
    Table namespaces;
    namespaces.AddRow({"NAMESPACE", "BLOCKS", "LOGICAL", "STORED"});
    for (const v1::NamespaceStats& ns : s.namespaces()) {
      namespaces.AddRow({ns.namespace_().empty() ? "\"\"" : ns.namespace_(),
                         absl::StrCat(ns.blocks()),
                         HumanBytes(ns.logical_bytes()),
                         HumanBytes(ns.stored_bytes())});
    }
    std::printf("\n%s", namespaces.Render().c_str());
  }
  return kExitOk;
}

}  // namespace kvq::kvqctl
