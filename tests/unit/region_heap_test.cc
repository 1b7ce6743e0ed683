// RegionHeap: after InstallRegionHeap, what this process mallocs comes from
// the region, from any thread and of any size, until the region is used up;
// then from outside it, still usable. Freed memory is never purged: bytes
// left in a freed block stay there (an madvise would have zeroed them, and
// would detach page-locked memory from what the GPU reads).
//
// One install per process, so the whole suite shares the one region.

#include "server/heap/region_heap.h"

#include <jemalloc/jemalloc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvq {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kRegionBytes = 64 * kMiB;

class RegionHeapTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::span<std::byte>> installed =
        InstallRegionHeap(kRegionBytes);
    ASSERT_TRUE(installed.ok()) << installed.status();
    region_ = *installed;
  }

  static bool InRegion(const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    return b >= region_.data() && b + n <= region_.data() + region_.size();
  }

  static std::span<std::byte> region_;
};

std::span<std::byte> RegionHeapTest::region_;

TEST_F(RegionHeapTest, RegionIsWhatWasAskedForInWholeHugePages) {
  EXPECT_EQ(region_.size(), kRegionBytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(region_.data()) % (2 * kMiB), 0u);
  EXPECT_EQ(CurrentRegionHeapUsage().region_bytes, kRegionBytes);
}

TEST_F(RegionHeapTest, SecondInstallIsFailedPrecondition) {
  EXPECT_EQ(InstallRegionHeap(kRegionBytes).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RegionHeapTest, AllocationsOfPagesAndMoreComeFromTheRegion) {
  // gRPC's read slices are 64 KiB; 9 and 20 MiB would be jemalloc's "huge"
  // sizes, which the heap keeps in the usual arenas. (Small objects may
  // still come from slabs begun before the install.)
  for (size_t size : {size_t{16} << 10, size_t{64} << 10, size_t{1} << 20,
                      size_t{9} << 20, size_t{20} << 20}) {
    void* p = std::malloc(size);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(InRegion(p, size)) << size << " bytes at " << p;
    std::memset(p, 0x5a, size);
    std::free(p);
  }
  auto owned = std::make_unique<std::vector<int>>(100000, 7);
  EXPECT_TRUE(InRegion(owned->data(), owned->size() * sizeof(int)));
}

TEST_F(RegionHeapTest, AllocationsOfNewThreadsComeFromTheRegion) {
  std::vector<std::thread> threads;
  std::vector<int> in_region(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([t, &in_region] {
      int ok = 1;
      for (int i = 0; i < 50; ++i) {
        const size_t size = size_t{64} << 10;
        void* p = std::malloc(size);
        ok &= p != nullptr && InRegion(p, size);
        std::free(p);
      }
      in_region[t] = ok;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_THAT(in_region, ::testing::Each(1));
}

TEST_F(RegionHeapTest, CallocIsZeroedAfterReuse) {
  const size_t size = size_t{256} << 10;
  void* dirty = std::malloc(size);
  ASSERT_NE(dirty, nullptr);
  std::memset(dirty, 0xff, size);
  std::free(dirty);
  auto* zeroed = static_cast<unsigned char*>(std::calloc(size, 1));
  ASSERT_NE(zeroed, nullptr);
  EXPECT_TRUE(std::all_of(zeroed, zeroed + size,
                          [](unsigned char c) { return c == 0; }));
  std::free(zeroed);
}

TEST_F(RegionHeapTest, FreedMemoryIsNeverPurged) {
  const size_t size = 4 * kMiB;
  auto* block = static_cast<unsigned char*>(std::malloc(size));
  ASSERT_NE(block, nullptr);
  ASSERT_TRUE(InRegion(block, size));
  std::memset(block, 0xab, size);
  // Keeps the compiler from dropping the stores to memory about to be freed.
  asm volatile("" : : "r"(block) : "memory");
  std::free(block);
  // Ask every arena to purge now: with the region's hooks it cannot.
  const std::string purge =
      "arena." + std::to_string(MALLCTL_ARENAS_ALL) + ".purge";
  EXPECT_EQ(mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0), 0);
  // The region stays mapped, so reading the freed bytes is safe here; a
  // purged page would read back as zeroes.
  size_t kept = 0;
  for (size_t i = 0; i < size; i += 4096) kept += block[i + 100] == 0xab;
  EXPECT_EQ(kept, size / 4096);
}

// Last: it uses the region up.
TEST_F(RegionHeapTest, ZExhaustedRegionServesFromOutsideAndEverythingWorks) {
  std::vector<void*> held;
  std::mt19937_64 rng(std::random_device{}());
  bool outside = false;
  for (int i = 0; i < 40 && !outside; ++i) {
    const size_t size = 4 * kMiB;
    void* p = std::malloc(size);
    ASSERT_NE(p, nullptr);
    std::memset(p, static_cast<int>(rng() & 0xff), size);
    outside = !InRegion(p, size);
    held.push_back(p);
  }
  EXPECT_TRUE(outside) << "40 x 4 MiB never left a 64 MiB region";
  const RegionHeapUsage usage = CurrentRegionHeapUsage();
  EXPECT_GT(usage.outside_bytes, 0u);
  EXPECT_LE(usage.handed_out, usage.region_bytes);
  for (void* p : held) std::free(p);
  void* again = std::malloc(kMiB);
  ASSERT_NE(again, nullptr);
  std::memset(again, 1, kMiB);
  std::free(again);
}

}  // namespace
}  // namespace kvq
