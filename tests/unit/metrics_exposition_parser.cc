#include "tests/unit/metrics_exposition_parser.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvq::testing {
namespace {

bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         c == ':';
}
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

class LineError {
 public:
  LineError(int line, std::string_view text) : line_(line), text_(text) {}
  absl::Status operator()(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "line ", line_, ": ", std::string(what), ": \"", text_, "\""));
  }

 private:
  int line_;
  std::string text_;
};

// Reads a metric or label name at `pos`.
std::string ReadName(std::string_view s, size_t& pos) {
  const size_t start = pos;
  if (pos < s.size() && IsNameStart(s[pos])) {
    ++pos;
    while (pos < s.size() && IsNameChar(s[pos])) ++pos;
  }
  return std::string(s.substr(start, pos - start));
}

std::optional<double> ParseValue(std::string_view text) {
  if (text == "+Inf" || text == "Inf") {
    return std::numeric_limits<double>::infinity();
  }
  if (text == "-Inf") return -std::numeric_limits<double>::infinity();
  if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  double value = 0;
  const auto [end, error] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

// Parses {a="x",b="y"} at `pos` (which points at '{').
std::optional<LabelSet> ParseLabels(std::string_view s, size_t& pos,
                                    std::string& error) {
  LabelSet labels;
  ++pos;  // '{'
  while (true) {
    if (pos < s.size() && s[pos] == '}') {
      ++pos;
      return labels;
    }
    std::string name = ReadName(s, pos);
    if (name.empty()) {
      error = "bad label name";
      return std::nullopt;
    }
    if (pos + 1 >= s.size() || s[pos] != '=' || s[pos + 1] != '"') {
      error = "label name not followed by =\"";
      return std::nullopt;
    }
    pos += 2;
    std::string value;
    while (true) {
      if (pos >= s.size()) {
        error = "unterminated label value";
        return std::nullopt;
      }
      const char c = s[pos++];
      if (c == '"') break;
      if (c == '\n') {
        error = "raw newline in label value";
        return std::nullopt;
      }
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos >= s.size()) {
        error = "dangling backslash in label value";
        return std::nullopt;
      }
      const char escaped = s[pos++];
      if (escaped == 'n') {
        value += '\n';
      } else if (escaped == '\\' || escaped == '"') {
        value += escaped;
      } else {
        error = "unknown escape in label value";
        return std::nullopt;
      }
    }
    if (!labels.emplace(std::move(name), std::move(value)).second) {
      error = "repeated label name";
      return std::nullopt;
    }
    if (pos < s.size() && s[pos] == ',') ++pos;
  }
}

