// The board queue and the array locks (server/src/scheduler.h): fairness, writer preference,
// cancellation, deadlines and the refuse policy. Orders are forced by waiting until the queue
// shows the expected number of waiters, never by sleeping a guessed time.
#include "scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace xbar::server {
namespace {

void wait_until(const std::function<bool()>& p) {
  while (!p()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

WaitLimits forever() { return {}; }

WaitLimits within(std::chrono::milliseconds ms) {
  WaitLimits l;
  l.deadline = std::chrono::steady_clock::now() + ms;
  return l;
}

TEST(BoardQueue, ClientsAreServedRoundRobinEachInArrivalOrder) {
  BoardQueue q;
  auto holder = q.acquire("holder", forever());
  ASSERT_TRUE(holder.has_value());
  // Client A queues 6 requests, then B 2 and C 1: served A B C A B A A A A, not A A A A A A ...
  std::mutex mu;
  std::vector<std::string> order;
  std::vector<std::thread> threads;
  auto enqueue = [&](const std::string& client, int n) {
    for (int i = 0; i < n; ++i) {
      const size_t before = q.waiting();
      threads.emplace_back([&, client, i] {
        auto t = q.acquire(client, forever());
        ASSERT_TRUE(t.has_value());
        std::lock_guard lk(mu);
        order.push_back(client + std::to_string(i));
      });
      wait_until([&] { return q.waiting() == before + 1; });
    }
  };
  enqueue("A", 6);
  enqueue("B", 2);
  enqueue("C", 1);
  EXPECT_EQ(q.waiting(), 9u);
  holder->release();
  for (auto& t : threads) t.join();
  const std::vector<std::string> want = {"A0", "B0", "C0", "A1", "B1", "A2", "A3", "A4", "A5"};
  EXPECT_EQ(order, want);
  EXPECT_EQ(q.waiting(), 0u);
  EXPECT_EQ(q.turns(), 10u);
}

TEST(BoardQueue, CancelledAndExpiredWaitersLeaveTheQueue) {
  size_t depth_seen = 0;
  BoardQueue q([&](size_t d) { depth_seen = std::max(depth_seen, d); });
  auto holder = q.acquire("h", forever());
  ASSERT_TRUE(holder.has_value());
  auto late = q.acquire("x", within(std::chrono::milliseconds(30)));
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, ErrorCode::kTimeout);
  std::atomic<bool> cancel{false};
  WaitLimits l;
  l.cancelled = [&] { return cancel.load(); };
  std::thread t([&] {
    auto r = q.acquire("y", l);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::kCancelled);
  });
  wait_until([&] { return q.waiting() == 1; });
  cancel = true;
  t.join();
  EXPECT_EQ(q.waiting(), 0u);
  EXPECT_EQ(depth_seen, 1u);
  // The holder's release leaves the board free: the next acquire is immediate.
  holder->release();
  auto next = q.acquire("z", within(std::chrono::milliseconds(0)));
  EXPECT_TRUE(next.has_value());
}

TEST(BoardQueue, AFullQueueRefusesWithABusyError) {
  BoardQueue q;
  q.max_waiting = 1;
  auto holder = q.acquire("h", forever());
  std::thread t([&] { EXPECT_TRUE(q.acquire("a", forever()).has_value()); });
  wait_until([&] { return q.waiting() == 1; });
  auto r = q.acquire("b", forever());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kBusy);
  EXPECT_NE(r.error().message.find("1 requests already wait"), std::string::npos);
  holder->release();
  t.join();
}

TEST(ArrayLocks, SharedHoldsCoexistAndAWaitingChangeHoldsBackNewOnes) {
  ArrayLocks l(3);
  auto s1 = l.shared({0, 1, 2}, forever());
  auto s2 = l.shared({0, 1, 2}, forever());
  ASSERT_TRUE(s1.has_value() && s2.has_value());
  EXPECT_EQ(l.readers(1), 2);
  // A change on array 1 waits for both streams.
  std::atomic<bool> changed{false};
  std::thread writer([&] {
    auto x = l.exclusive({1}, forever());
    ASSERT_TRUE(x.has_value());
    changed = true;
  });
  // Until it has it, a new stream on array 1 waits behind it (writer preference): with a
  // short deadline it times out. Array 0 alone is not waited on, so a stream there gets in.
  wait_until([&] {
    auto probe = l.shared({1}, within(std::chrono::milliseconds(0)));
    return !probe.has_value();
  });
  auto blocked = l.shared({1}, within(std::chrono::milliseconds(30)));
  ASSERT_FALSE(blocked.has_value());
  EXPECT_EQ(blocked.error().code, ErrorCode::kTimeout);
  EXPECT_TRUE(l.shared({0}, within(std::chrono::milliseconds(0))).has_value());
  EXPECT_FALSE(changed.load());
  s1->release();
  EXPECT_FALSE(changed.load());
  s2->release();
  writer.join();
  EXPECT_TRUE(changed.load());
  EXPECT_EQ(l.readers(1), 0);
}

TEST(ArrayLocks, RefusePolicyAnswersBusyAtOnceAndNamesTheArrays) {
  ArrayLocks l(3);
  auto s = l.shared({2}, forever());
  ASSERT_TRUE(s.has_value());
  auto x = l.exclusive({1, 2}, forever(), /*refuse_if_busy=*/true);
  ASSERT_FALSE(x.has_value());
  EXPECT_EQ(x.error().code, ErrorCode::kBusy);
  EXPECT_NE(x.error().message.find("arrays 1,2: in use (by 1 inference stream(s)"),
            std::string::npos)
      << x.error().message;
  // Nothing was left behind: another stream still gets in, and after the release the change.
  EXPECT_TRUE(l.shared({1}, within(std::chrono::milliseconds(0))).has_value());
  s->release();
  EXPECT_TRUE(l.exclusive({1, 2}, forever(), true).has_value());
}

}  // namespace
}  // namespace xbar::server
