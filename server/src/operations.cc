#include "operations.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <random>

#include "call.h"

namespace xbar::server {

namespace {

thread_local Operation* t_current = nullptr;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string new_operation_id() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lk(mu);
  return fmt::format("op-{:012x}", rng() & 0xffffffffffffULL);
}

grpc::Status not_found(const std::string& id) {
  return {grpc::StatusCode::NOT_FOUND, fmt::format("id = '{}': no such operation", id)};
}

// Both forms of the state: the word (for clients built before state_code) and the enum.
void set_state(v1::Operation& op, v1::OperationState state) {
  op.set_state_code(state);
  switch (state) {
    case v1::OPERATION_STATE_RUNNING:
      op.set_state("running");
      break;
    case v1::OPERATION_STATE_DONE:
      op.set_state("done");
      break;
    case v1::OPERATION_STATE_CANCELLED:
      op.set_state("cancelled");
      break;
    default:
      op.set_state("failed");
      break;
  }
}

}  // namespace

// ---- Operation ----

Operation::Operation(std::string id, std::string method, std::string request_id, bool detached)
    : id_(std::move(id)), detached_(detached) {
  s_.set_id(id_);
  s_.set_method(std::move(method));
  set_state(s_, v1::OPERATION_STATE_RUNNING);
  s_.set_started_at_ms(now_ms());
  s_.set_request_id(std::move(request_id));
  s_.set_detached(detached);
}

void Operation::publish(v1::OperationEvent event) {
  {
    std::lock_guard lk(mu_);
    event.set_operation_id(id_);
    event.set_index(static_cast<uint32_t>(events_.size()));
    events_.push_back(std::move(event));
    s_.set_events(static_cast<uint32_t>(events_.size()));
  }
  cv_.notify_all();
}

void Operation::finish(const grpc::Status& status) {
  {
    std::lock_guard lk(mu_);
    s_.set_code(static_cast<int32_t>(status.error_code()));
    s_.set_message(status.error_message());
    s_.set_finished_at_ms(now_ms());
    if (status.ok()) {
      set_state(s_, v1::OPERATION_STATE_DONE);
    } else if (status.error_code() == grpc::StatusCode::CANCELLED || s_.cancel_requested()) {
      set_state(s_, v1::OPERATION_STATE_CANCELLED);
    } else {
      set_state(s_, v1::OPERATION_STATE_FAILED);
    }
  }
  cv_.notify_all();
}

void Operation::request_cancel() {
  std::lock_guard lk(mu_);
  if (s_.finished_at_ms() == 0) s_.set_cancel_requested(true);
}

bool Operation::cancel_requested() const {
  std::lock_guard lk(mu_);
  return s_.cancel_requested();
}

bool Operation::finished() const {
  std::lock_guard lk(mu_);
  return s_.finished_at_ms() != 0;
}

v1::Operation Operation::summary() const {
  std::lock_guard lk(mu_);
  return s_;
}

std::pair<std::vector<v1::OperationEvent>, bool> Operation::events_since(
    size_t from, std::chrono::milliseconds wait) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, wait, [&] { return events_.size() > from || s_.finished_at_ms() != 0; });
  std::vector<v1::OperationEvent> out;
  for (size_t i = from; i < events_.size(); ++i) out.push_back(events_[i]);
  return {std::move(out), s_.finished_at_ms() != 0};
}

// ---- Operations ----

std::shared_ptr<Operation> Operations::start(const std::string& method,
                                             const std::string& request_id, bool detached) {
  auto op = std::make_shared<Operation>(new_operation_id(), method, request_id, detached);
  std::lock_guard lk(mu_);
  ops_.push_back(op);
  // Forget the oldest finished ones beyond `keep_` (running ones always stay).
  size_t finished = 0;
  for (const auto& o : ops_) finished += o->finished() ? 1 : 0;
  for (auto it = ops_.begin(); it != ops_.end() && finished > keep_;) {
    if ((*it)->finished()) {
      it = ops_.erase(it);
      --finished;
    } else {
      ++it;
    }
  }
  return op;
}

std::shared_ptr<Operation> Operations::find(const std::string& id) const {
  std::lock_guard lk(mu_);
  for (const auto& o : ops_) {
    if (o->id() == id) return o;
  }
  return nullptr;
}

