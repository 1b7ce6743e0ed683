// SecondsSince: the service's one stopwatch, for the stage and RPC latency
// metrics (steady clock, so a clock step never shows up as a latency).

#ifndef KVQ_SERVER_SERVICE_SECONDS_SINCE_H_
#define KVQ_SERVER_SERVICE_SECONDS_SINCE_H_

#include <chrono>

namespace kvq {

// Seconds from `start` to now.
inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_SECONDS_SINCE_H_
