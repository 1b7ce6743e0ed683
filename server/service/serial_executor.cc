#include "server/service/serial_executor.h"

#include <algorithm>
#include <utility>

namespace kvq {

SerialExecutor::SerialExecutor(size_t max_waiting)
    : max_waiting_(std::max<size_t>(1, max_waiting)) {}

SerialExecutor::~SerialExecutor() { Drain(); }

void SerialExecutor::Submit(Task task) {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [&] { return waiting_.size() < max_waiting_; });
  waiting_.push_back(std::move(task));
  if (!thread_.joinable()) {
    draining_ = false;
    thread_ = std::thread([this] { RunTasks(); });
  }
  changed_.notify_all();
}

void SerialExecutor::Drain() {
  std::thread finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    draining_ = true;
    finished = std::move(thread_);
  }
  changed_.notify_all();
  finished.join();  // RunTasks returns only with nothing left to run
}

void SerialExecutor::RunTasks() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return !waiting_.empty() || draining_; });
    if (waiting_.empty()) return;  // draining, and every task has run
    Task task = std::move(waiting_.front());
    waiting_.pop_front();
    changed_.notify_all();  // room for a waiting Submit
    lock.unlock();
    std::move(task)();
    lock.lock();
  }
}

}  // namespace kvq
