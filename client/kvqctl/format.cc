#include "client/kvqctl/format.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvq::kvqctl {

absl::StatusOr<v1::BlockShape> ParseShape(std::string_view shape_text) {
  const absl::string_view text(shape_text.data(), shape_text.size());
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  if (parts.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shape must be PLANES,TOKENS,HEADS,HEAD_DIM (four numbers), got \"",
        text, "\""));
  }
  uint32_t dims[4];
  static constexpr const char* kNames[4] = {"planes", "tokens", "heads",
                                            "head_dim"};
  for (int i = 0; i < 4; ++i) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(parts[i]), &dims[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("--shape: ", kNames[i],
                       " must be an unsigned integer, "
                       "got \"",
                       parts[i], "\""));
    }
  }
  v1::BlockShape shape;
  shape.set_planes(dims[0]);
  shape.set_tokens(dims[1]);
  shape.set_heads(dims[2]);
  shape.set_head_dim(dims[3]);
  return shape;
}

std::string ShapeString(const v1::BlockShape& shape) {
  return absl::StrCat(shape.planes(), "x", shape.tokens(), "x", shape.heads(),
                      "x", shape.head_dim());
}

absl::StatusOr<v1::Granularity> ParseGranularity(std::string_view name) {
  if (name == "per_token_head") return v1::GRANULARITY_PER_TOKEN_HEAD;
  if (name == "per_channel") return v1::GRANULARITY_PER_CHANNEL;
  if (name == "per_tensor") return v1::GRANULARITY_PER_TENSOR;
  if (name == "group") return v1::GRANULARITY_GROUP;
  return absl::InvalidArgumentError(absl::StrCat(
      "--granularity must be per_token_head, per_channel, per_tensor or "
      "group, got \"",
      std::string(name), "\""));
}

std::string_view GranularityName(v1::Granularity granularity) {
  switch (granularity) {
    case v1::GRANULARITY_PER_CHANNEL:
      return "per_channel";
    case v1::GRANULARITY_PER_TENSOR:
      return "per_tensor";
    case v1::GRANULARITY_GROUP:
      return "group";
    default:
      return "per_token_head";
  }
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

void Table::AddRow(std::vector<std::string> cells) {
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  }
  return out;
}

}  // namespace kvq::kvqctl
