#include "daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cctype>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "array_service.h"
#include "board_service.h"
#include "call.h"
#include "chip_record.h"
#include "deployer.h"
#include "deployment_states.h"
#include "kernel_service.h"
#include "matrix_service.h"
#include "model_service.h"
#include "observability/http_endpoint.h"
#include "observability/metrics.h"
#include "operations.h"
#include "reconcile.h"

#ifndef XBAR_VERSION
#define XBAR_VERSION "unknown"
#endif

namespace xbar::server {

namespace {

std::expected<std::string, StartError> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(StartError{2, fmt::format("{} {}: cannot open", what, path)});
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool loopback_or_unix(const std::string& listen) {
  return listen.starts_with("unix:") || listen.starts_with("127.") ||
         listen.starts_with("localhost:") || listen.starts_with("[::1]:");
}

std::expected<std::shared_ptr<grpc::ServerCredentials>, StartError> credentials(
    const DaemonConfig& cfg) {
  if (cfg.tls_cert.empty()) return grpc::InsecureServerCredentials();
  auto cert = read_file(cfg.tls_cert, "tls_cert");
  if (!cert) return std::unexpected(cert.error());
  auto key = read_file(cfg.tls_key, "tls_key");
  if (!key) return std::unexpected(key.error());
  grpc::SslServerCredentialsOptions opts(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  opts.pem_key_cert_pairs.push_back({*key, *cert});
  if (!cfg.tls_client_ca.empty()) {
    auto ca = read_file(cfg.tls_client_ca, "tls_client_ca");
    if (!ca) return std::unexpected(ca.error());
    opts.pem_root_certs = *ca;
    opts.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(opts);
}

// The token changes must carry (empty: none), from cfg.token_file.
std::expected<std::string, StartError> change_token(const DaemonConfig& cfg) {
  if (cfg.token_file.empty()) return std::string();
  auto t = read_file(cfg.token_file, "token_file");
  if (!t) return std::unexpected(t.error());
  std::string token = *t;
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
    token.pop_back();
  }
  if (token.size() < 16 || token.find_first_of(" \t\r\n") != std::string::npos) {
    return std::unexpected(StartError{
        2, fmt::format("token_file {}: the token must be one line of at least 16 characters, "
                       "no spaces",
                       cfg.token_file)});
  }
  if (cfg.tls_cert.empty() && !loopback_or_unix(cfg.listen)) {
    spdlog::warn("a token on plaintext {}: anyone on the path can read it; use TLS", cfg.listen);
  }
  return token;
}

// Before serving: what the record says the arrays hold against what they read back; then
// retention (reconciliation may have made some lost, and an older build or a changed
// keep_inactive may have left more than the policy keeps).
std::expected<void, StartError> reconcile_at_start(Board& board, ChipRecord& record,
                                                   const DaemonConfig& cfg) {
  const BoardInfo& info = board.info();
  if (auto t = record.touch_chip(
          {info.serial, info.firmware_version, info.arrays, info.rows, info.cols});
      !t) {
    return std::unexpected(StartError{3, "chip record: " + t.error().message});
  }
  spdlog::info("chip record {}", record.path().string());
  auto rec = reconcile_deployments(board, record, cfg.program_verify.tol_uS);
  if (!rec) {
    return std::unexpected(
        StartError{3, "reconciling the chip record with the board: " + rec.error().message});
  }
  for (const auto& o : *rec) {
    spdlog::info("deployment {}: {} -> {} ({})", o.id, name(o.before), name(o.after), o.message);
  }
  if (auto a = apply_retention(record, info.serial, cfg.keep_inactive); !a) {
    spdlog::warn("retention: {}", a.error().message);
  } else if (!a->empty()) {
    spdlog::info("retention: {} deployment(s) archived (keeping the newest {} inactive whole)",
                 a->size(), *cfg.keep_inactive);
  }
  return {};
}

}  // namespace

// Declaration order is construction order: each part borrows only parts above it, and they
// are destroyed in reverse (the server first).
struct Daemon::Parts {
  DaemonConfig cfg;
  std::shared_ptr<grpc::ServerCredentials> creds;
  std::unique_ptr<ChangeAccess> access;
  std::unique_ptr<Board> board;
  std::unique_ptr<ChipRecord> record;
  Registry registry;
  std::unique_ptr<XbardMetrics> metrics;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<DeploymentStates> states;
  std::unique_ptr<Deployer> deployer;
  std::unique_ptr<BoardServiceImpl> board_service;
  std::unique_ptr<ArrayServiceImpl> arrays;
  std::unique_ptr<KernelServiceImpl> kernels;
  std::unique_ptr<ModelServiceImpl> models;
  std::unique_ptr<MatrixServiceImpl> matrices;
  std::unique_ptr<OperationServiceImpl> operations;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<HttpEndpoint> http;
  int bound_port = 0;

