// StoredBlock: one committed block as the pool holds it (internal to
// server/pool; other modules see it through PinnedBlock).
//
// A StoredBlock owns its pages: they return to the allocator when the last
// reference goes, which is how a block erased or replaced while pinned keeps
// its pages until the last PinnedBlock drops. The pool's index holds one
// reference while the block is visible; each PinnedBlock holds one more.
// The identity fields are immutable after construction, so a PinnedBlock
// reads them without a lock; the bookkeeping fields are guarded by the
// pool's index lock (PoolCore::mu).

#ifndef KVQ_SERVER_POOL_STORED_BLOCK_H_
#define KVQ_SERVER_POOL_STORED_BLOCK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/pool/block_pool.h"
#include "server/pool/lru_list.h"
#include "server/pool/page_allocator.h"

namespace kvq {

struct StoredBlock {
  StoredBlock(std::string ns_in, std::string key_in, BlockMeta meta_in,
              std::vector<uint32_t> pages_in, uint64_t payload_bytes_in,
              std::shared_ptr<PageAllocator> allocator_in)
      : ns(std::move(ns_in)),
        key(std::move(key_in)),
        meta(std::move(meta_in)),
        pages(std::move(pages_in)),
        payload_bytes(payload_bytes_in),
        allocator(std::move(allocator_in)) {}

  ~StoredBlock() { allocator->Free(pages); }

  StoredBlock(const StoredBlock&) = delete;
  StoredBlock& operator=(const StoredBlock&) = delete;

  // Immutable.
  const std::string ns;
  const std::string key;
  const BlockMeta meta;
  const std::vector<uint32_t> pages;
  const uint64_t payload_bytes;
  const std::shared_ptr<PageAllocator> allocator;

  // Guarded by PoolCore::mu.
  uint32_t pins = 0;
  bool visible = false;        // in the index
  LruHook<StoredBlock> lru;    // linked iff visible && pins == 0
};

}  // namespace kvq

#endif  // KVQ_SERVER_POOL_STORED_BLOCK_H_
