// SerialExecutor: runs tasks one at a time, in the order they were
// submitted, on a thread of its own, with at most `max_waiting` submitted
// tasks not yet started.
//
// The Put handler keeps one per stream: the stream's reader hands each
// received block to it and goes back to reading, so that receiving block
// N + 1 overlaps storing and answering block N (a client pipelines a
// bidirectional Put: kvq::Client::PutMany sends while the results of earlier
// blocks come back). The bound is the back-pressure: Submit waits while
// `max_waiting` tasks wait, so the reader stops reading and gRPC's flow
// control holds the client, and a stream holds no more blocks in memory than
// the bound allows.
//
// The thread starts with the first task (a stream that submits nothing
// costs none) and stops in Drain(). One thread submits and drains (the
// stream's reader); a task must not call either on its own executor. The
// destructor drains.

#ifndef KVQ_SERVER_SERVICE_SERIAL_EXECUTOR_H_
#define KVQ_SERVER_SERVICE_SERIAL_EXECUTOR_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/functional/any_invocable.h"

namespace kvq {

class SerialExecutor {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  // max_waiting >= 1: tasks submitted but not started before Submit waits.
  explicit SerialExecutor(size_t max_waiting);
  ~SerialExecutor();  // Drain()
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  // Queues `task` after every task submitted before it; waits first while
  // max_waiting tasks are queued and not started.
  void Submit(Task task);

  // Returns once every submitted task has run, and the thread has ended.
  // The executor takes new tasks afterwards (and starts a new thread).
  void Drain();

 private:
  void RunTasks();

  const size_t max_waiting_;
  std::mutex mu_;
  std::condition_variable changed_;  // a task was queued, started or ended
  std::deque<Task> waiting_;         // guarded by mu_
  bool draining_ = false;            // guarded by mu_
  std::thread thread_;               // joinable while tasks may come
};

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_SERIAL_EXECUTOR_H_