  // Readiness: the board answers STATUS and its arrays are verified (checked every second).
  std::atomic<bool> ready{false};
  std::mutex reason_mu;
  std::string not_ready_reason = "starting";
  std::atomic<bool> stop{false};

  void build_services();
  std::expected<void, StartError> start_server();
  std::expected<void, StartError> start_http();
  void set_ready(bool ok, const std::string& why);
  void refresh_deployment_metrics();
  void watch(const sigset_t& stop_set);
  void reverify();
};

void Daemon::Parts::build_services() {
  const BoardInfo& info = board->info();
  metrics = std::make_unique<XbardMetrics>(registry, XBAR_VERSION);
  ProgrammingObserver observer = [m = metrics.get()](uint64_t pulses, uint64_t abandoned) {
    m->pulses_applied.inc(static_cast<double>(pulses));
    m->devices_abandoned.inc(static_cast<double>(abandoned));
  };
  sched = std::make_unique<Scheduler>(
      info.arrays,
      [m = metrics.get()](size_t depth) { m->board_queue_depth.set(static_cast<double>(depth)); },
      [m = metrics.get()](double s) { m->board_busy_seconds.inc(s); });
  sched->refuse_busy_changes = cfg.busy_policy == "refuse";
  sched->board.max_waiting = cfg.max_queue;
  // Verified as of now (reconciled); a board restart from here on is re-verified.
  states = std::make_unique<DeploymentStates>(*board, *record);
  deployer = std::make_unique<Deployer>(*board, *record, *sched, *states, *access,
                                        cfg.program_verify, observer);
  deployer->set_retention(cfg.keep_inactive);
  board_service = std::make_unique<BoardServiceImpl>(*board, *sched);
  arrays = std::make_unique<ArrayServiceImpl>(*board, *record, *sched, *access, cfg.program_verify,
                                              observer);
  kernels =
      std::make_unique<KernelServiceImpl>(*board, *record, *sched, *states, *deployer, *access);
  models = std::make_unique<ModelServiceImpl>(
      *board, *sched, *states, *deployer, *access,
      std::chrono::milliseconds(static_cast<int64_t>(cfg.stream_idle_timeout_s * 1000)));
  models->set_metrics(metrics.get());
  matrices = std::make_unique<MatrixServiceImpl>(*board, *sched, *states, *deployer);
  operations = std::make_unique<OperationServiceImpl>(sched->operations, *access);
}

std::expected<void, StartError> Daemon::Parts::start_server() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(cfg.listen, creds, &bound_port);
  for (grpc::Service* s :
       std::initializer_list<grpc::Service*>{board_service.get(), arrays.get(), kernels.get(),
                                             models.get(), matrices.get(), operations.get()}) {
    builder.RegisterService(s);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> observers;
  observers.push_back(make_call_observer(
      [m = metrics.get()](const std::string& method, grpc::StatusCode code, double s) {
        m->record_request(method, static_cast<int>(code), s);
      }));
  builder.experimental().SetInterceptorCreators(std::move(observers));
  server = builder.BuildAndStart();
  if (!server || (bound_port == 0 && !cfg.listen.starts_with("unix:"))) {
    return std::unexpected(StartError{4, fmt::format("cannot listen on {}", cfg.listen)});
  }
  server->GetHealthCheckService()->SetServingStatus("", true);  // live: the process serves
  set_ready(false, "starting");
  return {};
}

std::expected<void, StartError> Daemon::Parts::start_http() {
  if (cfg.metrics_listen.empty()) return {};
  http = std::make_unique<HttpEndpoint>(registry, [this]() -> std::pair<bool, std::string> {
    std::lock_guard lk(reason_mu);
    return {ready.load(), not_ready_reason};
  });
  auto port = http->start(cfg.metrics_listen);
  if (!port) {
    return std::unexpected(
        StartError{4, fmt::format("metrics endpoint {}: {}", cfg.metrics_listen, port.error())});
  }
  spdlog::info("metrics and health on http://{}/metrics (port {})", cfg.metrics_listen, *port);
  return {};
}

void Daemon::Parts::set_ready(bool ok, const std::string& why) {
  static constexpr const char* kReadyServices[] = {"xbar.v1.BoardService", "xbar.v1.ArrayService",
                                                   "xbar.v1.KernelService", "xbar.v1.ModelService",
                                                   "xbar.v1.MatrixService"};
  const bool was = ready.exchange(ok);
  {
    std::lock_guard lk(reason_mu);
    not_ready_reason = why;
  }
  for (const char* s : kReadyServices) server->GetHealthCheckService()->SetServingStatus(s, ok);
  if (was != ok) {
    if (ok) {
      spdlog::info("ready: board {} answers", board->info().serial);
    } else {
      spdlog::warn("not ready: {}", why);
    }
  }
}

// xbar_deployments{state}, refreshed with the readiness check: the states as callers see
// them, read without the blobs (the archived history may be long).
void Daemon::Parts::refresh_deployment_metrics() {
  auto rows = record->deployments(board->info().serial, /*with_blobs=*/false);
  if (!rows) return;
  std::map<DeploymentState, int> n;
  for (const DeploymentState s : kDeploymentStates) n[s] = 0;
  for (auto r : *rows) {
    states->correct(r);
    ++n[r.state];
  }
  for (const auto& [state, count] : n) {
    metrics->deployments.with({std::string(name(state))}).set(static_cast<double>(count));
  }
}

// Readiness every second until a stop signal; then running operations (detached ones too)
// stop at their next round and are recorded as cancelled, so systemd's stop timeout is never
// reached by a long program-verify.
void Daemon::Parts::watch(const sigset_t& stop_set) {
  auto next_check = std::chrono::steady_clock::now();
  while (!stop) {
    if (std::chrono::steady_clock::now() >= next_check) {
      // STATUS is served even while a loop runs, so this never waits for the queue.
      auto st = board->status();
      set_ready(st.has_value() && states->board_verified(),
                !st                        ? "board: " + st.error().message
                : states->board_verified() ? ""
                                           : "board restarted: its arrays are not verified");
      refresh_deployment_metrics();
      next_check = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
    timespec wait{0, 50'000'000};  // 50 ms
    if (sigtimedwait(&stop_set, nullptr, &wait) > 0) stop = true;
  }
  const size_t stopping = sched->operations.cancel_all();
  spdlog::info("shutting down{}",
               stopping ? fmt::format(" ({} running operation(s) cancelled)", stopping) : "");
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

// The board restarted (or its link was re-opened) since its arrays were last read: until
// they are read back, xbard is not ready and the deployments are `verifying`. Its own thread:
// the read-back waits behind what runs on the board (a stream ends with UNAVAILABLE at its
// next chunk), and a stop request ends the wait.
void Daemon::Parts::reverify() {
  WaitLimits until_stop;
  until_stop.cancelled = [this] { return stop.load(); };
  while (!stop) {
    if (!states->board_verified() && board->client().link_up()) {
      if (auto r = states->reverify_if_needed(*sched, cfg.program_verify.tol_uS, until_stop);
          !r && !stop) {
        spdlog::warn("re-verifying after a board restart: {} (tried again in 1 s)",
                     r.error().message);
        for (int i = 0; i < 10 && !stop; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Daemon::Daemon(std::unique_ptr<Parts> parts) : p_(std::move(parts)) {}

int Daemon::port() const { return p_->bound_port; }

Daemon::~Daemon() {
  if (p_->http) p_->http->stop();
}

std::expected<std::unique_ptr<Daemon>, StartError> Daemon::create(const DaemonConfig& cfg,
                                                                  const std::string& board_uri) {
  if (auto c = check_settings(cfg); !c) return std::unexpected(StartError{2, c.error()});
  auto p = std::make_unique<Parts>();
  p->cfg = cfg;
  // Everything that can be checked without the board, first.
  auto creds = credentials(cfg);
  if (!creds) return std::unexpected(creds.error());
  p->creds = *creds;
  auto token = change_token(cfg);
  if (!token) return std::unexpected(token.error());
  p->access = std::make_unique<ChangeAccess>(std::move(*token));

  auto board = Board::open(board_uri);
  if (!board) {
    return std::unexpected(
        StartError{3, fmt::format("cannot open board '{}': {}", board_uri, board.error().message)});
  }
  p->board = std::move(*board);
  const BoardInfo& info = p->board->info();
  spdlog::info("board {} ({} {}x{} arrays, firmware {}) via {} [{}]", info.serial, info.arrays,
               info.rows, info.cols, info.firmware_version, info.backend, info.link);
  auto record = ChipRecord::open(cfg.state_dir);
  if (!record) return std::unexpected(StartError{3, "chip record: " + record.error().message});
  p->record = std::move(*record);
  if (auto r = reconcile_at_start(*p->board, *p->record, cfg); !r) {
    return std::unexpected(r.error());
  }
  p->build_services();
  if (auto s = p->start_server(); !s) return std::unexpected(s.error());
  if (auto h = p->start_http(); !h) return std::unexpected(h.error());
  spdlog::info("serving xbar.v1 on {} (port {}){}{}", cfg.listen, p->bound_port,
               cfg.tls_cert.empty() ? "" : (cfg.tls_client_ca.empty() ? ", TLS" : ", mTLS"),
               p->access->token_required() ? ", token required for changes" : "");
  return std::unique_ptr<Daemon>(new Daemon(std::move(p)));
}

int Daemon::run(const sigset_t& stop) {
  std::thread waiter([this, &stop] { p_->watch(stop); });
  std::thread reverifier([this] { p_->reverify(); });
  p_->server->Wait();
  p_->stop = true;
  waiter.join();
  reverifier.join();
  return 0;
}

}  // namespace xbar::server
