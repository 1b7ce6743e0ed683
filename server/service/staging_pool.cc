#include "server/service/staging_pool.h"

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvq {
namespace {

// Backend buffers are allocated in whole MiB, so that blocks of nearly the
// same size share buffers.
constexpr uint64_t kGranuleBytes = uint64_t{1} << 20;

}  // namespace

namespace staging_internal {

struct Shelf {
  std::mutex mu;
  bool open = true;  // false once the pool is gone: nothing is kept
  std::multimap<uint64_t, HostBuffer> kept;  // by capacity
  StagingPool::Usage usage;

  void GiveBack(HostBuffer buffer) {
    std::unique_lock<std::mutex> lock(mu);
    usage.lent_bytes -= buffer.size();
    if (!open) {
      lock.unlock();
      return;  // `buffer` is freed here, outside the lock
    }
    usage.kept_bytes += buffer.size();
    ++usage.kept_buffers;
    const uint64_t capacity = buffer.size();
    kept.emplace(capacity, std::move(buffer));
  }
};

}  // namespace staging_internal

StagingBuffer::StagingBuffer(StagingBuffer&& other) noexcept
    : shelf_(std::move(other.shelf_)),
      buffer_(std::move(other.buffer_)),
      size_(std::exchange(other.size_, 0)),
      writes_(std::exchange(other.writes_, CopyWrites::kCached)) {}

StagingBuffer& StagingBuffer::operator=(StagingBuffer&& other) noexcept {
  if (this != &other) {
    GiveBack();
    shelf_ = std::move(other.shelf_);
    buffer_ = std::move(other.buffer_);
    size_ = std::exchange(other.size_, 0);
    writes_ = std::exchange(other.writes_, CopyWrites::kCached);
  }
  return *this;
}

StagingBuffer::~StagingBuffer() { GiveBack(); }

void StagingBuffer::GiveBack() {
  if (shelf_ != nullptr) shelf_->GiveBack(std::move(buffer_));
  shelf_ = nullptr;
  buffer_ = HostBuffer();  // heap memory: freed here
  size_ = 0;
  writes_ = CopyWrites::kCached;
}

StagingPool::StagingPool(Allocator allocate, uint64_t budget_bytes,
                         CopyWrites writes)
    : allocate_(std::move(allocate)),
      budget_bytes_(budget_bytes),
      writes_(writes),
      shelf_(std::make_shared<staging_internal::Shelf>()) {}

StagingPool::~StagingPool() {
  std::multimap<uint64_t, HostBuffer> kept;  // freed outside the lock
  std::lock_guard<std::mutex> lock(shelf_->mu);
  shelf_->open = false;
  kept.swap(shelf_->kept);
  shelf_->usage.kept_bytes = 0;
  shelf_->usage.kept_buffers = 0;
}

StagingPool::StagingPool(Backend* backend, uint64_t budget_bytes)
    : StagingPool(
          [backend](uint64_t bytes) {
            return backend->AllocateHostBuffer(bytes);
          },
          budget_bytes, backend->host_buffer_writes()) {}

absl::StatusOr<StagingBuffer> StagingPool::Acquire(uint64_t bytes) {
  const uint64_t capacity = (std::max<uint64_t>(bytes, 1) + kGranuleBytes - 1) /
                            kGranuleBytes * kGranuleBytes;
  bool within_budget = false;
  std::vector<HostBuffer> dropped;  // freed outside the lock: freeing is slow
  {
    std::lock_guard<std::mutex> lock(shelf_->mu);
    std::multimap<uint64_t, HostBuffer>& kept = shelf_->kept;
    Usage& usage = shelf_->usage;
    if (auto it = kept.lower_bound(bytes); it != kept.end()) {
      HostBuffer buffer = std::move(it->second);
      kept.erase(it);
      usage.kept_bytes -= buffer.size();
      --usage.kept_buffers;
      usage.lent_bytes += buffer.size();
      return StagingBuffer(shelf_, std::move(buffer), bytes, writes_);
    }
    // Every kept buffer is too small: drop the largest until a new one fits
    // (fewest frees), unless no amount of dropping would make room.
    if (capacity <= budget_bytes_) {
      while (!kept.empty() &&
             usage.lent_bytes + usage.kept_bytes + capacity > budget_bytes_) {
        auto largest = std::prev(kept.end());
        usage.kept_bytes -= largest->second.size();
        --usage.kept_buffers;
        dropped.push_back(std::move(largest->second));
        kept.erase(largest);
      }
      within_budget =
          usage.lent_bytes + usage.kept_bytes + capacity <= budget_bytes_;
    }
    if (within_budget) {
      usage.lent_bytes += capacity;  // reserved while allocating unlocked
    } else {
      ++usage.heap_buffers;
    }
  }
  dropped.clear();

  if (within_budget) {
    absl::StatusOr<HostBuffer> buffer = allocate_(capacity);
    if (buffer.ok()) {
      return StagingBuffer(shelf_, *std::move(buffer), bytes, writes_);
    }
    std::lock_guard<std::mutex> lock(shelf_->mu);
    shelf_->usage.lent_bytes -= capacity;
    ++shelf_->usage.heap_buffers;
  }
  void* data = std::malloc(std::max<uint64_t>(bytes, 1));
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes of host memory for this block"));
  }
  return StagingBuffer(nullptr, HostBuffer(data, bytes, &std::free), bytes,
                       CopyWrites::kCached);
}

StagingPool::Usage StagingPool::usage() const {
  std::lock_guard<std::mutex> lock(shelf_->mu);
  return shelf_->usage;
}

}  // namespace kvq
