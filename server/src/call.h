// What every handler needs from its call, in one place: who the client is (for the fair
// queue), how long it may wait, whether it may change the board (the token), and the request
// id its log lines carry. The request log and the per-call metrics come from a server
// interceptor (CallObserver), so no handler repeats them.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "scheduler.h"

namespace xbar::server {

/// The key the board queue is fair over: the `x-xbar-client` metadata if the client sent one
/// (so several processes behind one Unix socket are told apart), else the peer address (one
/// per connection on TCP).
std::string client_of(const grpc::ServerContext* ctx);

/// Waits of this call end when it is cancelled or its deadline passes.
WaitLimits limits_of(grpc::ServerContext* ctx);

/// The request id of this call: the client's `x-request-id` metadata (up to 64 printable
/// characters), else one the daemon made when the call arrived. Sent back as `x-request-id`
/// initial metadata and on every log line of the call.
std::string request_id(const grpc::ServerContext* ctx);

/// Who may change the board: with a token set, calls that program, scan, deploy, delete or
/// cancel must carry it (`authorization: Bearer TOKEN`); reads never need it. Owned by the
/// daemon, held by reference by the services that change the board.
/// \context Immutable after construction; any gRPC thread.
class ChangeAccess {
 public:
  /// Empty `token`: no token is required.
  explicit ChangeAccess(std::string token = {}) : token_(std::move(token)) {}
  bool token_required() const { return !token_.empty(); }
  /// OK, or UNAUTHENTICATED naming what is missing, for a call that changes the board.
  grpc::Status authorize(const grpc::ServerContext* ctx, const char* method) const;

 private:
  std::string token_;
};

/// Cancels calls that stay silent too long (a stream whose client neither sends nor reads),
/// so that a stalled client cannot hold arrays forever. One thread, polling 10 times per
/// timeout (at least every 100 ms).
class IdleWatch {
 public:
  explicit IdleWatch(std::chrono::milliseconds timeout);
  ~IdleWatch();
  IdleWatch(const IdleWatch&) = delete;
  IdleWatch& operator=(const IdleWatch&) = delete;

  class Entry {
   public:
    Entry() = default;
    Entry(Entry&& o) noexcept : w_(o.w_), id_(o.id_) { o.w_ = nullptr; }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    Entry& operator=(Entry&&) = delete;
    ~Entry();
    void touch();  // activity: a message read or written

   private:
    friend class IdleWatch;
    Entry(IdleWatch* w, uint64_t id) : w_(w), id_(id) {}
    IdleWatch* w_ = nullptr;
    uint64_t id_ = 0;
  };
  /// Watches until the entry is destroyed; `cancel` is called (once, from the watch thread)
  /// when it has been idle for the timeout. `what` names it in the log.
  Entry watch(std::function<void()> cancel, std::string what);
  uint64_t cancelled_count() const { return cancelled_; }

 private:
  struct Item {
    std::function<void()> cancel;
    std::string what;
    std::chrono::steady_clock::time_point last;
    bool fired = false;
  };
  void run();
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Item> items_;
  uint64_t next_ = 1;
  bool stop_ = false;
  std::atomic<uint64_t> cancelled_{0};
  std::thread thread_;
};

/// Called when a call ends: method ("/xbar.v1.BoardService/GetBoardInfo"), status code, and
/// the call's duration in seconds.
using CallDone =
    std::function<void(const std::string& method, grpc::StatusCode code, double seconds)>;

/// The interceptor factory: request ids (in and out), one structured log line per call
/// (`call method=... req=... peer=... code=... ms=...`), and `done` for metrics.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> make_call_observer(
    CallDone done);

}  // namespace xbar::server
