// StagingPool: buffers for blocks in transit are reused, stay within their
// budget, and never fail a request the heap can still serve.

#include "server/service/staging_pool.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace kvq {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kBudget = 8 * kMiB;  // of the concurrency test

// A backend that only hands out host memory, counting what it hands out,
// and refuses to when told to (as cudaHostAlloc does when page-locked memory
// runs out).
class HostMemoryBackend final : public Backend {
 public:
  std::string_view name() const override { return "host-memory"; }
  std::string device_name() const override { return "test"; }
  absl::StatusOr<float> QuantizeInto(const BlockLayout&, DType,
                                     const BlockBytes&,
                                     std::span<const uint32_t>,
                                     DataPathTimings*, ErrorSums*) override {
    return absl::UnimplementedError("not a real backend");
  }
  absl::Status DequantizeFrom(const BlockLayout&, std::span<const uint32_t>,
                              DType, std::span<std::byte>, DataPathTimings*,
                              const ReadyPrefixes*) override {
    return absl::UnimplementedError("not a real backend");
  }
  absl::StatusOr<HostBuffer> AllocateHostBuffer(uint64_t bytes) override {
    if (refuse_) return absl::ResourceExhaustedError("no page-locked memory");
    ++allocations_;
    return HostBuffer(std::malloc(bytes), bytes, &std::free);
  }

  CopyWrites host_buffer_writes() const override { return writes_; }

  int allocations() const { return allocations_; }
  void set_refuse(bool refuse) { refuse_ = refuse; }
  void set_writes(CopyWrites writes) { writes_ = writes; }

 private:
  std::atomic<int> allocations_{0};
  bool refuse_ = false;
  CopyWrites writes_ = CopyWrites::kCached;
};

// Counts the buffers of an allocator that are still allocated.
std::atomic<int> live_counted_buffers{0};
void FreeCounted(void* p) {
  --live_counted_buffers;
  std::free(p);
}
absl::StatusOr<HostBuffer> AllocateCounted(uint64_t bytes) {
  ++live_counted_buffers;
  return HostBuffer(std::malloc(bytes), bytes, &FreeCounted);
}

TEST(StagingPoolTest, BufferGivenBackAfterItsPoolIsGoneIsFreed) {
  // As gRPC can hold a Get's answer past the server's shutdown.
  live_counted_buffers = 0;
  std::optional<StagingBuffer> outliving;
  {
    StagingPool pool(&AllocateCounted, 64 * kMiB);
    absl::StatusOr<StagingBuffer> kept = pool.Acquire(kMiB);
    absl::StatusOr<StagingBuffer> lent = pool.Acquire(2 * kMiB);
    ASSERT_TRUE(kept.ok() && lent.ok());
    std::memset(lent->data(), 0x5a, lent->size());
    *kept = StagingBuffer();  // back on the shelf
    outliving = *std::move(lent);
    EXPECT_EQ(live_counted_buffers, 2);
  }
  EXPECT_EQ(live_counted_buffers, 1);  // the pool freed what it kept
  const std::byte last = outliving->data()[outliving->size() - 1];
  EXPECT_EQ(last, std::byte{0x5a});  // still the caller's
  outliving.reset();
  EXPECT_EQ(live_counted_buffers, 0);
}

TEST(StagingPoolTest, LentBufferHasTheRequestedSizeAndIsWritable) {
  HostMemoryBackend backend;
  StagingPool pool(&backend, 64 * kMiB);
  absl::StatusOr<StagingBuffer> buffer = pool.Acquire(3 * kMiB + 5);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(buffer->size(), 3 * kMiB + 5);
  EXPECT_EQ(buffer->bytes().size(), 3 * kMiB + 5);
  std::memset(buffer->data(), 0x5a, buffer->size());
  EXPECT_EQ(pool.usage().lent_bytes, 4 * kMiB) << "whole MiB from the backend";
}

TEST(StagingPoolTest, GivenBackBufferServesTheNextBlockThatFits) {
  HostMemoryBackend backend;
  StagingPool pool(&backend, 64 * kMiB);
  std::byte* first = nullptr;
  {
    StagingBuffer buffer = *pool.Acquire(2 * kMiB);
    first = buffer.data();
  }
  EXPECT_EQ(pool.usage().kept_buffers, 1u);
  EXPECT_EQ(pool.usage().lent_bytes, 0u);
  StagingBuffer again = *pool.Acquire(2 * kMiB - 100);
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(backend.allocations(), 1);
  EXPECT_EQ(pool.usage().kept_buffers, 0u);
}

TEST(StagingPoolTest, AnyAllocatorCanBackThePool) {
  StagingPool pool(&AllocatePlainHostBuffer, 64 * kMiB);
  std::byte* first = nullptr;
  {
    StagingBuffer buffer = *pool.Acquire(5 * kMiB);
    std::memset(buffer.data(), 1, buffer.size());
    first = buffer.data();
  }
  EXPECT_EQ(pool.Acquire(4 * kMiB)->data(), first);
  EXPECT_EQ(pool.usage().heap_buffers, 0u);
}

