// StreamContexts: the CUDA backend's stream contexts, each a CUDA stream
// with its buffers (pinned staging, device block buffer, page table, flags)
// and events, lent to one call at a time.
//
// Calls on different gRPC threads borrow different contexts, so their copies
// and kernels overlap, and buffers are reused instead of allocated per
// request: a context's buffers only grow, up to the largest block it has
// carried. At most `max_contexts` exist; Borrow waits while all are lent,
// which bounds pinned memory under any number of RPC threads. Uploads (puts
// taken while they arrive, which hold a context for as long as their block
// takes to arrive) may hold at most half of them, so that gets and whole
// puts always find one.
//
// A context whose call failed may still have work in flight on its stream:
// given back unhealthy, it is drained and destroyed, never reused.
//
// Thread-safe.

#ifndef KVQ_SERVER_BACKEND_CUDA_STREAM_CONTEXTS_H_
#define KVQ_SERVER_BACKEND_CUDA_STREAM_CONTEXTS_H_

#include <cuda_runtime.h>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "server/backend/cuda_memory.h"

namespace kvq {

// One call's stream and buffers.
struct StreamContext {
  cudaStream_t stream = nullptr;
  // start, after H2D, after kernel, after D2H; after a quality sample
  cudaEvent_t marks[5] = {};
  std::vector<cudaEvent_t> pieces;   // after each piece of a D2H in pieces
  std::vector<cudaEvent_t> appends;  // before and after each upload append
  PinnedBuffer staging;     // host side of every copy
  DeviceBuffer block;       // the block in its client dtype, on the device
  DeviceBuffer decoded;     // a sampled put's block decoded back
  DeviceBuffer page_table;  // uint32 page ids
  DeviceBuffer flags;       // what the quantize reports (DeviceFlags)

  ~StreamContext();
};

// Seconds between two recorded events; 0 if CUDA cannot tell.
double ElapsedSeconds(cudaEvent_t from, cudaEvent_t to);

// 2 per hardware thread, at least 8.
size_t DefaultMaxStreamContexts();

class StreamContexts {
 public:
  // Contexts are made on `gpu`.
  StreamContexts(int gpu, size_t max_contexts);
  StreamContexts(const StreamContexts&) = delete;
  StreamContexts& operator=(const StreamContexts&) = delete;

  size_t max_contexts() const { return max_contexts_; }

  // A context from the free list, or a new one while fewer than
  // max_contexts() exist; else waits for one. Also makes the GPU the calling
  // thread's current device (gRPC threads never chose one).
  absl::StatusOr<std::unique_ptr<StreamContext>> Borrow();

  // Borrow for an upload: never waits; UNAVAILABLE once uploads hold half of
  // the contexts, or none is left.
  absl::StatusOr<std::unique_ptr<StreamContext>> BorrowForUpload();

  // Gives back what Borrow (Return) or BorrowForUpload (ReturnFromUpload)
  // lent; `healthy`: its call succeeded, and nothing is left in flight.
  void Return(std::unique_ptr<StreamContext> ctx, bool healthy);
  void ReturnFromUpload(std::unique_ptr<StreamContext> ctx, bool healthy);

  // Destroys the idle contexts (the backend, before it frees the GPU's
  // memory). Lent ones stay lent.
  void DestroyIdle();

 private:
  const int gpu_;
  const size_t max_contexts_;
  std::mutex mu_;
  std::condition_variable returned_;
  size_t live_ = 0;     // contexts that exist, idle or lent
  size_t uploads_ = 0;  // contexts lent to uploads
  std::vector<std::unique_ptr<StreamContext>> idle_;
};

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_CUDA_STREAM_CONTEXTS_H_
