// PageTableSlots (server/backend/cuda_page_tables.h): where the CUDA backend
// keeps each block's page table on the device. Plain arithmetic, so it is
// specified here, without a GPU.

#include "server/backend/cuda_page_tables.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

class PageTableSlotsTest : public service_testing::SeededTest {
 protected:
  // A random table of `n` distinct page ids below `pages_total`.
  std::vector<uint32_t> RandomTable(uint64_t n, uint64_t pages_total) {
    std::vector<uint32_t> all(pages_total);
    for (uint64_t i = 0; i < pages_total; ++i) all[i] = static_cast<uint32_t>(i);
    std::shuffle(all.begin(), all.end(), rng_);
    return std::vector<uint32_t>(all.begin(), all.begin() + n);
  }
};

TEST_F(PageTableSlotsTest, SlotsHoldOneIdPerKibOfPageUpToSixtyFour) {
  EXPECT_EQ(PageTableSlots::SlotIdsFor(256), 0u);
  EXPECT_EQ(PageTableSlots::SlotIdsFor(1024), 1u);
  EXPECT_EQ(PageTableSlots::SlotIdsFor(16 << 10), 16u);
  EXPECT_EQ(PageTableSlots::SlotIdsFor(64 << 10), 64u);
  EXPECT_EQ(PageTableSlots::SlotIdsFor(uint64_t{1} << 30), 64u);
  // At most 1/256 of the pages' bytes, at every page size.
  for (uint64_t page_bytes = 256; page_bytes < (uint64_t{1} << 31);
       page_bytes += 256 * Uniform(1, 1 << 16)) {
    const PageTableSlots slots(1000, page_bytes);
    EXPECT_LE(slots.bytes() * 256, 1000 * page_bytes) << page_bytes;
  }
}

TEST_F(PageTableSlotsTest, ABlocksTableLivesInTheSlotOfItsFirstPage) {
  const uint64_t pages_total = Uniform(100, 5000);
  PageTableSlots slots(pages_total, 64 << 10);
  std::vector<uint32_t> device(slots.bytes() / sizeof(uint32_t));
  slots.Place(device.data());
  for (int round = 0; round < 50; ++round) {
    const std::vector<uint32_t> table = RandomTable(Uniform(1, 64), pages_total);
    uint32_t* slot = slots.SlotOf(table);
    ASSERT_NE(slot, nullptr);
    EXPECT_EQ(slot, device.data() + uint64_t{table.front()} * 64);
    // The whole table fits before the next page's slot, inside the slots.
    EXPECT_LE(slot + table.size(), device.data() + device.size());
  }
}

TEST_F(PageTableSlotsTest, TablesLongerThanASlotAreNotKept) {
  const uint64_t page_bytes = 1024 * Uniform(1, 64);
  PageTableSlots slots(200, page_bytes);
  std::vector<uint32_t> device(slots.bytes() / sizeof(uint32_t));
  slots.Place(device.data());
  const uint64_t fits = slots.slot_ids();
  EXPECT_NE(slots.SlotOf(RandomTable(fits, 200)), nullptr);
  EXPECT_EQ(slots.SlotOf(RandomTable(fits + 1, 200)), nullptr);
  EXPECT_EQ(slots.SlotOf({}), nullptr);
}

TEST_F(PageTableSlotsTest, NoSlotsBeforePlacedOrForPagesUnderAKib) {
  const std::vector<uint32_t> table = {3, 1, 2};
  EXPECT_EQ(PageTableSlots(100, 64 << 10).SlotOf(table), nullptr);
  PageTableSlots tiny(100, 512);
  EXPECT_EQ(tiny.bytes(), 0u);
  uint32_t base = 0;
  tiny.Place(&base);
  EXPECT_EQ(tiny.SlotOf(table), nullptr);
}

}  // namespace
}  // namespace kvq
