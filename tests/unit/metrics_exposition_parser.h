// A strict parser of Prometheus text exposition format 0.0.4, for tests.
//
// Stricter than Prometheus where kvq promises more: every sample must belong
// to a family declared before it with both "# HELP" and "# TYPE", a family's
// samples must be contiguous, no series may repeat, and a histogram's buckets
// must be cumulative, end with le="+Inf" and agree with its _count. Anything
// else is an error naming the line. Used by the unit tests of kvq_metrics and
// by the Prometheus integration tests (on live scrapes).

#ifndef KVQ_TESTS_UNIT_METRICS_EXPOSITION_PARSER_H_
#define KVQ_TESTS_UNIT_METRICS_EXPOSITION_PARSER_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvq::testing {

using LabelSet = std::map<std::string, std::string>;

struct ParsedSample {
  std::string name;  // with _bucket / _sum / _count for histograms
  LabelSet labels;
  double value = 0;
};

struct ParsedFamily {
  std::string name;
  std::string help;  // unescaped
  std::string type;  // counter, gauge, histogram, summary, untyped
  std::vector<ParsedSample> samples;
};

class Exposition {
 public:
  static absl::StatusOr<Exposition> Parse(std::string_view text);

  const std::map<std::string, ParsedFamily>& families() const {
    return families_;
  }
  const ParsedFamily* family(std::string_view name) const;

  // The value of the one sample `name` whose labels include `labels`;
  // nullopt if none or several match.
  std::optional<double> Value(std::string_view name,
                              const LabelSet& labels = {}) const;
  // Sum over every sample `name` whose labels include `labels`.
  double Sum(std::string_view name, const LabelSet& labels = {}) const;
  // Samples `name` whose labels include `labels`.
  std::vector<const ParsedSample*> Samples(std::string_view name,
                                           const LabelSet& labels = {}) const;

 private:
  std::map<std::string, ParsedFamily> families_;
};

}  // namespace kvq::testing

#endif  // KVQ_TESTS_UNIT_METRICS_EXPOSITION_PARSER_H_
