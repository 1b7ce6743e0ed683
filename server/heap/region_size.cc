#include "server/heap/region_size.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace kvq {
namespace {

constexpr uint64_t kStep = uint64_t{2} << 20;  // the region's rounding

std::optional<uint64_t> CgroupLimitAt(const char* path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::ostringstream contents;
  contents << file.rdbuf();
  return ParseCgroupMemoryLimit(contents.str());
}

}  // namespace

uint64_t AutoRegionBytes(uint64_t usable_memory_bytes) {
  const uint64_t quarter = usable_memory_bytes / 4 / kStep * kStep;
  return std::clamp(quarter, kMinAutoRegionBytes, kMaxAutoRegionBytes);
}

std::optional<uint64_t> ParseCgroupMemoryLimit(std::string_view contents) {
  uint64_t bytes = 0;
  const absl::string_view text(contents.data(), contents.size());
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

uint64_t UsableMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_bytes = sysconf(_SC_PAGESIZE);
  uint64_t usable = pages > 0 && page_bytes > 0
                        ? static_cast<uint64_t>(pages) *
                              static_cast<uint64_t>(page_bytes)
                        : 0;
  // v1 reports "no limit" as a huge number, which min() leaves alone.
  std::optional<uint64_t> limit = CgroupLimitAt("/sys/fs/cgroup/memory.max");
  if (!limit.has_value()) {
    limit = CgroupLimitAt("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  }
  if (limit.has_value() && *limit > 0) {
    usable = usable == 0 ? *limit : std::min(usable, *limit);
  }
  return usable;
}

}  // namespace kvq
