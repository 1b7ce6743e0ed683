// ExpositionWriter: Prometheus text exposition format 0.0.4, written by us.
//
// Why by us: prometheus-cpp (the C++ client library) is not packaged in
// Debian or Ubuntu, and kvq builds only from distribution packages; the text
// format is small and specified at
// https://prometheus.io/docs/instrumenting/exposition_formats/.
//
// The writer emits one family at a time: Family() writes "# HELP" and
// "# TYPE", then Sample()/HistogramSamples() write its samples. It escapes what
// the format requires (HELP: backslash, newline; label values: backslash,
// double quote, newline) and replaces invalid UTF-8 in label values with
// U+FFFD, so any namespace a client sends renders as a valid exposition. Metric
// and label names are the caller's constants and are not checked here.

#ifndef KVQ_SERVER_METRICS_TEXT_FORMAT_H_
#define KVQ_SERVER_METRICS_TEXT_FORMAT_H_

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "server/metrics/instruments.h"

namespace kvq::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

struct Label {
  std::string_view name;
  std::string_view value;
};
using Labels = std::span<const Label>;

// Escaping, exposed for tests.
std::string EscapeHelp(std::string_view help);
std::string EscapeLabelValue(std::string_view value);
// A sample value as Prometheus parses it: shortest round-trip decimal,
// "+Inf", "-Inf", "NaN".
std::string FormatValue(double value);

class ExpositionWriter {
 public:
  void Family(std::string_view name, std::string_view help, MetricType type);

  void Sample(std::string_view name, Labels labels, double value);
  void Sample(std::string_view name, Labels labels, uint64_t value);
  void Sample(std::string_view name, std::initializer_list<Label> labels,
              double value) {
    Sample(name, Labels(labels.begin(), labels.size()), value);
  }
  void Sample(std::string_view name, std::initializer_list<Label> labels,
              uint64_t value) {
    Sample(name, Labels(labels.begin(), labels.size()), value);
  }

  // name_bucket{labels..., le="..."} for every bound and +Inf, then
  // name_sum{labels} and name_count{labels}.
  void HistogramSamples(std::string_view name, Labels labels,
                        BucketBounds bounds,
                        const Histogram::Snapshot& snapshot);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void WriteSeries(std::string_view name, std::string_view suffix,
                   Labels labels, const Label* extra);
  std::string out_;
};

}  // namespace kvq::metrics

#endif  // KVQ_SERVER_METRICS_TEXT_FORMAT_H_
