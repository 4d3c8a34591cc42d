#include "scheduler.h"

#include <fmt/format.h>

#include <algorithm>

namespace xbar::server {

namespace {

// Waits are woken by releases; a cancelled or timed-out caller is noticed within this.
constexpr auto kPoll = std::chrono::milliseconds(20);

Result<void> check_limits(const WaitLimits& limits, const char* what) {
  if (limits.cancelled && limits.cancelled()) {
    return make_error(ErrorCode::kCancelled, fmt::format("{}: the call was cancelled", what));
  }
  if (std::chrono::steady_clock::now() >= limits.deadline) {
    return make_error(ErrorCode::kTimeout,
                      fmt::format("{}: the call's deadline passed while waiting", what));
  }
  return {};
}

std::string list(const std::vector<int>& arrays) {
  std::string s;
  for (int a : arrays) s += fmt::format("{}{}", s.empty() ? "" : ",", a);
  return s;
}

}  // namespace

// ---- BoardQueue ----

BoardQueue::Turn& BoardQueue::Turn::operator=(Turn&& o) noexcept {
  if (this != &o) {
    release();
    q_ = o.q_;
    o.q_ = nullptr;
  }
  return *this;
}

void BoardQueue::Turn::release() {
  if (q_ != nullptr) {
    q_->release_turn();
    q_ = nullptr;
  }
}

Result<BoardQueue::Turn> BoardQueue::acquire(const std::string& client, const WaitLimits& limits) {
  std::unique_lock lk(mu_);
  if (!held_ && n_waiting_ == 0) {  // the fast path: nobody is waiting
    held_ = true;
    ++turns_;
    held_since_ = std::chrono::steady_clock::now();
    return Turn(this);
  }
  if (n_waiting_ >= max_waiting) {
    return make_error(
        ErrorCode::kBusy,
        fmt::format("board queue: {} requests already wait (the limit); retry later", n_waiting_));
  }
  const uint64_t ticket = next_ticket_++;
  auto& mine = waiting_[client];
  if (mine.empty()) round_.push_back(client);
  mine.push_back(ticket);
  ++n_waiting_;
  std::condition_variable cv;
  waiter_cv_[ticket] = &cv;
  if (observer_) observer_(n_waiting_);
  if (!held_) grant_next_locked();
  while (granted_ != ticket) {
    if (auto c = check_limits(limits, "waiting for the board"); !c) {
      remove_waiter_locked(client, ticket);
      waiter_cv_.erase(ticket);
      return std::unexpected(c.error());
    }
    cv.wait_for(lk, kPoll);
  }
  waiter_cv_.erase(ticket);
  ++turns_;
  held_since_ = std::chrono::steady_clock::now();
  return Turn(this);
}

void BoardQueue::grant_next_locked() {
  // Round-robin over clients: the front client gets its oldest request served and goes to the
  // back of the round if it has more.
  if (round_.empty()) {
    held_ = false;
    return;
  }
  std::string client = std::move(round_.front());
  round_.pop_front();
  auto it = waiting_.find(client);
  const uint64_t ticket = it->second.front();
  it->second.pop_front();
  if (it->second.empty()) {
    waiting_.erase(it);
  } else {
    round_.push_back(std::move(client));
  }
  --n_waiting_;
  if (observer_) observer_(n_waiting_);
  held_ = true;
  granted_ = ticket;
  if (auto w = waiter_cv_.find(ticket); w != waiter_cv_.end()) w->second->notify_one();
}

void BoardQueue::remove_waiter_locked(const std::string& client, uint64_t ticket) {
  auto it = waiting_.find(client);
  if (it == waiting_.end()) return;
  auto& q = it->second;
  q.erase(std::remove(q.begin(), q.end(), ticket), q.end());
  --n_waiting_;
  if (observer_) observer_(n_waiting_);
  if (q.empty()) {
    waiting_.erase(it);
    round_.erase(std::remove(round_.begin(), round_.end(), client), round_.end());
  }
}

void BoardQueue::release_turn() {
  std::lock_guard lk(mu_);
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - held_since_).count();
  busy_s_ += s;
  if (busy_observer_) busy_observer_(s);
  grant_next_locked();
}

