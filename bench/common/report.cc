#include "bench/common/report.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "kvq_git_revision.h"  // generated: KVQ_GIT_REVISION

namespace kvq::bench {
namespace {

std::string ShellQuote(const std::string& arg) {
  if (!arg.empty() &&
      arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
                            "WXYZ0123456789-_=./:,+%@") == std::string::npos) {
    return arg;
  }
  std::string quoted = "'";
  for (char c : arg) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string EscapeCsv(const std::string& cell) {
  if (cell.find_first_of(",\"\n") == std::string::npos) return cell;
  std::string out = "\"";
  for (char c : cell) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string EscapeMarkdown(const std::string& cell) {
  std::string out;
  for (char c : cell) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string CommandLine(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) line += ' ';
    std::string arg = argv[i];
    if (i == 0) {  // the program by name, not by the path it was run from
      const size_t slash = arg.rfind('/');
      if (slash != std::string::npos) arg = arg.substr(slash + 1);
    }
    line += ShellQuote(arg);
  }
  return line;
}

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &utc);
  return text;
}

std::string CpuDescription() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(colon + 2);
      break;
    }
  }
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown host");
  std::ostringstream out;
  out << model << " (" << std::thread::hardware_concurrency()
      << " hardware threads), host " << host;
  return out.str();
}

std::string GitRevision() { return KVQ_GIT_REVISION; }

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(columns_.size(), "-");
  rows_.push_back(std::move(cells));
}

void Table::WriteMarkdown(std::ostream& out) const {
  out << '|';
  for (const auto& c : columns_) out << ' ' << EscapeMarkdown(c) << " |";
  out << "\n|";
  for (size_t i = 0; i < columns_.size(); ++i) out << " --- |";
  out << '\n';
  for (const auto& row : rows_) {
    out << '|';
    for (const auto& cell : row) out << ' ' << EscapeMarkdown(cell) << " |";
    out << '\n';
  }
}

void Table::WriteCsv(std::ostream& out, bool with_header) const {
  auto write_line = [&out](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) out << ',';
      out << EscapeCsv(cells[i]);
    }
    out << '\n';
  };
  if (with_header) write_line(columns_);
  for (const auto& row : rows_) write_line(row);
}

std::string Sig(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  char text[64];
  std::snprintf(text, sizeof text, "%.*g", digits, v);
  return text;
}

std::string Fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "-";
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

std::string Int(uint64_t v) { return std::to_string(v); }

bool WriteFile(const std::string& path, const std::string& text) {
  if (path.empty()) return true;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    std::cerr << "cannot write " << path << ": " << std::strerror(errno)
              << "\n";
    return false;
  }
  return true;
}

}  // namespace kvq::bench
