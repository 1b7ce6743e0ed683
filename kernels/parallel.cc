#include "kernels/parallel.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kvq {
namespace {

// memcpy with non-temporal stores for the 16-byte-aligned middle of dst.
void StreamingCopy(char* dst, const char* src, size_t n) {
#if defined(__SSE2__)
  constexpr size_t kVec = 16;
  constexpr size_t kStep = 4 * kVec;  // four loads in flight per step
  const size_t head =
      std::min(n, (kVec - reinterpret_cast<uintptr_t>(dst) % kVec) % kVec);
  std::memcpy(dst, src, head);
  size_t i = head;
  for (; i + kStep <= n; i += kStep) {
    __m128i v[4];
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm_loadu_si128(
          reinterpret_cast<const __m128i*>(src + i + k * kVec));
    }
    for (int k = 0; k < 4; ++k) {
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + k * kVec), v[k]);
    }
  }
  std::memcpy(dst + i, src + i, n - i);
  // Non-temporal stores are weakly ordered: they must be visible before the
  // task reports itself done.
  _mm_sfence();
#else
  std::memcpy(dst, src, n);
#endif
}

}  // namespace

// One ParallelFor call. It lives on its caller's stack; the caller waits for
// `helpers` to drop to zero before returning, so no worker touches it after.
struct WorkerPool::Loop {
  Loop(size_t n, size_t grain, absl::FunctionRef<void(size_t, size_t)> fn)
      : n(n), grain(grain), chunks((n + grain - 1) / grain), fn(fn) {}

  const size_t n;
  const size_t grain;
  const size_t chunks;
  absl::FunctionRef<void(size_t, size_t)> fn;
  std::atomic<size_t> next_chunk{0};
  int helpers = 0;  // workers inside RunChunks; guarded by the pool's mu_
  std::condition_variable helpers_done;
};

WorkerPool::WorkerPool(int workers) {
  threads_.reserve(std::max(workers, 0));
  for (int i = 0; i < workers; ++i) {
    threads_.emplace_back([this] { WorkerMain(); });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  for (std::thread& t : threads_) t.join();
}

WorkerPool& WorkerPool::Default() {
  static WorkerPool* const pool = [] {
    const int hardware = static_cast<int>(std::thread::hardware_concurrency());
    return new WorkerPool(std::clamp(hardware, 1, 8) - 1);
  }();
  return *pool;
}

void WorkerPool::RunChunks(Loop& loop) {
  for (;;) {
    const size_t c = loop.next_chunk.fetch_add(1, std::memory_order_relaxed);
    if (c >= loop.chunks) return;
    const size_t begin = c * loop.grain;
    loop.fn(begin, std::min(loop.n, begin + loop.grain));
  }
}

void WorkerPool::WorkerMain() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_.wait(lock, [this] { return stopping_ || !loops_.empty(); });
    if (stopping_) return;
    Loop* loop = loops_.front();
    // Every chunk of the front loop is about to be claimed by someone; let
    // the next waiting worker look at the loop behind it.
    if (loop->next_chunk.load(std::memory_order_relaxed) >= loop->chunks) {
      loops_.pop_front();
      continue;
    }
    ++loop->helpers;
    lock.unlock();
    RunChunks(*loop);
    lock.lock();
    if (--loop->helpers == 0) loop->helpers_done.notify_all();
  }
}

void WorkerPool::ParallelFor(size_t n, size_t grain,
                             absl::FunctionRef<void(size_t, size_t)> fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  if (threads_.empty() || n <= grain) {
    for (size_t begin = 0; begin < n; begin += grain) {
      fn(begin, std::min(n, begin + grain));
    }
    return;
  }
  Loop loop(n, grain, fn);
  {
    std::lock_guard<std::mutex> lock(mu_);
    loops_.push_back(&loop);
  }
  // Wake as many workers as there are chunks beyond the caller's first.
  const size_t wake = std::min(loop.chunks - 1, threads_.size());
  for (size_t i = 0; i < wake; ++i) work_.notify_one();

  RunChunks(loop);

  std::unique_lock<std::mutex> lock(mu_);
  // Every chunk is claimed: no new worker may join. Those inside finish the
  // chunks they hold.
  auto it = std::find(loops_.begin(), loops_.end(), &loop);
  if (it != loops_.end()) loops_.erase(it);
  loop.helpers_done.wait(lock, [&loop] { return loop.helpers == 0; });
}

void ParallelFor(size_t n, size_t grain,
                 absl::FunctionRef<void(size_t, size_t)> fn) {
  if (n <= std::max<size_t>(grain, 1)) {
    if (n > 0) fn(0, n);
    return;
  }
  WorkerPool::Default().ParallelFor(n, grain, fn);
}

void ParallelCopy(std::span<const CopyPiece> pieces, CopyWrites writes) {
  // Tasks big enough that handing one to a worker costs far less than
  // copying it.
  constexpr size_t kTaskBytes = size_t{256} << 10;
  // The pieces laid end to end: piece i covers [starts[i], starts[i + 1]).
  // A task copies one range of that concatenation.
  std::vector<size_t> starts(pieces.size() + 1, 0);
  for (size_t i = 0; i < pieces.size(); ++i) {
    starts[i + 1] = starts[i] + pieces[i].size;
  }
  ParallelFor(starts.back(), kTaskBytes, [&](size_t begin, size_t end) {
    size_t i = static_cast<size_t>(
        std::upper_bound(starts.begin(), starts.end(), begin) -
        starts.begin() - 1);
    for (; begin < end; ++i) {
      const size_t from = begin - starts[i];
      const size_t n = std::min(end, starts[i + 1]) - begin;
      char* to = static_cast<char*>(pieces[i].dst) + from;
      const char* in = static_cast<const char*>(pieces[i].src) + from;
      if (writes == CopyWrites::kStreaming) {
        StreamingCopy(to, in, n);
      } else {
        std::memcpy(to, in, n);
      }
      begin += n;
    }
  });
}

void ParallelCopy(void* dst, const void* src, size_t n, CopyWrites writes) {
  const CopyPiece piece{dst, src, n};
  ParallelCopy(std::span<const CopyPiece>(&piece, 1), writes);
}

void ParallelGather(std::byte* dst,
                    std::span<const std::span<const std::byte>> pieces,
                    CopyWrites writes) {
  std::vector<CopyPiece> copies;
  copies.reserve(pieces.size());
  size_t at = 0;
  for (std::span<const std::byte> piece : pieces) {
    copies.push_back(CopyPiece{dst + at, piece.data(), piece.size()});
    at += piece.size();
  }
  ParallelCopy(copies, writes);
}

}  // namespace kvq
