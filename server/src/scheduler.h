// Sharing one board among many clients (docs/architecture.md, "Sharing the board").
//
// Two kinds of hold, always taken in this order, never the other way round:
//   1. ArrayLocks: which arrays a request uses for its whole duration. Inference holds its
//      deployment's arrays shared (many streams at once); programming, scans, deploys and
//      deletes hold theirs exclusive. A waiting exclusive request stops new shared holds on
//      its arrays (writer preference), so a deploy is never starved by a flow of streams; a
//      deploy therefore never lands between two chunks of a stream on the same arrays.
//   2. BoardQueue: a turn on the board itself, for one exchange sequence (a read, one chunk of
//      a stream, one Infer, a whole program-verify). Waiting clients are served round-robin
//      (a client's own requests in arrival order), so one busy client cannot starve the rest.
// Both waits give up when the call is cancelled or its deadline passes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "operations.h"
#include "xbar/base/error.h"

namespace xbar::server {

/// How a wait should end early: `cancelled()` polled every few ms (e.g. a gRPC call's
/// IsCancelled), and an absolute deadline.
struct WaitLimits {
  std::function<bool()> cancelled;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

/// Turns on the one board. Owned by the Scheduler; a Turn must not outlive its queue.
/// \context acquire() from any thread; it blocks (polling `cancelled` every few ms) until the
/// turn, the deadline or a cancellation. A Turn is released on the thread that holds it.
class BoardQueue {
 public:
  /// Called with the number of waiting requests whenever it changes (e.g. a metrics gauge),
  /// and with the length of every turn when it ends; both under the queue's lock, so quick.
  using DepthObserver = std::function<void(size_t)>;
  using BusyObserver = std::function<void(double seconds)>;
  explicit BoardQueue(DepthObserver observer = {}, BusyObserver busy = {})
      : observer_(std::move(observer)), busy_observer_(std::move(busy)) {}

  /// The board, until destroyed (or release()).
  class Turn {
   public:
    Turn() = default;
    Turn(Turn&& o) noexcept : q_(o.q_) { o.q_ = nullptr; }
    Turn& operator=(Turn&& o) noexcept;
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;
    ~Turn() { release(); }
    void release();
    explicit operator bool() const { return q_ != nullptr; }

   private:
    friend class BoardQueue;
    explicit Turn(BoardQueue* q) : q_(q) {}
    BoardQueue* q_ = nullptr;
  };

  /// Waits for a turn. `client` groups requests for fairness (e.g. the caller's connection).
  /// Errors: kCancelled (the call was cancelled), kTimeout (its deadline passed), kBusy (more
  /// than max_waiting requests already wait).
  Result<Turn> acquire(const std::string& client, const WaitLimits& limits);

  size_t waiting() const;
  /// Total turns granted and the time the board was held, for metrics and benchmarks.
  uint64_t turns() const;
  double busy_seconds() const;

  size_t max_waiting = 1024;

 private:
  void release_turn();
  void grant_next_locked();
  void remove_waiter_locked(const std::string& client, uint64_t ticket);

  mutable std::mutex mu_;
  // One condition variable per waiter: a grant wakes exactly the thread it is for (with 30
  // waiters, a shared one woke all 30 per grant; measured with perf, 38 % of xbard's time in
  // futex waits and wakes under load_bench).
  std::map<uint64_t, std::condition_variable*> waiter_cv_;
  bool held_ = false;
  uint64_t granted_ = 0;  // the ticket that holds (or was last given) the board
  uint64_t next_ticket_ = 1;
  std::map<std::string, std::deque<uint64_t>> waiting_;  // per client, arrival order
  std::deque<std::string> round_;                        // clients with waiters, serving order
  size_t n_waiting_ = 0;
  uint64_t turns_ = 0;
  std::chrono::steady_clock::time_point held_since_;
  double busy_s_ = 0;
  DepthObserver observer_;
  BusyObserver busy_observer_;
};

/// Shared and exclusive holds on arrays. Owned by the Scheduler; a Hold must not outlive it.
/// \context shared() and exclusive() from any thread, blocking like BoardQueue::acquire;
/// always taken before a board turn, never while one is held (the order above).
class ArrayLocks {
 public:
  explicit ArrayLocks(int arrays) : a_(static_cast<size_t>(arrays)) {}

  /// The arrays, until destroyed.
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& o) noexcept : l_(o.l_), arrays_(std::move(o.arrays_)), exclusive_(o.exclusive_) {
      o.l_ = nullptr;
    }
    Hold& operator=(Hold&& o) noexcept;
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { release(); }
    void release();

   private:
    friend class ArrayLocks;
    Hold(ArrayLocks* l, std::vector<int> arrays, bool exclusive)
        : l_(l), arrays_(std::move(arrays)), exclusive_(exclusive) {}
    ArrayLocks* l_ = nullptr;
    std::vector<int> arrays_;
    bool exclusive_ = false;
  };

  /// For inference: waits while an exclusive hold is held or waiting on any of `arrays`.
  Result<Hold> shared(std::vector<int> arrays, const WaitLimits& limits);
  /// For changes: waits until no other hold is on `arrays`. With `refuse_if_busy`, answers
  /// kBusy at once (naming the holders) instead of waiting.
  Result<Hold> exclusive(std::vector<int> arrays, const WaitLimits& limits,
                         bool refuse_if_busy = false);

  /// Shared holds now on `array` (e.g. streams running there).
  int readers(int array) const;

 private:
  struct State {
    int readers = 0;
    bool writer = false;
    int writers_waiting = 0;
  };
  void release(const std::vector<int>& arrays, bool exclusive);
  Result<void> wait_locked(std::unique_lock<std::mutex>& lk, const WaitLimits& limits,
                           const std::function<bool()>& ready);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<State> a_;
};

/// The daemon's one scheduler, shared by every service, with the operations it runs.
struct Scheduler {
  explicit Scheduler(int arrays, BoardQueue::DepthObserver depth = {},
                     BoardQueue::BusyObserver busy = {})
      : board(std::move(depth), std::move(busy)), arrays(arrays) {}
  BoardQueue board;
  ArrayLocks arrays;
  Operations operations;  // the long operations, for OperationService
  /// busy_policy: refuse. A change (program, scan, deploy, delete) on arrays in use answers
  /// RESOURCE_EXHAUSTED at once instead of waiting for the inference there to finish.
  bool refuse_busy_changes = false;
};

}  // namespace xbar::server
