// CallsInFlight: how many data calls (Put and Get streams) the server is
// serving right now, so that a call can tell whether it has the machine to
// itself. The first key of a Get alone is answered in pieces when it is a
// small block, so that its front leaves while the GPU is still copying back
// the rest (AnswerChunkBytes, get_chunk.h); among other calls, the extra
// sends would take CPU the other streams need.
//
// Thread-safe. The count is a snapshot: calls start and end around it.

#ifndef KVQ_SERVER_SERVICE_CALLS_IN_FLIGHT_H_
#define KVQ_SERVER_SERVICE_CALLS_IN_FLIGHT_H_

#include <atomic>
#include <cstdint>

namespace kvq {

class CallsInFlight {
 public:
  // Counts one call for as long as it lives.
  class Scope {
   public:
    explicit Scope(CallsInFlight& calls) : calls_(calls) {
      calls_.count_.fetch_add(1, std::memory_order_relaxed);
    }
    ~Scope() { calls_.count_.fetch_sub(1, std::memory_order_relaxed); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CallsInFlight& calls_;
  };

  // The calls whose Scope is alive, the caller's own included.
  uint32_t now() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint32_t> count_{0};
};

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_CALLS_IN_FLIGHT_H_
