#include "server/pool/block_pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "server/pool/lru_list.h"
#include "server/pool/page_allocator.h"
#include "server/pool/stored_block.h"

namespace kvq {
namespace {

// Debian's Abseil has its own string_view, which StrCat and absl::Hash take
// but std::string_view does not convert to.
absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

// Index key. The views point into the StoredBlock the entry maps to, which
// lives (on the heap, never moved) at least as long as its entry; lookups
// build a view from the caller's string_views, so they never allocate.
struct BlockKeyView {
  std::string_view ns;
  std::string_view key;

  template <typename H>
  friend H AbslHashValue(H h, const BlockKeyView& k) {
    return H::combine(std::move(h), Sv(k.ns), Sv(k.key));
  }
  friend bool operator==(const BlockKeyView&, const BlockKeyView&) = default;
};

struct NamespaceTotals {
  uint64_t blocks = 0;
  uint64_t logical_bytes = 0;
  uint64_t stored_bytes = 0;
};

// "2.5 MiB", "1 MiB", "768 KiB", "100 B".
std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB",
                                           "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit + 1 < static_cast<int>(std::size(kUnits))) {
    value /= 1024;
    ++unit;
  }
  std::string number = absl::StrFormat("%.1f", value);
  if (number.size() > 2 && number.compare(number.size() - 2, 2, ".0") == 0) {
    number.resize(number.size() - 2);
  }
  return absl::StrCat(number, " ", kUnits[unit]);
}

std::string Pages(uint64_t count) {
  return absl::StrCat(count, count == 1 ? " page" : " pages");
}

}  // namespace

// Everything the pool shares with its PinnedBlocks. Lock order: mu, then the
// PageAllocator's own lock (taken when pages are allocated or a StoredBlock
// dies under mu). Every critical section is O(pages) of the blocks it
// touches, and O(pages) of the blocks it evicts.
struct PoolCore {
  using Lru = LruList<StoredBlock, &StoredBlock::lru>;

  PoolCore(const PoolOptions& options, uint32_t pages)
      : page_bytes(options.page_bytes),
        pages_total(pages),
        eviction(options.eviction),
        allocator(std::make_shared<PageAllocator>(pages)) {}

  ~PoolCore() {
    // Blocks still in the index die with it and return their pages; unlink
    // them first so no hook points at freed memory.
    absl::MutexLock lock(&mu);
    while (!lru.empty()) lru.Remove(lru.back());
  }

  // Makes `block` visible and most recently used. No block of its key may be
  // visible.
  void Publish(std::shared_ptr<StoredBlock> block)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const uint64_t pages = block->pages.size();
    block->visible = true;
    lru.PushFront(block.get());
    lru_pages += pages;
    logical_bytes += block->meta.logical_bytes;
    stored_bytes += block->payload_bytes;
    NamespaceTotals& ns = namespaces[block->ns];
    ++ns.blocks;
    ns.logical_bytes += block->meta.logical_bytes;
    ns.stored_bytes += block->payload_bytes;
    const BlockKeyView view{block->ns, block->key};
    index.emplace(view, std::move(block));
  }

  // Removes the block at `it` from the index and the LRU and returns the
  // index's reference. The caller drops it under mu, so an unpinned block's
  // pages are free again before anyone else looks at the allocator.
  template <typename Iterator>
  std::shared_ptr<StoredBlock> Unpublish(Iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::shared_ptr<StoredBlock> block = std::move(it->second);
    index.erase(it);
    const uint64_t pages = block->pages.size();
    block->visible = false;
    if (block->pins == 0) {
      lru.Remove(block.get());
      lru_pages -= pages;
    }
    logical_bytes -= block->meta.logical_bytes;
    stored_bytes -= block->payload_bytes;
    auto ns = namespaces.find(block->ns);
    if (--ns->second.blocks == 0) {
      namespaces.erase(ns);
    } else {
      ns->second.logical_bytes -= block->meta.logical_bytes;
      ns->second.stored_bytes -= block->payload_bytes;
    }
    return block;
  }

  // Evicts the least recently used unpinned block; false if there is none.
  bool EvictOne() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (lru.empty()) return false;
    StoredBlock* victim = lru.back();
    auto it = index.find(BlockKeyView{victim->ns, victim->key});
    Unpublish(it).reset();  // sole reference: frees the pages now
    ++evictions;
    return true;
  }

  const uint64_t page_bytes;
  const uint64_t pages_total;
  const EvictionPolicy eviction;
  const std::shared_ptr<PageAllocator> allocator;

  mutable absl::Mutex mu;
  absl::flat_hash_map<BlockKeyView, std::shared_ptr<StoredBlock>> index
      ABSL_GUARDED_BY(mu);
  Lru lru ABSL_GUARDED_BY(mu);          // visible, unpinned; front = MRU
  uint64_t lru_pages ABSL_GUARDED_BY(mu) = 0;     // pages of blocks in lru
  uint64_t pinned_pages ABSL_GUARDED_BY(mu) = 0;  // pages of pinned blocks
  uint64_t logical_bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t stored_bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t evictions ABSL_GUARDED_BY(mu) = 0;
  absl::flat_hash_map<std::string, NamespaceTotals> namespaces
      ABSL_GUARDED_BY(mu);
};