TEST(StagingPoolTest, SmallestKeptBufferThatFitsIsLent) {
  HostMemoryBackend backend;
  StagingPool pool(&backend, 64 * kMiB);
  std::byte* small = nullptr;
  {
    StagingBuffer big = *pool.Acquire(8 * kMiB);
    StagingBuffer one = *pool.Acquire(kMiB);
    small = one.data();
  }
  StagingBuffer lent = *pool.Acquire(kMiB / 2);
  EXPECT_EQ(lent.data(), small);
  EXPECT_EQ(pool.usage().kept_bytes, 8 * kMiB);
}

TEST(StagingPoolTest, PastTheBudgetRequestsGetHeapMemoryThatIsNotKept) {
  HostMemoryBackend backend;
  StagingPool pool(&backend, 4 * kMiB);
  StagingBuffer within = *pool.Acquire(3 * kMiB);
  {
    absl::StatusOr<StagingBuffer> beyond = pool.Acquire(2 * kMiB);
    ASSERT_TRUE(beyond.ok()) << beyond.status();
    std::memset(beyond->data(), 1, beyond->size());
    EXPECT_EQ(pool.usage().heap_buffers, 1u);
  }
  EXPECT_EQ(pool.usage().kept_buffers, 0u) << "heap memory is freed";
  EXPECT_EQ(pool.usage().lent_bytes, 3 * kMiB);
  EXPECT_EQ(backend.allocations(), 1);
}

TEST(StagingPoolTest, RequestLargerThanTheBudgetDropsNoKeptBuffer) {
  HostMemoryBackend backend;
  StagingPool pool(&backend, 4 * kMiB);
  { StagingBuffer kept = *pool.Acquire(kMiB); }
  absl::StatusOr<StagingBuffer> huge = pool.Acquire(16 * kMiB);
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_EQ(pool.usage().kept_buffers, 1u);
  EXPECT_EQ(pool.usage().heap_buffers, 1u);
}

TEST(StagingPoolTest, KeptBuffersTooSmallAreDroppedToMakeRoom) {
  HostMemoryBackend backend;
  StagingPool pool(&backend, 4 * kMiB);
  {
    StagingBuffer a = *pool.Acquire(kMiB);
    StagingBuffer b = *pool.Acquire(2 * kMiB);
  }
  ASSERT_EQ(pool.usage().kept_bytes, 3 * kMiB);
  StagingBuffer big = *pool.Acquire(3 * kMiB);
  // Dropping the 2 MiB buffer made room; the 1 MiB one is still kept.
  EXPECT_EQ(pool.usage().lent_bytes, 3 * kMiB);
  EXPECT_EQ(pool.usage().kept_bytes, kMiB);
  EXPECT_EQ(pool.usage().heap_buffers, 0u);
}

TEST(StagingPoolTest, BackendOutOfMemoryFallsBackToTheHeap) {
  HostMemoryBackend backend;
  backend.set_refuse(true);
  StagingPool pool(&backend, 64 * kMiB);
  absl::StatusOr<StagingBuffer> buffer = pool.Acquire(kMiB);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(pool.usage().heap_buffers, 1u);
  EXPECT_EQ(pool.usage().lent_bytes, 0u) << "the failed reservation is undone";
}

TEST(StagingPoolTest, BackendBuffersAreWrittenAsTheBackendSaysHeapOnesCached) {
  // The CUDA backend's page-locked buffers are read next by its DMA
  // (streaming writes); heap memory past the budget is copied again by the
  // CPU, so it is written through the caches.
  HostMemoryBackend backend;
  backend.set_writes(CopyWrites::kStreaming);
  StagingPool pool(&backend, 4 * kMiB);
  StagingBuffer fresh = *pool.Acquire(2 * kMiB);
  EXPECT_EQ(fresh.writes(), CopyWrites::kStreaming);
  StagingBuffer heap = *pool.Acquire(4 * kMiB);  // past the budget
  EXPECT_EQ(heap.writes(), CopyWrites::kCached);
  fresh = StagingBuffer();  // kept
  StagingBuffer reused = *pool.Acquire(kMiB);
  EXPECT_EQ(reused.writes(), CopyWrites::kStreaming);
  EXPECT_EQ(backend.allocations(), 1);

  StagingPool plain(&AllocateCounted, 4 * kMiB);
  EXPECT_EQ(plain.Acquire(kMiB)->writes(), CopyWrites::kCached);
}

TEST(StagingPoolTest, ConcurrentUseStaysWithinTheBudgetAndLeavesNothingLent) {
  HostMemoryBackend backend;
  StagingPool pool(&backend, kBudget);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      std::mt19937_64 rng(std::random_device{}() + t);
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<StagingBuffer> buffer =
            pool.Acquire(1 + rng() % (3 * kMiB));
        ASSERT_TRUE(buffer.ok()) << buffer.status();
        buffer->data()[buffer->size() - 1] = std::byte{1};
        const StagingPool::Usage usage = pool.usage();
        ASSERT_LE(usage.lent_bytes + usage.kept_bytes, kBudget);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(pool.usage().lent_bytes, 0u);
  EXPECT_LE(pool.usage().kept_bytes, kBudget);
}

}  // namespace
}  // namespace kvq
