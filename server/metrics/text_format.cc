#include "server/metrics/text_format.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace kvq::metrics {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 if the
// bytes there are not one (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0x100;
  };
  const auto continuation = [](unsigned b) { return b >= 0x80 && b <= 0xBF; };
  const unsigned b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return continuation(byte(1)) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const unsigned lo = b0 == 0xE0 ? 0xA0 : 0x80;
    const unsigned hi = b0 == 0xED ? 0x9F : 0xBF;
    const unsigned b1 = byte(1);
    return b1 >= lo && b1 <= hi && continuation(byte(2)) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const unsigned lo = b0 == 0xF0 ? 0x90 : 0x80;
    const unsigned hi = b0 == 0xF4 ? 0x8F : 0xBF;
    const unsigned b1 = byte(1);
    return b1 >= lo && b1 <= hi && continuation(byte(2)) &&
                   continuation(byte(3))
               ? 4
               : 0;
  }
  return 0;
}

}  // namespace

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size();) {
    const size_t length = Utf8SequenceLength(value, i);
    if (length == 0) {
      out += kReplacementChar;
      ++i;
      continue;
    }
    if (length > 1) {
      out.append(value.substr(i, length));
    } else if (value[i] == '\\') {
      out += "\\\\";
    } else if (value[i] == '"') {
      out += "\\\"";
    } else if (value[i] == '\n') {
      out += "\\n";
    } else {
      out += value[i];
    }
    i += length;
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // As Go's strconv.FormatFloat(value, 'g', -1, 64), which Prometheus'
  // client libraries use: shortest round-trip digits, in exponent form when
  // the decimal exponent is < -4 or >= 6 ("2.5e-05", "0.0001", "1e+06").
  // The "le" label of a bucket is a string to Prometheus, so this keeps
  // le="0.0001" the same as every other exporter writes it.
  char buffer[64];
  const auto scientific = std::to_chars(buffer, buffer + sizeof(buffer), value,
                                        std::chars_format::scientific);
  *scientific.ptr = '\0';  // shortest form is < 32 chars
  const std::string_view text(buffer, scientific.ptr - buffer);
  const int exponent = std::atoi(text.data() + text.find('e') + 1);
  if (exponent < -4 || exponent >= 6) return std::string(text);
  const auto fixed = std::to_chars(buffer, buffer + sizeof(buffer), value,
                                   std::chars_format::fixed);
  return std::string(buffer, fixed.ptr);
}

void ExpositionWriter::Family(std::string_view name, std::string_view help,
                              MetricType type) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += EscapeHelp(help);
  out_ += "\n# TYPE ";
  out_ += name;
  switch (type) {
    case MetricType::kCounter:
      out_ += " counter\n";
      break;
    case MetricType::kGauge:
      out_ += " gauge\n";
      break;
    case MetricType::kHistogram:
      out_ += " histogram\n";
      break;
  }
}

void ExpositionWriter::WriteSeries(std::string_view name,
                                   std::string_view suffix, Labels labels,
                                   const Label* extra) {
  out_ += name;
  out_ += suffix;
  if (labels.empty() && extra == nullptr) return;
  out_ += '{';
  bool first = true;
  const auto write = [&](const Label& label) {
    if (!first) out_ += ',';
    first = false;
    out_ += label.name;
    out_ += "=\"";
    out_ += EscapeLabelValue(label.value);
    out_ += '"';
  };
  for (const Label& label : labels) write(label);
  if (extra != nullptr) write(*extra);
  out_ += '}';
}

void ExpositionWriter::Sample(std::string_view name, Labels labels,
                              double value) {
  WriteSeries(name, "", labels, nullptr);
  out_ += ' ';
  out_ += FormatValue(value);
  out_ += '\n';
}

void ExpositionWriter::Sample(std::string_view name, Labels labels,
                              uint64_t value) {
  WriteSeries(name, "", labels, nullptr);
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
}

void ExpositionWriter::HistogramSamples(std::string_view name, Labels labels,
                                        BucketBounds bounds,
                                        const Histogram::Snapshot& snapshot) {
  for (size_t i = 0; i <= bounds.size(); ++i) {
    const std::string le =
        i < bounds.size() ? FormatValue(bounds[i]) : std::string("+Inf");
    const Label le_label{"le", le};
    WriteSeries(name, "_bucket", labels, &le_label);
    out_ += ' ';
    out_ += std::to_string(
        i < snapshot.cumulative.size() ? snapshot.cumulative[i] : 0);
    out_ += '\n';
  }
  WriteSeries(name, "_sum", labels, nullptr);
  out_ += ' ';
  out_ += FormatValue(snapshot.sum);
  out_ += '\n';
  WriteSeries(name, "_count", labels, nullptr);
  out_ += ' ';
  out_ += std::to_string(snapshot.count());
  out_ += '\n';
}

}  // namespace kvq::metrics