std::vector<v1::Operation> Operations::list(bool running_only) const {
  std::lock_guard lk(mu_);
  std::vector<v1::Operation> out;
  for (auto it = ops_.rbegin(); it != ops_.rend(); ++it) {
    if (running_only && (*it)->finished()) continue;
    out.push_back((*it)->summary());
  }
  return out;
}

size_t Operations::cancel_all() {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const auto& o : ops_) {
    if (o->finished()) continue;
    o->request_cancel();
    ++n;
  }
  return n;
}

Operation* current_operation() { return t_current; }

OperationScope::OperationScope(Operation* op) : prev_(t_current) { t_current = op; }
OperationScope::~OperationScope() { t_current = prev_; }

bool call_stopped(grpc::ServerContext* ctx) {
  const Operation* op = t_current;
  if (op != nullptr) {
    if (op->cancel_requested()) return true;
    if (op->detached()) return false;
  }
  // The deadline itself, not only IsCancelled(): gRPC marks the call cancelled when its deadline
  // alarm runs, which can lag the deadline; a change whose caller has stopped waiting must not
  // send its first pulse in that gap (api_contract_test's 1 ms deadlines did, under load).
  if (ctx->deadline() <= std::chrono::system_clock::now()) return true;
  return ctx->IsCancelled();
}

grpc::Status stopped_before_start(grpc::ServerContext* ctx) {
  if (ctx->deadline() <= std::chrono::system_clock::now()) {
    return {grpc::StatusCode::DEADLINE_EXCEEDED,
            "the call's deadline passed while it waited for the board: nothing was done"};
  }
  if (call_stopped(ctx)) {
    return {grpc::StatusCode::CANCELLED,
            "cancelled while it waited for the board: nothing was done"};
  }
  return grpc::Status::OK;
}

grpc::Status stopped_status(grpc::ServerContext* ctx, const std::string& message) {
  const Operation* op = t_current;
  const bool asked = op != nullptr && op->cancel_requested();
  if (!asked && ctx->deadline() <= std::chrono::system_clock::now()) {
    return {grpc::StatusCode::DEADLINE_EXCEEDED, "the call's deadline passed: " + message};
  }
  return {grpc::StatusCode::CANCELLED, message};
}

// ---- OperationService ----

grpc::Status OperationServiceImpl::ListOperations(grpc::ServerContext*,
                                                  const v1::ListOperationsRequest* req,
                                                  v1::ListOperationsResponse* out) {
  for (v1::Operation& o : ops_.list(req->running_only())) *out->add_operations() = std::move(o);
  return grpc::Status::OK;
}

grpc::Status OperationServiceImpl::GetOperation(grpc::ServerContext*,
                                                const v1::GetOperationRequest* req,
                                                v1::Operation* out) {
  auto op = ops_.find(req->id());
  if (!op) return not_found(req->id());
  *out = op->summary();
  return grpc::Status::OK;
}

grpc::Status OperationServiceImpl::WatchOperation(grpc::ServerContext* ctx,
                                                  const v1::WatchOperationRequest* req,
                                                  grpc::ServerWriter<v1::OperationEvent>* writer) {
  auto op = ops_.find(req->id());
  if (!op) return not_found(req->id());
  size_t next = 0;
  while (!ctx->IsCancelled()) {
    auto [events, done] = op->events_since(next, std::chrono::milliseconds(200));
    for (const v1::OperationEvent& e : events) {
      if (!writer->Write(e)) return {grpc::StatusCode::CANCELLED, "client went away"};
    }
    next += events.size();
    if (done && events.empty()) {
      v1::OperationEvent last;
      last.set_operation_id(op->id());
      last.set_index(static_cast<uint32_t>(next));
      *last.mutable_finished() = op->summary();
      writer->Write(last);
      return grpc::Status::OK;
    }
  }
  return {grpc::StatusCode::CANCELLED, "watch cancelled"};
}

grpc::Status OperationServiceImpl::CancelOperation(grpc::ServerContext* ctx,
                                                   const v1::CancelOperationRequest* req,
                                                   v1::Operation* out) {
  if (auto a = access_.authorize(ctx, "CancelOperation"); !a.ok()) return a;
  auto op = ops_.find(req->id());
  if (!op) return not_found(req->id());
  op->request_cancel();
  spdlog::info("operation {} cancel requested (req={})", op->id(), request_id(ctx));
  *out = op->summary();
  return grpc::Status::OK;
}

}  // namespace xbar::server