size_t BoardQueue::waiting() const {
  std::lock_guard lk(mu_);
  return n_waiting_;
}

uint64_t BoardQueue::turns() const {
  std::lock_guard lk(mu_);
  return turns_;
}

double BoardQueue::busy_seconds() const {
  std::lock_guard lk(mu_);
  return busy_s_;
}

// ---- ArrayLocks ----

ArrayLocks::Hold& ArrayLocks::Hold::operator=(Hold&& o) noexcept {
  if (this != &o) {
    release();
    l_ = o.l_;
    arrays_ = std::move(o.arrays_);
    exclusive_ = o.exclusive_;
    o.l_ = nullptr;
  }
  return *this;
}

void ArrayLocks::Hold::release() {
  if (l_ != nullptr) {
    l_->release(arrays_, exclusive_);
    l_ = nullptr;
  }
}

Result<void> ArrayLocks::wait_locked(std::unique_lock<std::mutex>& lk, const WaitLimits& limits,
                                     const std::function<bool()>& ready) {
  while (!ready()) {
    if (auto c = check_limits(limits, "waiting for the arrays"); !c) return c;
    cv_.wait_for(lk, kPoll);
  }
  return {};
}

Result<ArrayLocks::Hold> ArrayLocks::shared(std::vector<int> arrays, const WaitLimits& limits) {
  std::unique_lock lk(mu_);
  for (int a : arrays) {
    if (a < 0 || static_cast<size_t>(a) >= a_.size()) {
      return make_error(ErrorCode::kInternal, fmt::format("array {} out of range", a));
    }
  }
  auto ready = [&] {
    return std::none_of(arrays.begin(), arrays.end(), [&](int a) {
      const State& s = a_[static_cast<size_t>(a)];
      return s.writer || s.writers_waiting > 0;
    });
  };
  if (auto w = wait_locked(lk, limits, ready); !w) return std::unexpected(w.error());
  for (int a : arrays) ++a_[static_cast<size_t>(a)].readers;
  return Hold(this, std::move(arrays), false);
}

Result<ArrayLocks::Hold> ArrayLocks::exclusive(std::vector<int> arrays, const WaitLimits& limits,
                                               bool refuse_if_busy) {
  std::unique_lock lk(mu_);
  for (int a : arrays) {
    if (a < 0 || static_cast<size_t>(a) >= a_.size()) {
      return make_error(ErrorCode::kInternal, fmt::format("array {} out of range", a));
    }
  }
  auto ready = [&] {
    return std::none_of(arrays.begin(), arrays.end(), [&](int a) {
      const State& s = a_[static_cast<size_t>(a)];
      return s.writer || s.readers > 0;
    });
  };
  if (refuse_if_busy && !ready()) {
    int readers = 0;  // the streams on these arrays: each holds all of its deployment's
    for (int a : arrays) readers = std::max(readers, a_[static_cast<size_t>(a)].readers);
    return make_error(
        ErrorCode::kBusy,
        fmt::format("arrays {}: in use (by {} inference stream(s), or another change); the daemon "
                    "refuses instead of waiting (busy_policy: refuse)",
                    list(arrays), readers));
  }
  for (int a : arrays) ++a_[static_cast<size_t>(a)].writers_waiting;
  auto w = wait_locked(lk, limits, ready);
  for (int a : arrays) --a_[static_cast<size_t>(a)].writers_waiting;
  if (!w) {
    cv_.notify_all();  // shared waiters held back by this one may go
    return std::unexpected(w.error());
  }
  for (int a : arrays) a_[static_cast<size_t>(a)].writer = true;
  return Hold(this, std::move(arrays), true);
}

void ArrayLocks::release(const std::vector<int>& arrays, bool exclusive) {
  {
    std::lock_guard lk(mu_);
    for (int a : arrays) {
      State& s = a_[static_cast<size_t>(a)];
      if (exclusive) {
        s.writer = false;
      } else {
        --s.readers;
      }
    }
  }
  cv_.notify_all();
}

int ArrayLocks::readers(int array) const {
  std::lock_guard lk(mu_);
  if (array < 0 || static_cast<size_t>(array) >= a_.size()) return 0;
  return a_[static_cast<size_t>(array)].readers;
}

}  // namespace xbar::server
