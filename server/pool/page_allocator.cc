#include "server/pool/page_allocator.h"

#include <cstdio>
#include <cstdlib>

namespace kvq {

PageAllocator::PageAllocator(uint32_t pages_total)
    : pages_total_(pages_total), allocated_(pages_total, false) {
  // Highest id at the bottom of the stack, so a fresh pool hands out 0, 1, ...
  free_.reserve(pages_total);
  for (uint32_t i = pages_total; i > 0; --i) free_.push_back(i - 1);
}

bool PageAllocator::Allocate(uint64_t count, std::vector<uint32_t>* pages) {
  absl::MutexLock lock(&mu_);
  if (count > free_.size()) return false;
  pages->reserve(pages->size() + count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t page = free_.back();
    free_.pop_back();
    allocated_[page] = true;
    pages->push_back(page);
  }
  return true;
}

void PageAllocator::Free(std::span<const uint32_t> pages) {
  absl::MutexLock lock(&mu_);
  for (const uint32_t page : pages) {
    if (page >= pages_total_ || !allocated_[page]) {
      std::fprintf(stderr,
                   "kvq: PageAllocator::Free of page %u, which is %s (pool has "
                   "%u pages): pool bookkeeping is corrupt\n",
                   page, page >= pages_total_ ? "out of range" : "not allocated",
                   pages_total_);
      std::abort();
    }
    allocated_[page] = false;
    free_.push_back(page);
  }
}

uint64_t PageAllocator::pages_free() const {
  absl::MutexLock lock(&mu_);
  return free_.size();
}

}  // namespace kvq
