// A small persistent worker pool and ParallelFor for the CPU fast path.
//
// ParallelFor(n, grain, fn) calls fn(begin, end) on disjoint ranges covering
// [0, n), each at most `grain` long, and returns when all have run. The
// calling thread works too, so a call makes progress even when every worker
// is busy with other callers' loops: any number of threads may call it at
// once (the server quantizes many blocks concurrently), and nested calls
// cannot deadlock. Ranges run in no particular order on no particular thread;
// `fn` must not throw.
//
// Workers start on first use and live for the rest of the process.

#ifndef KVQ_KERNELS_PARALLEL_H_
#define KVQ_KERNELS_PARALLEL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace kvq {

class WorkerPool {
 public:
  // Starts `workers` threads (0: every call runs on its caller).
  explicit WorkerPool(int workers);
  ~WorkerPool();  // joins the workers; no call may be in flight
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // The process-wide pool: min(hardware threads, 8) - 1 workers, so that a
  // loop uses every core counting its caller. Never destroyed.
  static WorkerPool& Default();

  // Threads a loop can use: the workers plus the caller.
  int concurrency() const { return static_cast<int>(threads_.size()) + 1; }

  void ParallelFor(size_t n, size_t grain,
                   absl::FunctionRef<void(size_t, size_t)> fn);

 private:
  struct Loop;
  void WorkerMain();
  static void RunChunks(Loop& loop);

  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Loop*> loops_;  // loops with chunks left to claim
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// WorkerPool::Default().ParallelFor(n, grain, fn); runs inline when the loop
// is a single chunk.
void ParallelFor(size_t n, size_t grain,
                 absl::FunctionRef<void(size_t, size_t)> fn);

// One memcpy of a gathered copy.
struct CopyPiece {
  void* dst;
  const void* src;
  size_t size;
};

// How a copy writes its destination. kStreaming bypasses the CPU caches
// (non-temporal stores, where the CPU has them): for a destination the CPU
// will not read again, such as pinned staging that the GPU's DMA reads next
// (which then finds no line dirty in a cache), it neither evicts what the
// caches hold nor reads the destination's lines before writing them.
enum class CopyWrites { kCached, kStreaming };

// Every piece's memcpy, on the default pool in tasks of about 256 KiB (long
// pieces cut, short ones grouped). One core copies at a fraction of what the
// memory system can take (~6 GB/s on the servers kvq was measured on), and
// the server copies every chunk of a block it receives, from the pieces gRPC
// received it in, on the thread that reads the stream. No two ranges may
// overlap.
void ParallelCopy(std::span<const CopyPiece> pieces,
                  CopyWrites writes = CopyWrites::kCached);

// ParallelCopy of the one piece {dst, src, n}.
void ParallelCopy(void* dst, const void* src, size_t n,
                  CopyWrites writes = CopyWrites::kCached);

// ParallelCopy of `pieces`, in order, into consecutive bytes from `dst`: a
// block put together from the pieces it arrived in.
void ParallelGather(std::byte* dst,
                    std::span<const std::span<const std::byte>> pieces,
                    CopyWrites writes = CopyWrites::kCached);

}  // namespace kvq

#endif  // KVQ_KERNELS_PARALLEL_H_
