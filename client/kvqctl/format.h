// Parsing and printing helpers for kvqctl: shapes, granularities, byte
// counts and aligned tables.

#ifndef KVQ_CLIENT_KVQCTL_FORMAT_H_
#define KVQ_CLIENT_KVQCTL_FORMAT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kvq/v1/kvcache.pb.h"

namespace kvq::kvqctl {

// "P,T,H,D" -> BlockShape. Checks only the syntax (four unsigned integers);
// the server judges the values, so that kvqctl reports its exact message.
absl::StatusOr<v1::BlockShape> ParseShape(std::string_view text);
std::string ShapeString(const v1::BlockShape& shape);  // "2x16x8x128"

// "per_token_head" | "per_channel" | "per_tensor" | "group".
absl::StatusOr<v1::Granularity> ParseGranularity(std::string_view name);
std::string_view GranularityName(v1::Granularity granularity);

// 1536 -> "1.5 KiB"; exact byte counts below 1 KiB.
std::string HumanBytes(uint64_t bytes);

// Rows of cells printed with every column padded to its widest cell.
class Table {
 public:
  void AddRow(std::vector<std::string> cells);
  // Columns separated by two spaces; trailing spaces trimmed.
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace kvq::kvqctl

#endif  // KVQ_CLIENT_KVQCTL_FORMAT_H_
