// PageTableSlots: each block's page table kept on the GPU beside its pages,
// so that a get launches its kernel at once instead of uploading the page
// ids first (a DMA of a few bytes: 4 MiB gets' upload 0.009-0.012 ->
// 0.002 ms on the H200 machine, bench/results/README.md).
//
// Every page owns one slot of slot_ids() page ids. A block's table lives in
// the slot of its first page: a page belongs to one block at a time, so no
// two live blocks share a slot, and the last put that wrote a slot is the
// put of the block that starts at that page now. The put writes it; any get
// of the block may then read it. Tables longer than a slot are not kept
// (SlotOf: null), and their calls upload the ids as before.
//
// Slots cost slot_ids() * 4 bytes per page, at most 1/256 of the pages'
// bytes (64 ids for 64 KiB pages: blocks of up to 4 MiB of payload, 8 MiB
// of FP16); pages under 1 KiB get none.
//
// A plain value: the layout of the slots, placed at a device address the
// backend allocates with the pages. Host code only.

#ifndef KVQ_SERVER_BACKEND_CUDA_PAGE_TABLES_H_
#define KVQ_SERVER_BACKEND_CUDA_PAGE_TABLES_H_

#include <algorithm>
#include <cstdint>
#include <span>

namespace kvq {

class PageTableSlots {
 public:
  static constexpr uint64_t kMaxSlotIds = 64;

  // Page ids a slot holds for pages of `page_bytes`: one per KiB of page,
  // at most kMaxSlotIds.
  static constexpr uint64_t SlotIdsFor(uint64_t page_bytes) {
    return std::min(kMaxSlotIds, page_bytes / 1024);
  }

  PageTableSlots() = default;
  PageTableSlots(uint64_t pages_total, uint64_t page_bytes)
      : pages_total_(pages_total), slot_ids_(SlotIdsFor(page_bytes)) {}

  uint64_t slot_ids() const { return slot_ids_; }

  // Device bytes all the slots take.
  uint64_t bytes() const { return pages_total_ * slot_ids_ * sizeof(uint32_t); }

  // Where the slots start on the device (bytes() of them, 4-byte aligned).
  void Place(uint32_t* device_base) { base_ = device_base; }

  // The device slot that holds the table `pages` (a block's page ids, in
  // payload order, each < pages_total), or null when the table does not
  // fit a slot or there are no slots.
  uint32_t* SlotOf(std::span<const uint32_t> pages) const {
    if (base_ == nullptr || pages.empty() || pages.size() > slot_ids_) {
      return nullptr;
    }
    return base_ + uint64_t{pages.front()} * slot_ids_;
  }

 private:
  uint64_t pages_total_ = 0;
  uint64_t slot_ids_ = 0;
  uint32_t* base_ = nullptr;
};

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_CUDA_PAGE_TABLES_H_
