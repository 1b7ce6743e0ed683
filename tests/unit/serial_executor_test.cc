// SerialExecutor: tasks run one at a time in submission order on a thread
// other than the submitter's, the submitter waits only when max_waiting
// tasks are queued, and Drain returns once everything submitted has run.

#include "server/service/serial_executor.h"

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kvq {
namespace {

using std::chrono::milliseconds;

TEST(SerialExecutorTest, RunsTasksOneAtATimeInSubmissionOrder) {
  std::mt19937 rng(std::random_device{}());
  std::vector<int> order;
  std::atomic<int> running{0};
  std::atomic<bool> overlapped{false};
  SerialExecutor executor(/*max_waiting=*/3);
  constexpr int kTasks = 200;
  for (int i = 0; i < kTasks; ++i) {
    const int spin = static_cast<int>(rng() % 50);
    executor.Submit([&, i, spin] {
      if (running.fetch_add(1) != 0) overlapped = true;
      std::this_thread::sleep_for(std::chrono::microseconds(spin));
      order.push_back(i);  // only ever one task: no lock needed
      running.fetch_sub(1);
    });
  }
  executor.Drain();
  ASSERT_EQ(order.size(), static_cast<size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i) EXPECT_EQ(order[i], i);
  EXPECT_FALSE(overlapped);
}

TEST(SerialExecutorTest, TasksRunOnTheirOwnThreadWhileTheSubmitterGoesOn) {
  std::promise<std::thread::id> ran_on;
  std::latch release(1);
  SerialExecutor executor(/*max_waiting=*/1);
  executor.Submit([&] {
    ran_on.set_value(std::this_thread::get_id());
    release.wait();  // still running when Submit has long returned
  });
  // Submit returned while the task is blocked: the submitter goes on.
  EXPECT_NE(ran_on.get_future().get(), std::this_thread::get_id());
  release.count_down();
  executor.Drain();
}

TEST(SerialExecutorTest, SubmitWaitsWhileMaxWaitingTasksAreQueued) {
  std::latch first_started(1), release(1);
  SerialExecutor executor(/*max_waiting=*/1);
  executor.Submit([&] {
    first_started.count_down();
    release.wait();
  });
  first_started.wait();
  executor.Submit([] {});  // queued behind the running task: room for one
  // A third task has no room until the first ends and the second starts.
  std::atomic<bool> third_submitted{false};
  std::thread submitter([&] {
    executor.Submit([] {});
    third_submitted = true;
  });
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(third_submitted) << "Submit did not wait for room";
  release.count_down();
  submitter.join();
  EXPECT_TRUE(third_submitted);
  executor.Drain();
}

TEST(SerialExecutorTest, DrainWaitsForEveryTaskAndTheExecutorCanBeReused) {
  std::atomic<int> done{0};
  SerialExecutor executor(/*max_waiting=*/2);
  for (int round = 1; round <= 3; ++round) {
    for (int i = 0; i < 10; ++i) {
      executor.Submit([&] {
        std::this_thread::sleep_for(milliseconds(1));
        ++done;
      });
    }
    executor.Drain();
    EXPECT_EQ(done.load(), 10 * round);
  }
  executor.Drain();  // nothing submitted since: returns at once
}

TEST(SerialExecutorTest, DestructorRunsWhatWasSubmitted) {
  std::atomic<int> done{0};
  {
    SerialExecutor executor(/*max_waiting=*/4);
    for (int i = 0; i < 8; ++i) {
      executor.Submit([&] {
        std::this_thread::sleep_for(milliseconds(1));
        ++done;
      });
    }
  }
  EXPECT_EQ(done.load(), 8);
}

TEST(SerialExecutorTest, MoveOnlyTasksAreAccepted) {
  auto value = std::make_unique<int>(41);
  int seen = 0;
  SerialExecutor executor(/*max_waiting=*/1);
  executor.Submit([&seen, v = std::move(value)]() mutable { seen = *v + 1; });
  executor.Drain();
  EXPECT_EQ(seen, 42);
}

}  // namespace
}  // namespace kvq
