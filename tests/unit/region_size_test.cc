// The page-locked heap region's size when none is given: a quarter of the
// memory the process may use, within bounds, and the cgroup limit read as
// the kernel writes it.

#include "server/heap/region_size.h"

#include <unistd.h>

#include <cstdint>
#include <optional>

#include "gtest/gtest.h"

namespace kvq {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20, kGiB = uint64_t{1} << 30;

TEST(AutoRegionBytesTest, IsAQuarterOfUsableMemoryInWhole2MiB) {
  EXPECT_EQ(AutoRegionBytes(8 * kGiB), 2 * kGiB);
  EXPECT_EQ(AutoRegionBytes(12 * kGiB), 3 * kGiB);
  // 1 GiB + 10 MiB: a quarter is 258.5 MiB, rounded down to 258.
  EXPECT_EQ(AutoRegionBytes(kGiB + 10 * kMiB), 258 * kMiB);
}

TEST(AutoRegionBytesTest, StaysWithinItsBounds) {
  EXPECT_EQ(AutoRegionBytes(128 * kGiB), kMaxAutoRegionBytes);
  EXPECT_EQ(AutoRegionBytes(16 * kGiB), kMaxAutoRegionBytes);
  EXPECT_EQ(AutoRegionBytes(128 * kMiB), kMinAutoRegionBytes);
  EXPECT_EQ(AutoRegionBytes(0), kMinAutoRegionBytes);
  EXPECT_EQ(kMaxAutoRegionBytes, 4 * kGiB);
}

TEST(ParseCgroupMemoryLimitTest, ReadsBytesAndNoLimit) {
  EXPECT_EQ(ParseCgroupMemoryLimit("8589934592\n"), 8 * kGiB);
  EXPECT_EQ(ParseCgroupMemoryLimit("  4096 "), 4096u);
  EXPECT_EQ(ParseCgroupMemoryLimit("max\n"), std::nullopt);
  EXPECT_EQ(ParseCgroupMemoryLimit(""), std::nullopt);
  EXPECT_EQ(ParseCgroupMemoryLimit("12k"), std::nullopt);
  // cgroup v1's "no limit": a number, larger than any machine's memory.
  EXPECT_EQ(ParseCgroupMemoryLimit("9223372036854771712"),
            uint64_t{9223372036854771712u});
}

TEST(UsableMemoryBytesTest, IsThisMachinesMemoryOrLess) {
  const uint64_t usable = UsableMemoryBytes();
  EXPECT_GT(usable, 0u);
  EXPECT_LE(usable, static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                        static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
}

}  // namespace
}  // namespace kvq