std::string UnescapeHelp(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() &&
        (s[i + 1] == '\\' || s[i + 1] == 'n')) {
      out += s[i + 1] == 'n' ? '\n' : '\\';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool Includes(const LabelSet& labels, const LabelSet& wanted) {
  for (const auto& [name, value] : wanted) {
    const auto it = labels.find(name);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

absl::Status CheckHistogram(const ParsedFamily& family) {
  struct Series {
    std::vector<std::pair<double, double>> buckets;  // le, count
    std::optional<double> count, sum;
  };
  std::map<LabelSet, Series> series;
  for (const ParsedSample& sample : family.samples) {
    LabelSet key = sample.labels;
    if (sample.name == family.name + "_bucket") {
      const auto le = key.find("le");
      if (le == key.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(family.name, "_bucket without le"));
      }
      const std::optional<double> bound = ParseValue(le->second);
      if (!bound) {
        return absl::InvalidArgumentError(
            absl::StrCat(family.name, ": bad le \"", le->second, "\""));
      }
      key.erase(le);
      series[key].buckets.emplace_back(*bound, sample.value);
    } else if (sample.name == family.name + "_count") {
      series[key].count = sample.value;
    } else if (sample.name == family.name + "_sum") {
      series[key].sum = sample.value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram ", family.name, " has sample ", sample.name));
    }
  }
  for (const auto& [labels, s] : series) {
    if (s.buckets.empty() || !std::isinf(s.buckets.back().first) || !s.count ||
        !s.sum) {
      return absl::InvalidArgumentError(
          absl::StrCat(family.name,
                       ": a series lacks buckets ending in +Inf, _sum or "
                       "_count"));
    }
    for (size_t i = 1; i < s.buckets.size(); ++i) {
      if (!(s.buckets[i].first > s.buckets[i - 1].first) ||
          s.buckets[i].second < s.buckets[i - 1].second) {
        return absl::InvalidArgumentError(absl::StrCat(
            family.name, ": buckets not increasing in le or not cumulative"));
      }
    }
    if (*s.count != s.buckets.back().second) {
      return absl::InvalidArgumentError(
          absl::StrCat(family.name, ": _count ", *s.count, " != +Inf bucket ",
                       s.buckets.back().second));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Exposition> Exposition::Parse(std::string_view text) {
  Exposition result;
  std::map<std::string, ParsedFamily>& families = result.families_;
  std::set<std::string> finished;  // families whose samples ended
  std::set<std::pair<std::string, LabelSet>> seen_series;
  std::string current;
  int line_number = 0;
  if (!text.empty() && text.back() != '\n') {
    return absl::InvalidArgumentError("exposition does not end in a newline");
  }
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline + 1);
    ++line_number;
    const LineError error(line_number, line);
    if (line.empty()) continue;

    if (line.front() == '#') {
      const bool help = line.starts_with("# HELP ");
      const bool type = line.starts_with("# TYPE ");
      if (!help && !type) continue;  // a comment
      size_t pos = 7;
      const std::string name = ReadName(line, pos);
      if (name.empty() || pos >= line.size() || line[pos] != ' ') {
        return error("bad metric name in HELP/TYPE");
      }
      const std::string_view rest = line.substr(pos + 1);
      ParsedFamily& family = families[name];
      family.name = name;
      if (finished.contains(name) || !family.samples.empty()) {
        return error("HELP/TYPE after the family's samples");
      }
      if (help) {
        if (!family.help.empty()) return error("second HELP");
        family.help = UnescapeHelp(rest);
        if (family.help.empty()) return error("empty HELP");
      } else {
        if (!family.type.empty()) return error("second TYPE");
        static const std::set<std::string_view> kTypes = {
            "counter", "gauge", "histogram", "summary", "untyped"};
        if (!kTypes.contains(rest)) return error("unknown TYPE");
        family.type = std::string(rest);
      }
      continue;
    }

    ParsedSample sample;
    size_t pos = 0;
    sample.name = ReadName(line, pos);
    if (sample.name.empty()) return error("bad metric name");
    if (pos < line.size() && line[pos] == '{') {
      std::string label_error;
      std::optional<LabelSet> labels = ParseLabels(line, pos, label_error);
      if (!labels) return error(label_error);
      sample.labels = std::move(*labels);
    }
    if (pos >= line.size() || line[pos] != ' ') {
      return error("no space before the value");
    }
    std::string_view value_text = line.substr(pos + 1);
    const size_t space = value_text.find(' ');
    if (space != std::string_view::npos) {
      value_text = value_text.substr(0, space);  // a timestamp follows
    }
    const std::optional<double> value = ParseValue(value_text);
    if (!value) return error("bad value");
    sample.value = *value;

    // The family: the name itself, or a histogram's base name.
    std::string family_name = sample.name;
    if (!families.contains(family_name)) {
      for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
        if (sample.name.ends_with(suffix)) {
          family_name =
              sample.name.substr(0, sample.name.size() - suffix.size());
          break;
        }
      }
    }
    const auto family = families.find(family_name);
    if (family == families.end() || family->second.help.empty() ||
        family->second.type.empty()) {
      return error("sample without HELP and TYPE before it");
    }
    if (family->second.type != "histogram" && family_name != sample.name) {
      return error("suffixed sample of a family that is not a histogram");
    }
    if (family_name != current) {
      if (finished.contains(family_name)) {
        return error("samples of a family are not contiguous");
      }
      if (!current.empty()) finished.insert(current);
      current = family_name;
    }
    if (!seen_series.emplace(sample.name, sample.labels).second) {
      return error("repeated series");
    }
    family->second.samples.push_back(std::move(sample));
  }
  for (const auto& [name, family] : families) {
    if (family.help.empty() || family.type.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("family ", name, " lacks HELP or TYPE"));
    }
    if (family.type == "histogram") {
      if (absl::Status status = CheckHistogram(family); !status.ok()) {
        return status;
      }
    }
  }
  return result;
}

const ParsedFamily* Exposition::family(std::string_view name) const {
  const auto it = families_.find(std::string(name));
  return it == families_.end() ? nullptr : &it->second;
}

std::vector<const ParsedSample*> Exposition::Samples(
    std::string_view name, const LabelSet& labels) const {
  std::vector<const ParsedSample*> found;
  for (const auto& [family_name, family] : families_) {
    if (!name.starts_with(family_name)) continue;
    for (const ParsedSample& sample : family.samples) {
      if (sample.name == name && Includes(sample.labels, labels)) {
        found.push_back(&sample);
      }
    }
  }
  return found;
}

std::optional<double> Exposition::Value(std::string_view name,
                                        const LabelSet& labels) const {
  const std::vector<const ParsedSample*> found = Samples(name, labels);
  if (found.size() != 1) return std::nullopt;
  return found.front()->value;
}

double Exposition::Sum(std::string_view name, const LabelSet& labels) const {
  double total = 0;
  for (const ParsedSample* sample : Samples(name, labels)) {
    total += sample->value;
  }
  return total;
}

}  // namespace kvq::testing
