// BlockPool: the paged pool's bookkeeping (pages, block index, eviction).
//
// The pool hands out page ids of a fixed-size arena and remembers which pages
// hold which block; it never touches the bytes (the backend owns the arena, in
// host or device memory, and maps a page id to an address). That keeps one
// pool for every backend.
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
// Thread-safe: every method may be called from any thread.

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

enum class EvictionPolicy { kLru, kReject };
absl::StatusOr<EvictionPolicy> ParseEvictionPolicy(std::string_view name);

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
  uint64_t blocks = 0;          // visible blocks
  uint64_t logical_bytes = 0;   // of visible blocks
  uint64_t stored_bytes = 0;    // payload bytes of visible blocks
  uint64_t evictions = 0;       // since start
  std::vector<NamespaceUsage> namespaces;
};

class BlockPool;

// Pages held for a put that is not yet visible. Move-only; returns its pages
// when destroyed uncommitted.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&&) noexcept;
  Reservation& operator=(Reservation&&) noexcept;
  ~Reservation();

  std::span<const uint32_t> pages() const { return pages_; }

 private:
  friend class BlockPool;
  std::shared_ptr<class PageAllocator> allocator_;
  std::vector<uint32_t> pages_;
};

// A block held for reading. Move-only; unpins on destruction.
class PinnedBlock {
 public:
  PinnedBlock(PinnedBlock&&) noexcept;
  PinnedBlock& operator=(PinnedBlock&&) noexcept;
  ~PinnedBlock();

  const BlockMeta& meta() const;
  std::span<const uint32_t> pages() const;

 private:
  friend class BlockPool;
  explicit PinnedBlock(std::shared_ptr<struct StoredBlock> block);
  std::shared_ptr<struct StoredBlock> block_;
};

class BlockPool {
 public:
  // INVALID_ARGUMENT if page_bytes is not a positive multiple of 256 or the
  // capacity holds no page.
  static absl::StatusOr<std::unique_ptr<BlockPool>> Create(
      const PoolOptions& options);
  ~BlockPool();

  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // RESOURCE_EXHAUSTED if the payload exceeds the whole pool, or if the pool
  // is full and the policy is kReject or every remaining block is pinned.
  absl::StatusOr<Reservation> Reserve(uint64_t payload_bytes);

  // Publishes the block; replaces (and releases) a block of the same key.
  void Commit(Reservation reservation, std::string_view ns,
              std::string_view key, BlockMeta meta);

  // Pins a block for reading and marks it most recently used; nullopt on miss.
  std::optional<PinnedBlock> Pin(std::string_view ns, std::string_view key);

  // True if the block is visible. Does not change LRU order.
  bool Contains(std::string_view ns, std::string_view key) const;

  // Removes the block; false if it was not there.
  bool Erase(std::string_view ns, std::string_view key);

  PoolStats Stats() const;
  uint64_t page_bytes() const;
  uint64_t pages_total() const;

 private:
  struct State;
  explicit BlockPool(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace kvq

#endif  // KVQ_SERVER_POOL_BLOCK_POOL_H_
