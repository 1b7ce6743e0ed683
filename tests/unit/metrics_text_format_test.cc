// Text exposition format 0.0.4: escaping, values, family and histogram
// layout, read back by the strict test parser.

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/metrics/text_format.h"
#include "tests/unit/metrics_exposition_parser.h"

namespace kvq::metrics {
namespace {

using ::kvq::testing::Exposition;

TEST(TextFormatTest, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(EscapeLabelValue(R"(a\b"c)"
                             "\n"
                             "d"),
            R"(a\\b\"c\nd)");
  EXPECT_EQ(EscapeLabelValue("plain-value_1.2"), "plain-value_1.2");
  EXPECT_EQ(EscapeLabelValue(""), "");
}

TEST(TextFormatTest, LabelValuesKeepValidUtf8AndReplaceInvalidBytes) {
  EXPECT_EQ(EscapeLabelValue("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  // A lone continuation byte, a truncated sequence, an overlong "/", a
  // UTF-16 surrogate: each invalid byte becomes U+FFFD.
  EXPECT_EQ(EscapeLabelValue("a\x80z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(EscapeLabelValue("a\xE2\x82"), "a\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(EscapeLabelValue("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(EscapeLabelValue("\xED\xA0\x80"),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TextFormatTest, HelpEscapesBackslashAndNewlineOnly) {
  EXPECT_EQ(EscapeHelp("a\\b\nc \"quoted\""), "a\\\\b\\nc \"quoted\"");
}

TEST(TextFormatTest, ValuesRoundTripAndSpellInfinityAndNaNAsPrometheus) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> exponent(-300, 300);
  for (int i = 0; i < 1000; ++i) {
    const double value = std::pow(10.0, exponent(rng)) * (i % 2 ? -1 : 1);
    EXPECT_EQ(std::stod(FormatValue(value)), value);
  }
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(FormatValue(0.0), "0");
  // As Go's strconv.FormatFloat(v, 'g', -1, 64), like every Prometheus
  // client: the "le" label is compared as a string.
  EXPECT_EQ(FormatValue(2.5e-5), "2.5e-05");
  EXPECT_EQ(FormatValue(1e-4), "0.0001");
  EXPECT_EQ(FormatValue(0.00025), "0.00025");
  EXPECT_EQ(FormatValue(10.0), "10");
  EXPECT_EQ(FormatValue(-1.5), "-1.5");
  EXPECT_EQ(FormatValue(123456.0), "123456");
  EXPECT_EQ(FormatValue(1e6), "1e+06");
  EXPECT_EQ(FormatValue(1234567.0), "1.234567e+06");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
}

TEST(TextFormatTest, FamilyWritesHelpThenTypeThenSamples) {
  ExpositionWriter w;
  w.Family("kvq_things_total", "Things.\nCounted \\ here.",
           MetricType::kCounter);
  w.Sample("kvq_things_total", {{"kind", "a\"b"}},
           uint64_t{18446744073709551615u});
  w.Sample("kvq_things_total", {{"kind", "c"}, {"other", "d"}}, 1.5);
  EXPECT_EQ(w.text(),
            "# HELP kvq_things_total Things.\\nCounted \\\\ here.\n"
            "# TYPE kvq_things_total counter\n"
            "kvq_things_total{kind=\"a\\\"b\"} 18446744073709551615\n"
            "kvq_things_total{kind=\"c\",other=\"d\"} 1.5\n");
}

TEST(TextFormatTest, SampleWithoutLabelsHasNoBraces) {
  ExpositionWriter w;
  w.Family("kvq_x", "X.", MetricType::kGauge);
  w.Sample("kvq_x", {}, -3.25);
  EXPECT_EQ(w.text(), "# HELP kvq_x X.\n# TYPE kvq_x gauge\nkvq_x -3.25\n");
}

TEST(TextFormatTest, HistogramHasCumulativeBucketsInfSumAndCount) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::vector<double> bounds = DecadeBuckets(-5, 1);
  Histogram histogram(bounds);
  std::uniform_real_distribution<double> exponent(-6, 2);
  std::vector<double> values;
  for (int i = 0; i < 777; ++i) {
    values.push_back(std::pow(10.0, exponent(rng)));
    histogram.Observe(values.back());
  }
  ExpositionWriter w;
  w.Family("kvq_h_seconds", "H.", MetricType::kHistogram);
  const Label rpc{"rpc", "put"};
  const Histogram::Snapshot snapshot = histogram.Collect();
  w.HistogramSamples("kvq_h_seconds", {&rpc, 1}, bounds, snapshot);

  absl::StatusOr<Exposition> parsed = Exposition::Parse(w.text());
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << w.text();
  const auto buckets =
      parsed->Samples("kvq_h_seconds_bucket", {{"rpc", "put"}});
  ASSERT_EQ(buckets.size(), bounds.size() + 1);
  for (size_t i = 0; i < bounds.size(); ++i) {
    EXPECT_EQ(buckets[i]->labels.at("le"), FormatValue(bounds[i]));
    const auto at_or_below = std::count_if(
        values.begin(), values.end(), [&](double v) { return v <= bounds[i]; });
    EXPECT_EQ(buckets[i]->value, static_cast<double>(at_or_below));
  }
  EXPECT_EQ(buckets.back()->labels.at("le"), "+Inf");
  EXPECT_EQ(buckets.back()->value, 777);
  EXPECT_EQ(parsed->Value("kvq_h_seconds_count", {{"rpc", "put"}}), 777);
  EXPECT_EQ(parsed->Value("kvq_h_seconds_sum", {{"rpc", "put"}}),
            std::stod(FormatValue(snapshot.sum)));
}

TEST(TextFormatTest, ParserRejectsWhatPrometheusWouldRejectOrKvqPromisesNot) {
  // The test parser is what the other tests trust: it must fail on these.
  const char* const bad[] = {
      "kvq_x 1\n",                                              // no HELP/TYPE
      "# HELP kvq_x X.\nkvq_x 1\n",                             // no TYPE
      "# HELP kvq_x X.\n# TYPE kvq_x gauge\nkvq_x{a=\"b} 1\n",  // open quote
      "# HELP kvq_x X.\n# TYPE kvq_x gauge\nkvq_x one\n",       // bad value
      "# HELP kvq_x X.\n# TYPE kvq_x gauge\nkvq_x 1\nkvq_x 2\n",  // repeated
      "# HELP kvq_h H.\n# TYPE kvq_h histogram\n"
      "kvq_h_bucket{le=\"1\"} 2\nkvq_h_bucket{le=\"+Inf\"} 1\n"
      "kvq_h_sum 1\nkvq_h_count 1\n",  // not cumulative
      "# HELP kvq_h H.\n# TYPE kvq_h histogram\n"
      "kvq_h_bucket{le=\"1\"} 1\nkvq_h_bucket{le=\"+Inf\"} 2\n"
      "kvq_h_sum 1\nkvq_h_count 3\n",  // count != +Inf
  };
  for (const char* text : bad) {
    EXPECT_FALSE(Exposition::Parse(text).ok()) << text;
  }
}

}  // namespace
}  // namespace kvq::metrics
