// PageAllocator: the free list of a fixed arena of pages, by id.
//
// Pages are ids 0 .. pages_total - 1; the allocator never sees bytes. Both
// Allocate and Free cost O(1) per page. Allocation is all-or-nothing. Freed
// pages are reused first (LIFO), which keeps a busy pool on warm memory; a
// fresh allocator hands out ids in ascending order.
//
// Freeing a page that is not allocated (a double free, or an id from another
// pool) is a bookkeeping bug that would hand one page to two blocks, so it
// aborts the process with a message instead of corrupting data.
//
// Thread-safe, with its own lock. Lock order: BlockPool's index lock may be
// held while calling in here; this class never calls out while holding its
// lock.

#ifndef KVQ_SERVER_POOL_PAGE_ALLOCATOR_H_
#define KVQ_SERVER_POOL_PAGE_ALLOCATOR_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kvq {

class PageAllocator {
 public:
  explicit PageAllocator(uint32_t pages_total);

  PageAllocator(const PageAllocator&) = delete;
  PageAllocator& operator=(const PageAllocator&) = delete;

  // Appends `count` free page ids to *pages and returns true, or returns
  // false and leaves *pages untouched if fewer than `count` are free.
  bool Allocate(uint64_t count, std::vector<uint32_t>* pages);

  // Returns pages to the free list. Aborts on a page that is not allocated.
  void Free(std::span<const uint32_t> pages);

  uint64_t pages_total() const { return pages_total_; }
  uint64_t pages_free() const;
  uint64_t pages_used() const { return pages_total_ - pages_free(); }

 private:
  const uint32_t pages_total_;
  mutable absl::Mutex mu_;
  std::vector<uint32_t> free_ ABSL_GUARDED_BY(mu_);     // a stack; top = back
  std::vector<bool> allocated_ ABSL_GUARDED_BY(mu_);    // by page id
};

}  // namespace kvq

#endif  // KVQ_SERVER_POOL_PAGE_ALLOCATOR_H_
