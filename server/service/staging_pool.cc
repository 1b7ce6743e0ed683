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

StagingBuffer::StagingBuffer(StagingBuffer&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      buffer_(std::move(other.buffer_)),
      size_(std::exchange(other.size_, 0)) {}

StagingBuffer& StagingBuffer::operator=(StagingBuffer&& other) noexcept {
  if (this != &other) {
    GiveBack();
    pool_ = std::exchange(other.pool_, nullptr);
    buffer_ = std::move(other.buffer_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

StagingBuffer::~StagingBuffer() { GiveBack(); }

void StagingBuffer::GiveBack() {
  if (pool_ != nullptr) pool_->GiveBack(std::move(buffer_));
  pool_ = nullptr;
  buffer_ = HostBuffer();  // heap memory: freed here
  size_ = 0;
}

StagingPool::StagingPool(Allocator allocate, uint64_t budget_bytes)
    : allocate_(std::move(allocate)), budget_bytes_(budget_bytes) {}

StagingPool::StagingPool(Backend* backend, uint64_t budget_bytes)
    : StagingPool(
          [backend](uint64_t bytes) {
            return backend->AllocateHostBuffer(bytes);
          },
          budget_bytes) {}

absl::StatusOr<StagingBuffer> StagingPool::Acquire(uint64_t bytes) {
  const uint64_t capacity = (std::max<uint64_t>(bytes, 1) + kGranuleBytes - 1) /
                            kGranuleBytes * kGranuleBytes;
  bool within_budget = false;
  std::vector<HostBuffer> dropped;  // freed outside the lock: freeing is slow
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = kept_.lower_bound(bytes); it != kept_.end()) {
      HostBuffer buffer = std::move(it->second);
      kept_.erase(it);
      usage_.kept_bytes -= buffer.size();
      --usage_.kept_buffers;
      usage_.lent_bytes += buffer.size();
      return StagingBuffer(this, std::move(buffer), bytes);
    }
    // Every kept buffer is too small: drop the largest until a new one fits
    // (fewest frees), unless no amount of dropping would make room.
    if (capacity <= budget_bytes_) {
      while (!kept_.empty() &&
             usage_.lent_bytes + usage_.kept_bytes + capacity > budget_bytes_) {
        auto largest = std::prev(kept_.end());
        usage_.kept_bytes -= largest->second.size();
        --usage_.kept_buffers;
        dropped.push_back(std::move(largest->second));
        kept_.erase(largest);
      }
      within_budget =
          usage_.lent_bytes + usage_.kept_bytes + capacity <= budget_bytes_;
    }
    if (within_budget) {
      usage_.lent_bytes += capacity;  // reserved while allocating unlocked
    } else {
      ++usage_.heap_buffers;
    }
  }
  dropped.clear();

  if (within_budget) {
    absl::StatusOr<HostBuffer> buffer = allocate_(capacity);
    if (buffer.ok()) return StagingBuffer(this, *std::move(buffer), bytes);
    std::lock_guard<std::mutex> lock(mu_);
    usage_.lent_bytes -= capacity;
    ++usage_.heap_buffers;
  }
  void* data = std::malloc(std::max<uint64_t>(bytes, 1));
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes of host memory for this block"));
  }
  return StagingBuffer(nullptr, HostBuffer(data, bytes, &std::free), bytes);
}

StagingPool::Usage StagingPool::usage() const {
  std::lock_guard<std::mutex> lock(mu_);
  return usage_;
}

void StagingPool::GiveBack(HostBuffer buffer) {
  std::lock_guard<std::mutex> lock(mu_);
  usage_.lent_bytes -= buffer.size();
  usage_.kept_bytes += buffer.size();
  ++usage_.kept_buffers;
  const uint64_t capacity = buffer.size();
  kept_.emplace(capacity, std::move(buffer));
}

}  // namespace kvq
