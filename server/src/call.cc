#include "call.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <mutex>
#include <random>
#include <unordered_map>

#include "operations.h"

namespace xbar::server {

namespace {

std::mutex g_ids_mu;
std::unordered_map<const grpc::ServerContextBase*, std::string> g_ids;  // calls in flight

std::string find_metadata(const grpc::ServerContext* ctx, const char* key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return {};
  return {it->second.data(), it->second.size()};
}

bool printable_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

std::string new_request_id() {
  static const uint64_t prefix = [] {
    std::random_device rd;
    return (uint64_t{rd()} << 32 | rd()) & 0xffffffffu;
  }();
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{:08x}{:08x}", prefix, counter.fetch_add(1) & 0xffffffffu);
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  if (b.empty()) return a.empty();
  unsigned diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i % b.size()]);
  }
  return diff == 0;
}

class CallObserver final : public grpc::experimental::Interceptor {
 public:
  CallObserver(grpc::experimental::ServerRpcInfo* info, const CallDone* done)
      : info_(info), done_(done), t0_(std::chrono::steady_clock::now()) {}

  ~CallObserver() override {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const grpc::StatusCode code = saw_status_ ? code_ : grpc::StatusCode::CANCELLED;
    const char* method = info_->method() != nullptr ? info_->method() : "?";
    if (code == grpc::StatusCode::OK) {
      spdlog::debug("call method={} req={} peer={} code=OK ms={:.1f}", method, id_, peer_, s * 1e3);
    } else {
      spdlog::info("call method={} req={} peer={} code={} ms={:.1f} error=\"{}\"", method, id_,
                   peer_, static_cast<int>(code), s * 1e3, message_);
    }
    if (*done_) (*done_)(method, code, s);
    std::lock_guard lk(g_ids_mu);
    g_ids.erase(info_->server_context());
  }
  CallObserver(const CallObserver&) = delete;
  CallObserver& operator=(const CallObserver&) = delete;

  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    using H = grpc::experimental::InterceptionHookPoints;
    if (m->QueryInterceptionHookPoint(H::POST_RECV_INITIAL_METADATA)) {
      const auto* md = m->GetRecvInitialMetadata();
      if (md != nullptr) {
        auto it = md->find("x-request-id");
        if (it != md->end()) {
          std::string v(it->second.data(), it->second.size());
          if (printable_id(v)) id_ = std::move(v);
        }
      }
      if (id_.empty()) id_ = new_request_id();
      if (info_->server_context() != nullptr) peer_ = info_->server_context()->peer();
      std::lock_guard lk(g_ids_mu);
      g_ids[info_->server_context()] = id_;
    }
    if (m->QueryInterceptionHookPoint(H::PRE_SEND_INITIAL_METADATA)) {
      auto* out = m->GetSendInitialMetadata();
      if (out != nullptr && !id_.empty()) out->emplace("x-request-id", id_);
    }
    if (m->QueryInterceptionHookPoint(H::PRE_SEND_STATUS)) {
      const grpc::Status st = m->GetSendStatus();
      saw_status_ = true;
      code_ = st.error_code();
      message_ = st.error_message().substr(0, 200);
    }
    m->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  const CallDone* done_;
  std::chrono::steady_clock::time_point t0_;
  std::string id_, peer_, message_;
  bool saw_status_ = false;
  grpc::StatusCode code_ = grpc::StatusCode::OK;
};

class CallObserverFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallObserverFactory(CallDone done) : done_(std::move(done)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallObserver(info, &done_);  // gRPC owns and deletes it
  }

 private:
  CallDone done_;
};

}  // namespace

std::string client_of(const grpc::ServerContext* ctx) {
  std::string c = find_metadata(ctx, "x-xbar-client");
  if (!c.empty() && printable_id(c)) return "client:" + c;
  return ctx->peer();
}

WaitLimits limits_of(grpc::ServerContext* ctx) {
  WaitLimits l;
  // Stopped for a reason other than its deadline: a passed deadline is l.deadline's to report
  // (kTimeout, DEADLINE_EXCEEDED), though call_stopped() is true then too, and gRPC marks the
  // call cancelled. Without this, a call whose deadline passed while it waited for an array
  // was answered CANCELLED (api_contract_test's 1 ms deadlines, under load).
  l.cancelled = [ctx] {
    return ctx->deadline() > std::chrono::system_clock::now() && call_stopped(ctx);
  };
  const auto deadline = ctx->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    const auto left = deadline - std::chrono::system_clock::now();
    l.deadline = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(left);
  }
  return l;
}

std::string request_id(const grpc::ServerContext* ctx) {
  std::lock_guard lk(g_ids_mu);
  auto it = g_ids.find(ctx);
  if (it != g_ids.end()) return it->second;
  return "-";
}

grpc::Status ChangeAccess::authorize(const grpc::ServerContext* ctx, const char* method) const {
  if (token_.empty()) return grpc::Status::OK;
  const std::string got = find_metadata(ctx, "authorization");
  if (got.empty()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            fmt::format("{} changes the board: send the daemon's token as metadata "
                        "'authorization: Bearer TOKEN' (xbarctl --token or XBAR_TOKEN)",
                        method)};
  }
  // RFC 6750 §2.1 with RFC 7235 §2.1: the scheme is case-insensitive ("bearer", "BEARER"),
  // then one or more spaces, then the token.
  std::string_view v(got);
  constexpr std::string_view kBearer = "bearer";
  const bool bearer = v.size() > kBearer.size() && v[kBearer.size()] == ' ' &&
                      std::equal(kBearer.begin(), kBearer.end(), v.begin(), [](char a, char b) {
                        return a == std::tolower(static_cast<unsigned char>(b));
                      });
  if (bearer) {
    v.remove_prefix(kBearer.size());
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  }
  if (!bearer || !equal_constant_time(v, token_)) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            fmt::format("{}: the authorization token is not the daemon's", method)};
  }
  return grpc::Status::OK;
}

IdleWatch::IdleWatch(std::chrono::milliseconds timeout)
    : timeout_(timeout), thread_([this] { run(); }) {}

IdleWatch::~IdleWatch() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

IdleWatch::Entry IdleWatch::watch(std::function<void()> cancel, std::string what) {
  std::lock_guard lk(mu_);
  const uint64_t id = next_++;
  items_[id] = Item{std::move(cancel), std::move(what), std::chrono::steady_clock::now()};
  return Entry(this, id);
}

IdleWatch::Entry::~Entry() {
  if (w_ == nullptr) return;
  std::lock_guard lk(w_->mu_);
  w_->items_.erase(id_);
}

void IdleWatch::Entry::touch() {
  if (w_ == nullptr) return;
  std::lock_guard lk(w_->mu_);
  auto it = w_->items_.find(id_);
  if (it != w_->items_.end()) it->second.last = std::chrono::steady_clock::now();
}

void IdleWatch::run() {
  const auto period = std::max(std::chrono::milliseconds(1),
                               std::min(std::chrono::milliseconds(100), timeout_ / 10));
  std::unique_lock lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, period);
    const auto now = std::chrono::steady_clock::now();
    for (auto& [id, item] : items_) {
      if (item.fired || now - item.last < timeout_) continue;
      item.fired = true;
      ++cancelled_;
      spdlog::warn("{}: idle for {} ms, cancelled", item.what, timeout_.count());
      item.cancel();  // TryCancel: quick, does not call back into the watch
    }
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> make_call_observer(
    CallDone done) {
  return std::make_unique<CallObserverFactory>(std::move(done));
}

}  // namespace xbar::server
