// Long operations (ProgramArray, ScanFaults, DeployKernel, DeployModel) as resources with ids:
// their progress is kept so that a client can re-attach (WatchOperation), list or cancel them
// (proto/xbar/v1/operations.proto). In memory; the last `keep` finished ones are kept.
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "xbar/v1/operations.grpc.pb.h"

namespace xbar::server {

class ChangeAccess;  // call.h

/// One long operation's progress and outcome. Shared (std::shared_ptr) by the thread that runs
/// it, its watchers and Operations' list, so it outlives whichever goes first.
/// \context every method from any thread (one mutex); events_since blocks up to `wait`.
class Operation {
 public:
  Operation(std::string id, std::string method, std::string request_id, bool detached);

  const std::string& id() const { return id_; }
  bool detached() const { return detached_; }
  /// Records one progress message (its `kind` set; id and index are filled in here).
  void publish(v1::OperationEvent event);
  void finish(const grpc::Status& status);
  void request_cancel();
  bool cancel_requested() const;
  bool finished() const;
  v1::Operation summary() const;
  /// Events from `from` on (copied), and whether the operation has finished; waits up to
  /// `wait` for something new when there is nothing yet.
  std::pair<std::vector<v1::OperationEvent>, bool> events_since(size_t from,
                                                                std::chrono::milliseconds wait);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  const std::string id_;
  const bool detached_;
  v1::Operation s_;
  std::vector<v1::OperationEvent> events_;
};

/// The daemon's operations, newest last; the last `keep` finished ones are kept.
/// \context every method from any thread. Its mutex may be held while an Operation's is
/// taken (list, cancel_all), never the reverse.
class Operations {
 public:
  explicit Operations(size_t keep = 200) : keep_(keep) {}
  std::shared_ptr<Operation> start(const std::string& method, const std::string& request_id,
                                   bool detached);
  std::shared_ptr<Operation> find(const std::string& id) const;
  /// Newest first.
  std::vector<v1::Operation> list(bool running_only) const;
  /// Asks every running operation to stop, detached ones included (xbard's shutdown): each
  /// stops where a cancellation would (after the current program-verify round) and is recorded
  /// as cancelled. Returns how many were asked.
  size_t cancel_all();

 private:
  mutable std::mutex mu_;
  size_t keep_;
  std::deque<std::shared_ptr<Operation>> ops_;  // oldest first
};

/// The operation the calling thread is running (set by OperationScope), or null.
Operation* current_operation();

/// Whether the work of this call should stop: its operation was cancelled, or (unless the
/// operation is detached) the call was cancelled, its deadline passed or its client went away.
bool call_stopped(grpc::ServerContext* ctx);

/// For a change, after its waits (array locks, the board) and before its first side effect:
/// DEADLINE_EXCEEDED if the call's deadline has passed meanwhile (a detached operation too: its
/// caller gave it no more time), CANCELLED if call_stopped; OK to go on. A change refused here
/// did nothing.
grpc::Status stopped_before_start(grpc::ServerContext* ctx);

/// The status of a change that call_stopped ended midway: DEADLINE_EXCEEDED if that was the
/// call's deadline (and not a cancel request), else CANCELLED; `message` says what was done.
grpc::Status stopped_status(grpc::ServerContext* ctx, const std::string& message);

/// Makes `op` the calling thread's current operation until destroyed.
class OperationScope {
 public:
  explicit OperationScope(Operation* op);
  ~OperationScope();
  OperationScope(const OperationScope&) = delete;
  OperationScope& operator=(const OperationScope&) = delete;

 private:
  Operation* prev_;
};

/// A writer that records every message as an event of `op` and forwards it to the call (a
/// detached operation goes on when the client is gone).
template <typename Msg>
class OperationWriter final : public grpc::ServerWriterInterface<Msg> {
 public:
  OperationWriter(grpc::ServerWriterInterface<Msg>* call, Operation& op,
                  std::function<void(v1::OperationEvent&, const Msg&)> wrap)
      : call_(call), op_(op), wrap_(std::move(wrap)) {}
  void SendInitialMetadata() override { call_->SendInitialMetadata(); }
  using grpc::internal::WriterInterface<Msg>::Write;
  bool Write(const Msg& msg, grpc::WriteOptions options) override {
    v1::OperationEvent e;
    wrap_(e, msg);
    op_.publish(std::move(e));
    if (!client_gone_ && !call_->Write(msg, options)) client_gone_ = true;
    return op_.detached() || !client_gone_;
  }

 private:
  grpc::ServerWriterInterface<Msg>* call_;
  Operation& op_;
  std::function<void(v1::OperationEvent&, const Msg&)> wrap_;
  bool client_gone_ = false;
};

/// Runs `body(writer)` as an operation of `ops`: registers it, announces its id (initial
/// metadata x-operation-id), records the messages and the final status.
template <typename Msg, typename Body>
grpc::Status run_operation(Operations& ops, grpc::ServerContext* ctx,
                           grpc::ServerWriterInterface<Msg>* writer, const std::string& method,
                           const std::string& request_id,
                           std::function<void(v1::OperationEvent&, const Msg&)> wrap, Body&& body) {
  bool detached = false;
  const auto& md = ctx->client_metadata();
  if (auto it = md.find("x-xbar-detach"); it != md.end()) {
    const std::string v(it->second.data(), it->second.size());
    detached = v == "1" || v == "true";
  }
  auto op = ops.start(method, request_id, detached);
  ctx->AddInitialMetadata("x-operation-id", op->id());
  OperationScope scope(op.get());
  OperationWriter<Msg> w(writer, *op, std::move(wrap));
  grpc::Status st = body(&w);
  op->finish(st);
  return st;
}

/// xbar.v1.OperationService over `ops`.
class OperationServiceImpl final : public v1::OperationService::Service {
 public:
  /// Both borrowed; they must outlive the service.
  OperationServiceImpl(Operations& ops, const ChangeAccess& access) : ops_(ops), access_(access) {}
  grpc::Status ListOperations(grpc::ServerContext* ctx, const v1::ListOperationsRequest* req,
                              v1::ListOperationsResponse* out) override;
  grpc::Status GetOperation(grpc::ServerContext* ctx, const v1::GetOperationRequest* req,
                            v1::Operation* out) override;
  grpc::Status WatchOperation(grpc::ServerContext* ctx, const v1::WatchOperationRequest* req,
                              grpc::ServerWriter<v1::OperationEvent>* writer) override;
  grpc::Status CancelOperation(grpc::ServerContext* ctx, const v1::CancelOperationRequest* req,
                               v1::Operation* out) override;

 private:
  Operations& ops_;
  const ChangeAccess& access_;
};

}  // namespace xbar::server