absl::StatusOr<EvictionPolicy> ParseEvictionPolicy(std::string_view name) {
  if (name == "lru") return EvictionPolicy::kLru;
  if (name == "reject") return EvictionPolicy::kReject;
  return absl::InvalidArgumentError(absl::StrCat(
      "--eviction must be \"lru\" or \"reject\", got \"", Sv(name), "\""));
}

std::string_view EvictionPolicyName(EvictionPolicy policy) {
  return policy == EvictionPolicy::kReject ? "reject" : "lru";
}

// ---- Reservation ----

Reservation::Reservation(Reservation&& other) noexcept
    : allocator_(std::move(other.allocator_)),
      pages_(std::move(other.pages_)),
      payload_bytes_(std::exchange(other.payload_bytes_, 0)) {
  other.pages_.clear();
}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    allocator_ = std::move(other.allocator_);
    pages_ = std::move(other.pages_);
    payload_bytes_ = std::exchange(other.payload_bytes_, 0);
    other.pages_.clear();
  }
  return *this;
}

Reservation::~Reservation() { Release(); }

void Reservation::Release() {
  if (allocator_ != nullptr && !pages_.empty()) allocator_->Free(pages_);
  allocator_.reset();
  pages_.clear();
  payload_bytes_ = 0;
}

// ---- PinnedBlock ----

PinnedBlock::PinnedBlock(std::shared_ptr<PoolCore> core,
                         std::shared_ptr<StoredBlock> block)
    : core_(std::move(core)), block_(std::move(block)) {}

PinnedBlock::PinnedBlock(PinnedBlock&& other) noexcept
    : core_(std::move(other.core_)), block_(std::move(other.block_)) {}

PinnedBlock& PinnedBlock::operator=(PinnedBlock&& other) noexcept {
  if (this != &other) {
    Unpin();
    core_ = std::move(other.core_);
    block_ = std::move(other.block_);
  }
  return *this;
}

PinnedBlock::~PinnedBlock() { Unpin(); }

void PinnedBlock::Unpin() {
  if (block_ == nullptr) return;
  // Keep the core alive past the lock: this may be its last reference.
  std::shared_ptr<PoolCore> core = std::move(core_);
  {
    absl::MutexLock lock(&core->mu);
    StoredBlock* block = block_.get();
    if (--block->pins == 0) {
      const uint64_t pages = block->pages.size();
      core->pinned_pages -= pages;
      if (block->visible) {
        core->lru.PushFront(block);
        core->lru_pages += pages;
      }
    }
    // Dropped under the lock: an unpinned visible block is then referenced
    // only by the index (so eviction frees its pages at once), and an erased
    // or replaced block frees its pages here if this was its last pin.
    block_.reset();
  }
}

