// What every kvq benchmark writes: a header that says how and where the
// numbers were made (command, machine, date, git revision) and tables that go
// to both markdown (committed under bench/results/) and CSV (for plotting).

#ifndef KVQ_BENCH_COMMON_REPORT_H_
#define KVQ_BENCH_COMMON_REPORT_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace kvq::bench {

// The command line as a shell would re-run it.
std::string CommandLine(int argc, char** argv);

// "2026-11-25 06:40 UTC".
std::string UtcNow();

// "<model name> (N hardware threads), <hostname>" from /proc/cpuinfo.
std::string CpuDescription();

// The git revision the binary was built from (set by CMake).
std::string GitRevision();

// A table of strings with named columns, written as markdown or CSV. Rows
// must have one cell per column.
class Table {
 public:
  explicit Table(std::vector<std::string> columns)
      : columns_(std::move(columns)) {}

  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  const std::vector<std::string>& columns() const { return columns_; }

  void WriteMarkdown(std::ostream& out) const;
  // Header line unless `with_header` is false (to append to an existing CSV).
  void WriteCsv(std::ostream& out, bool with_header = true) const;

 private:
  std::vector<std::string> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// Formatting helpers: fixed significant digits, never "nan" for missing data
// (missing cells are written as "-").
std::string Sig(double v, int digits = 3);
std::string Fixed(double v, int decimals);
std::string Int(uint64_t v);

// Writes `text` to `path` ("" = skip), creating or truncating it. Returns
// false (and prints why to stderr) on failure.
bool WriteFile(const std::string& path, const std::string& text);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_COMMON_REPORT_H_
