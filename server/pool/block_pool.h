// BlockPool: the paged pool's bookkeeping (pages, block index, eviction).
//
// The pool hands out page ids of a fixed-size arena and remembers which pages
// hold which block; it never touches the bytes (the backend owns the arena, in
// host or device memory, and maps a page id to an address). That keeps one
// pool for every backend. Page ids are 0 .. pages_total() - 1.
//
// Life of a put:
//   1. Reserve(payload_bytes) takes ceil(payload_bytes / page_bytes) pages,
//      evicting least-recently-used unpinned blocks if the policy allows.
//   2. The caller writes the payload into the reserved pages.
//   3. Commit(reservation, key, meta) publishes the block; an existing block
//      under the same key is replaced atomically. Until Commit, nobody sees
//      it; a Reservation dropped without Commit returns its pages.
//
// Reads Pin() a block: a pinned block is never evicted, and a block deleted or
// replaced while pinned keeps its pages until the last pin is released.
//
// Recency: Pin() and Commit() make a block the most recently used; releasing
// the last pin makes it most recently used again (it was in use until then).
// Contains() and Stats() do not change the order.
//
// Eviction never destroys a block for nothing: Reserve() evicts only when the
// evictable blocks together with the free pages can satisfy the request.
//
// Thread-safe: every method may be called from any thread. Reservations and
// PinnedBlocks may outlive the BlockPool that made them (they keep what they
// need alive), so shutdown order is not a hazard.

#ifndef KVQ_SERVER_POOL_BLOCK_POOL_H_
#define KVQ_SERVER_POOL_BLOCK_POOL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/format.h"

namespace kvq {

class PageAllocator;   // server/pool/page_allocator.h
struct StoredBlock;    // server/pool/stored_block.h
struct PoolCore;       // block_pool.cc

enum class EvictionPolicy { kLru, kReject };

// "lru" or "reject"; INVALID_ARGUMENT naming --eviction otherwise.
absl::StatusOr<EvictionPolicy> ParseEvictionPolicy(std::string_view name);
std::string_view EvictionPolicyName(EvictionPolicy policy);

// What the pool remembers about a block besides its pages.
struct BlockMeta {
  DType dtype = DType::kFp32;  // as put
  BlockLayout layout;
  uint64_t logical_bytes = 0;  // as the client sent it
  float absmax = 0;            // largest |value| it decodes to
};

struct PoolOptions {
  uint64_t capacity_bytes = 0;  // rounded down to whole pages
  uint64_t page_bytes = 0;      // a multiple of 256
  EvictionPolicy eviction = EvictionPolicy::kLru;
};

struct NamespaceUsage {
  std::string ns;
  uint64_t blocks = 0;
  uint64_t logical_bytes = 0;
  uint64_t stored_bytes = 0;
};

struct PoolStats {
  uint64_t page_bytes = 0;
  uint64_t pages_total = 0;
  uint64_t pages_used = 0;      // reserved or held, including pinned orphans
  uint64_t pages_pinned = 0;    // held by pinned blocks (visible or orphaned)
  uint64_t blocks = 0;          // visible blocks
  uint64_t logical_bytes = 0;   // of visible blocks
  uint64_t stored_bytes = 0;    // payload bytes of visible blocks
  uint64_t evictions = 0;       // blocks evicted since start
  std::vector<NamespaceUsage> namespaces;  // sorted by ns; only non-empty ones
};

class BlockPool;

// Pages held for a put that is not yet visible. Move-only; returns its pages
// when destroyed uncommitted. A default-constructed or moved-from Reservation
// holds nothing and must not be committed.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&&) noexcept;
  Reservation& operator=(Reservation&&) noexcept;
  ~Reservation();

  std::span<const uint32_t> pages() const { return pages_; }
  // The payload size asked of Reserve(); the block's stored_bytes.
  uint64_t payload_bytes() const { return payload_bytes_; }

 private:
  friend class BlockPool;
  void Release();

  std::shared_ptr<PageAllocator> allocator_;
  std::vector<uint32_t> pages_;
  uint64_t payload_bytes_ = 0;
};

// A block held for reading. Move-only; unpins on destruction. The accessors
// must not be called on a moved-from PinnedBlock.
class PinnedBlock {
 public:
  PinnedBlock(PinnedBlock&&) noexcept;
  PinnedBlock& operator=(PinnedBlock&&) noexcept;
  ~PinnedBlock();

  const BlockMeta& meta() const;
  std::span<const uint32_t> pages() const;
  std::string_view ns() const;
  std::string_view key() const;
  uint64_t payload_bytes() const;

 private:
  friend class BlockPool;
  PinnedBlock(std::shared_ptr<PoolCore> core,
              std::shared_ptr<StoredBlock> block);
  void Unpin();

  std::shared_ptr<PoolCore> core_;
  std::shared_ptr<StoredBlock> block_;
};

class BlockPool {
 public:
  // INVALID_ARGUMENT if page_bytes is not a positive multiple of 256, the
  // capacity holds no page, or it holds more pages than a uint32_t page id
  // can name.
  static absl::StatusOr<std::unique_ptr<BlockPool>> Create(
      const PoolOptions& options);
  ~BlockPool();

  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // RESOURCE_EXHAUSTED if the payload exceeds the whole pool, or if the pool
  // is full and the policy is kReject or the evictable blocks cannot free
  // enough pages (the rest is pinned or held by puts in flight). The message
  // gives the page counts and the flag to change. A payload of 0 bytes gets
  // a Reservation with no pages.
  absl::StatusOr<Reservation> Reserve(uint64_t payload_bytes);

  // Publishes the block as most recently used; replaces (and releases) a
  // block of the same key. The reservation must come from this pool's
  // Reserve() and not have been committed (a programming error otherwise:
  // the process aborts with a message).
  void Commit(Reservation reservation, std::string_view ns,
              std::string_view key, BlockMeta meta);

  // Pins a block for reading and marks it most recently used; nullopt on miss.
  std::optional<PinnedBlock> Pin(std::string_view ns, std::string_view key);

  // True if the block is visible. Does not change LRU order.
  bool Contains(std::string_view ns, std::string_view key) const;

  // Removes the block; false if it was not there. A pinned block disappears
  // from the index at once and frees its pages when the last pin drops.
  bool Erase(std::string_view ns, std::string_view key);

  PoolStats Stats() const;
  uint64_t page_bytes() const;
  uint64_t pages_total() const;
  EvictionPolicy eviction() const;

 private:
  explicit BlockPool(std::shared_ptr<PoolCore> core);
  std::shared_ptr<PoolCore> core_;
};

}  // namespace kvq

#endif  // KVQ_SERVER_POOL_BLOCK_POOL_H_