const BlockMeta& PinnedBlock::meta() const { return block_->meta; }
std::span<const uint32_t> PinnedBlock::pages() const { return block_->pages; }
std::string_view PinnedBlock::ns() const { return block_->ns; }
std::string_view PinnedBlock::key() const { return block_->key; }
uint64_t PinnedBlock::payload_bytes() const { return block_->payload_bytes; }

// ---- BlockPool ----

absl::StatusOr<std::unique_ptr<BlockPool>> BlockPool::Create(
    const PoolOptions& options) {
  if (options.page_bytes == 0 || options.page_bytes % 256 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_bytes must be a positive multiple of 256, got ",
        options.page_bytes, "; set --page_bytes (e.g. 65536)"));
  }
  const uint64_t pages = options.capacity_bytes / options.page_bytes;
  if (pages == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool_bytes (", options.capacity_bytes, ") holds no page of ",
        options.page_bytes, " bytes; raise --pool_bytes to at least ",
        options.page_bytes, " or lower --page_bytes"));
  }
  if (pages > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool_bytes / page_bytes gives ", pages,
        " pages, more than page ids can name (",
        std::numeric_limits<uint32_t>::max(), "); raise --page_bytes"));
  }
  auto core = std::make_shared<PoolCore>(options, static_cast<uint32_t>(pages));
  return std::unique_ptr<BlockPool>(new BlockPool(std::move(core)));
}

BlockPool::BlockPool(std::shared_ptr<PoolCore> core) : core_(std::move(core)) {}

BlockPool::~BlockPool() = default;

absl::StatusOr<Reservation> BlockPool::Reserve(uint64_t payload_bytes) {
  PoolCore& core = *core_;
  const uint64_t needed = payload_bytes / core.page_bytes +
                          (payload_bytes % core.page_bytes != 0 ? 1 : 0);
  if (needed > core.pages_total) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "block needs ", Pages(needed), " (", HumanBytes(payload_bytes),
        ") but the pool has ", Pages(core.pages_total), " (",
        HumanBytes(core.pages_total * core.page_bytes),
        ") in total; raise --pool_bytes"));
  }
  Reservation reservation;
  reservation.allocator_ = core.allocator;
  reservation.payload_bytes_ = payload_bytes;
  if (needed == 0) return reservation;

  absl::MutexLock lock(&core.mu);
  if (core.allocator->Allocate(needed, &reservation.pages_)) {
    return reservation;
  }
  // Only Reserve allocates, and it holds mu; pages freed concurrently (a
  // dropped Reservation) only add to `free`. So if free + evictable pages
  // cover the request now, evicting is guaranteed to succeed.
  const uint64_t free = core.allocator->pages_free();
  const uint64_t used = core.pages_total - free;
  const uint64_t in_flight = used - core.lru_pages - core.pinned_pages;
  const std::string held = absl::StrCat(
      "pool full: ", Pages(free), " free, ", needed, " needed, ",
      core.pinned_pages, " held by pinned blocks, ", in_flight,
      " by puts in flight, ", core.lru_pages, " by unpinned blocks");
  if (core.eviction == EvictionPolicy::kReject) {
    return absl::ResourceExhaustedError(absl::StrCat(
        held,
        "; --eviction=reject does not evict: delete blocks, raise "
        "--pool_bytes, or use --eviction=lru"));
  }
  if (free + core.lru_pages < needed) {
    return absl::ResourceExhaustedError(absl::StrCat(
        held,
        "; evicting every unpinned block would not be enough: retry when "
        "reads and puts in flight finish, or raise --pool_bytes"));
  }
  while (core.allocator->pages_free() < needed) {
    if (!core.EvictOne()) break;  // unreachable, by the check above
  }
  if (!core.allocator->Allocate(needed, &reservation.pages_)) {
    return absl::InternalError(absl::StrCat(
        "pool bookkeeping: evicted every unpinned block and still have only ",
        Pages(core.allocator->pages_free()), " free of ", needed, " needed"));
  }
  return reservation;
}

