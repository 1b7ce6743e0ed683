// HostRegion (server/backend/cuda_host_region.h): which bytes the CUDA
// backend reads in place, and where its kernels find them. Plain arithmetic,
// so it is specified here, without a GPU.

#include "server/backend/cuda_host_region.h"

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

class HostRegionTest : public service_testing::SeededTest {
 protected:
  // A region over the middle of `memory_`, seen by "kernels" at an address
  // of its own, so that no mapping can pass by being the identity.
  HostRegionTest()
      : memory_(1 << 16),
        region_{std::span<std::byte>(memory_.data() + 4096, 32768),
                memory_.data() + 40000} {}

  ConstBytes At(size_t offset, size_t size) const {
    return ConstBytes(memory_.data() + offset, size);
  }

  std::vector<std::byte> memory_;
  HostRegion region_;
};

TEST_F(HostRegionTest, AnEmptyRegionHoldsNothing) {
  const HostRegion none;
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.Contains(At(0, 1)));
  EXPECT_FALSE(none.Contains(At(0, 0)));
  EXPECT_FALSE(region_.empty());
}

TEST_F(HostRegionTest, ContainsExactlyTheBytesInsideIt) {
  EXPECT_TRUE(region_.Contains(At(4096, 32768)));  // the whole region
  EXPECT_TRUE(region_.Contains(At(4096, 1)));      // its first byte
  EXPECT_TRUE(region_.Contains(At(4096 + 32767, 1)));  // its last byte
  EXPECT_FALSE(region_.Contains(At(4095, 1)));         // one before
  EXPECT_FALSE(region_.Contains(At(4096 + 32768, 1)));  // one past
  EXPECT_FALSE(region_.Contains(At(4095, 2)));   // straddles the start
  EXPECT_FALSE(region_.Contains(At(36863, 2)));  // straddles the end
  EXPECT_FALSE(region_.Contains(At(4000, 40000)));  // covers it and more
}

TEST_F(HostRegionTest, KernelsSeeEachPieceAtTheSameOffsetInTheirView) {
  for (int i = 0; i < 1000; ++i) {
    const size_t at = Uniform(0, 32767);
    const size_t size = Uniform(1, 32768 - at);
    const ConstBytes piece = At(4096 + at, size);
    ASSERT_TRUE(region_.Contains(piece));
    EXPECT_EQ(region_.DeviceAddressOf(piece), memory_.data() + 40000 + at);
  }
}

}  // namespace
}  // namespace kvq