void BlockPool::Commit(Reservation reservation, std::string_view ns,
                       std::string_view key, BlockMeta meta) {
  PoolCore& core = *core_;
  if (reservation.allocator_ != core.allocator) {
    std::fprintf(stderr,
                 "kvq: BlockPool::Commit of a Reservation that %s\n",
                 reservation.allocator_ == nullptr
                     ? "is empty (moved-from or already committed)"
                     : "belongs to another pool");
    std::abort();
  }
  // Build the block outside the lock; from here on it owns the pages.
  auto block = std::make_shared<StoredBlock>(
      std::string(ns), std::string(key), std::move(meta),
      std::move(reservation.pages_), reservation.payload_bytes_,
      std::move(reservation.allocator_));
  reservation.pages_.clear();
  reservation.payload_bytes_ = 0;

  std::shared_ptr<StoredBlock> replaced;
  absl::MutexLock lock(&core.mu);
  auto it = core.index.find(BlockKeyView{ns, key});
  if (it != core.index.end()) replaced = core.Unpublish(it);
  core.Publish(std::move(block));
  // Dropped under the lock (frees its pages now unless a reader pins it).
  replaced.reset();
}

std::optional<PinnedBlock> BlockPool::Pin(std::string_view ns,
                                          std::string_view key) {
  PoolCore& core = *core_;
  absl::MutexLock lock(&core.mu);
  auto it = core.index.find(BlockKeyView{ns, key});
  if (it == core.index.end()) return std::nullopt;
  StoredBlock* block = it->second.get();
  if (block->pins++ == 0) {
    const uint64_t pages = block->pages.size();
    core.lru.Remove(block);
    core.lru_pages -= pages;
    core.pinned_pages += pages;
  }
  return PinnedBlock(core_, it->second);
}

bool BlockPool::Contains(std::string_view ns, std::string_view key) const {
  absl::ReaderMutexLock lock(&core_->mu);
  return core_->index.contains(BlockKeyView{ns, key});
}

bool BlockPool::Erase(std::string_view ns, std::string_view key) {
  PoolCore& core = *core_;
  absl::MutexLock lock(&core.mu);
  auto it = core.index.find(BlockKeyView{ns, key});
  if (it == core.index.end()) return false;
  core.Unpublish(it).reset();  // frees now unless pinned
  return true;
}

PoolStats BlockPool::Stats() const {
  const PoolCore& core = *core_;
  PoolStats stats;
  stats.page_bytes = core.page_bytes;
  stats.pages_total = core.pages_total;
  absl::MutexLock lock(&core.mu);
  stats.pages_used = core.allocator->pages_used();
  stats.pages_pinned = core.pinned_pages;
  stats.blocks = core.index.size();
  stats.logical_bytes = core.logical_bytes;
  stats.stored_bytes = core.stored_bytes;
  stats.evictions = core.evictions;
  stats.namespaces.reserve(core.namespaces.size());
  for (const auto& [name, totals] : core.namespaces) {
    stats.namespaces.push_back(NamespaceUsage{
        name, totals.blocks, totals.logical_bytes, totals.stored_bytes});
  }
  std::sort(stats.namespaces.begin(), stats.namespaces.end(),
            [](const NamespaceUsage& a, const NamespaceUsage& b) {
              return a.ns < b.ns;
            });
  return stats;
}

uint64_t BlockPool::page_bytes() const { return core_->page_bytes; }
uint64_t BlockPool::pages_total() const { return core_->pages_total; }
EvictionPolicy BlockPool::eviction() const { return core_->eviction; }

}  // namespace kvq
