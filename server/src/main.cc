// xbard: the daemon that owns one xbar board and serves the xbar.v1 gRPC API.
// main() only parses flags, builds the pieces and runs.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cctype>
#include <csignal>
#include <expected>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "array_service.h"
#include "board_service.h"
#include "call.h"
#include "chip_record.h"
#include "config.h"
#include "deployment_states.h"
#include "http_endpoint.h"
#include "kernel_service.h"
#include "metrics.h"
#include "model_service.h"
#include "programming.h"
#include "reconcile.h"

namespace {

std::atomic<bool> g_stop{false};

// SIGINT and SIGTERM, blocked in every thread (the mask is set before any thread starts and
// inherited) and taken synchronously by the waiter thread with sigtimedwait: no async handler,
// and no dependence on which thread the kernel picks (under ThreadSanitizer, a handler's
// delivery waits for the thread to enter an instrumented call, which a thread parked in gRPC's
// own futex wait never does).
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

namespace {

std::expected<std::string, std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(fmt::format("{} {}: cannot open", what, path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool loopback_or_unix(const std::string& listen) {
  return listen.starts_with("unix:") || listen.starts_with("127.") ||
         listen.starts_with("localhost:") || listen.starts_with("[::1]:");
}

}  // namespace

int main(int argc, char** argv) {
  const sigset_t stop_set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
  CLI::App app{"xbard: the xbar daemon (gRPC xbar.v1 in front of one crossbar board)"};
  std::string config_path;
  std::string listen, board_uri, log_level, state_dir, metrics_listen, token_file, tls_cert,
      tls_key, tls_client_ca, busy_policy, keep_inactive;
  app.add_option("-c,--config", config_path, "YAML config (see configs/xbard.yaml)");
  app.add_option("--listen", listen, "gRPC address HOST:PORT or unix:PATH (overrides the config)");
  app.add_option("--board", board_uri,
                 "board URI (overrides the config): sim:profile=typical,seed=7 | "
                 "tcp:HOST:PORT | unix:PATH | usb:serial=S");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option(
      "--state-dir", state_dir,
      "directory of the durable chip record (overrides the config; default ./xbar-state)");
  app.add_option("--metrics-listen", metrics_listen,
                 "HOST:PORT of the HTTP endpoint: /metrics (Prometheus), /healthz/live, "
                 "/healthz/ready (port 0: any free port; default: off)");
  app.add_option("--auth-token-file", token_file,
                 "file holding the token that calls which change the board must send as "
                 "'authorization: Bearer TOKEN' (default: no token)");
  app.add_option("--tls-cert", tls_cert, "PEM certificate chain: serve TLS");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", tls_client_ca,
                 "PEM CA: require client certificates signed by it (mTLS)");
  app.add_option("--busy-policy", busy_policy,
                 "wait | refuse: a change (program, scan, deploy, delete) on arrays that "
                 "inference is using waits for it, or is refused at once");
  app.add_option("--keep-inactive", keep_inactive,
                 "retention: per chip, the newest N failed/stale/lost deployments stay whole, "
                 "older ones are archived (without their matrices); N = 0..1000000, or all "
                 "(retention off); overrides the config (default 20)");
  app.footer(
      "With no config: the embedded twin (profile typical) on 127.0.0.1:50051.\n"
      "Examples:\n  xbard\n  xbard --board sim:profile=imssa,seed=3\n"
      "  xbard --config /etc/xbar/xbard.yaml\n  xbard --board tcp:127.0.0.1:7700 --listen "
      "127.0.0.1:50052\n  xbard --listen unix:/run/xbar/xbard.sock --metrics-listen "
      "127.0.0.1:9464\n  xbard --auth-token-file /etc/xbar/token --tls-cert server.pem "
      "--tls-key server.key");
  CLI11_PARSE(app, argc, argv);

  xbar::server::DaemonConfig cfg;
  if (!config_path.empty()) {
    auto c = xbar::server::load_config_file(config_path);
    if (!c) {
      std::cerr << "xbard: " << c.error() << "\n";
      return 2;
    }
    cfg = *c;
  }
  if (!listen.empty()) cfg.listen = listen;
  if (!log_level.empty()) cfg.log_level = log_level;
  if (!state_dir.empty()) cfg.state_dir = state_dir;
  if (!metrics_listen.empty()) cfg.metrics_listen = metrics_listen;
  if (!token_file.empty()) cfg.token_file = token_file;
  if (!tls_cert.empty()) cfg.tls_cert = tls_cert;
  if (!tls_key.empty()) cfg.tls_key = tls_key;
  if (!tls_client_ca.empty()) cfg.tls_client_ca = tls_client_ca;
  if (!busy_policy.empty()) cfg.busy_policy = busy_policy;
  if (!keep_inactive.empty()) {
    auto k = xbar::server::parse_keep_inactive(keep_inactive, "--keep-inactive");
    if (!k) {
      std::cerr << "xbard: " << k.error() << "\n";
      return 2;
    }
    cfg.keep_inactive = *k;
  }
  if (cfg.busy_policy != "wait" && cfg.busy_policy != "refuse") {
    std::cerr << "xbard: --busy-policy '" << cfg.busy_policy << "': allowed wait, refuse\n";
    return 2;
  }
  if (cfg.tls_cert.empty() != cfg.tls_key.empty()) {
    std::cerr << "xbard: --tls-cert and --tls-key: give both or neither\n";
    return 2;
  }
  if (!cfg.tls_client_ca.empty() && cfg.tls_cert.empty()) {
    std::cerr << "xbard: --tls-client-ca needs --tls-cert and --tls-key\n";
    return 2;
  }
  const std::string uri = board_uri.empty() ? cfg.board_uri() : board_uri;
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ xbard: %v");

  // Everything that can be checked without the board, first.
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!cfg.tls_cert.empty()) {
    auto cert = read_file(cfg.tls_cert, "tls_cert");
    auto key = read_file(cfg.tls_key, "tls_key");
    if (!cert || !key) {
      std::cerr << "xbard: " << (!cert ? cert.error() : key.error()) << "\n";
      return 2;
    }
    grpc::SslServerCredentialsOptions opts(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    opts.pem_key_cert_pairs.push_back({*key, *cert});
    if (!cfg.tls_client_ca.empty()) {
      auto ca = read_file(cfg.tls_client_ca, "tls_client_ca");
      if (!ca) {
        std::cerr << "xbard: " << ca.error() << "\n";
        return 2;
      }
      opts.pem_root_certs = *ca;
      opts.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    creds = grpc::SslServerCredentials(opts);
  }
  if (!cfg.token_file.empty()) {
    auto t = read_file(cfg.token_file, "token_file");
    if (!t) {
      std::cerr << "xbard: " << t.error() << "\n";
      return 2;
    }
    std::string token = *t;
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
      token.pop_back();
    }
    if (token.size() < 16 || token.find_first_of(" \t\r\n") != std::string::npos) {
      std::cerr << "xbard: token_file " << cfg.token_file
                << ": the token must be one line of at least 16 characters, no spaces\n";
      return 2;
    }
    xbar::server::set_required_token(std::move(token));
    if (cfg.tls_cert.empty() && !loopback_or_unix(cfg.listen)) {
      spdlog::warn("a token on plaintext {}: anyone on the path can read it; use TLS", cfg.listen);
    }
  }

  auto board = xbar::Board::open(uri);
  if (!board) {
    spdlog::error("cannot open board '{}': {}", uri, board.error().message);
    return 3;
  }
  const xbar::BoardInfo& info = (*board)->info();
  spdlog::info("board {} ({} {}x{} arrays, firmware {}) via {} [{}]", info.serial, info.arrays,
               info.rows, info.cols, info.firmware_version, info.backend, info.link);

  auto record = xbar::server::ChipRecord::open(cfg.state_dir);
  if (!record) {
    spdlog::error("chip record: {}", record.error().message);
    return 3;
  }
  if (auto t = (*record)->touch_chip(
          {info.serial, info.firmware_version, info.arrays, info.rows, info.cols});
      !t) {
    spdlog::error("chip record: {}", t.error().message);
    return 3;
  }
  spdlog::info("chip record {}", (*record)->path().string());
  // Before serving: what the record says the arrays hold against what they read back.
  {
    auto rec = xbar::server::reconcile_deployments(**board, **record, cfg.program_verify.tol_uS);
    if (!rec) {
      spdlog::error("reconciling the chip record with the board: {}", rec.error().message);
      return 3;
    }
    for (const auto& o : *rec) {
      spdlog::info("deployment {}: {} -> {} ({})", o.id, o.before, o.after, o.message);
    }
  }
  // Retention at start (and after each deploy): reconciliation may have made some lost, and
  // an older build or a changed keep_inactive may have left more than the policy keeps.
  if (auto a = xbar::server::apply_retention(**record, info.serial, cfg.keep_inactive); !a) {
    spdlog::warn("retention: {}", a.error().message);
  } else if (!a->empty()) {
    spdlog::info("retention: {} deployment(s) archived (keeping the newest {} inactive whole)",
                 a->size(), *cfg.keep_inactive);
  }

  xbar::server::Registry registry;
  xbar::server::XbardMetrics metrics(registry, XBAR_VERSION);
  xbar::server::set_programming_observer([&metrics](uint64_t pulses, uint64_t abandoned) {
    metrics.pulses_applied.inc(static_cast<double>(pulses));
    metrics.devices_abandoned.inc(static_cast<double>(abandoned));
  });
  xbar::server::Scheduler sched(
      info.arrays,
      [&metrics](size_t depth) { metrics.board_queue_depth.set(static_cast<double>(depth)); },
      [&metrics](double s) { metrics.board_busy_seconds.inc(s); });
  sched.refuse_busy_changes = cfg.busy_policy == "refuse";
  sched.board.max_waiting = cfg.max_queue;

  // Verified as of now (reconciled above); a board restart from here on is re-verified.
  xbar::server::DeploymentStates states(**board, **record);
  xbar::server::BoardServiceImpl service(**board, sched);
  xbar::server::ArrayServiceImpl arrays(**board, **record, sched, cfg.program_verify);
  xbar::server::KernelServiceImpl kernels(**board, **record, sched, states, cfg.program_verify);
  kernels.set_retention(cfg.keep_inactive);
  xbar::server::ModelServiceImpl models(
      **board, sched, states, kernels,
      std::chrono::milliseconds(static_cast<int64_t>(cfg.stream_idle_timeout_s * 1000)));
  models.set_metrics(&metrics);
  // xbar_deployments{state}, refreshed with the readiness check: the states as callers see
  // them, read without the blobs (the archived history may be long).
  auto refresh_deployments = [&] {
    auto rows = (*record)->deployments(info.serial, /*with_blobs=*/false);
    if (!rows) return;
    std::map<std::string, int> n = {{"ready", 0},    {"degraded", 0},  {"failed", 0},
                                    {"stale", 0},    {"deploying", 0}, {"lost", 0},
                                    {"verifying", 0}};
    for (auto r : *rows) {
      states.correct(r);
      ++n[r.state];
    }
    for (const auto& [state, count] : n) {
      metrics.deployments.with({state}).set(static_cast<double>(count));
    }
  };
  // Liveness: the process serves. Readiness: the board answers STATUS (checked every second).
  std::atomic<bool> board_ok{false};
  std::string not_ready_reason = "starting";
  std::mutex reason_mu;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(cfg.listen, creds, &bound_port);
  builder.RegisterService(&service);
  builder.RegisterService(&arrays);
  builder.RegisterService(&kernels);
  builder.RegisterService(&models);
  xbar::server::OperationServiceImpl operations(sched.operations);
  builder.RegisterService(&operations);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> observers;
  observers.push_back(xbar::server::make_call_observer(
      [&metrics](const std::string& method, grpc::StatusCode code, double s) {
        metrics.record_request(method, static_cast<int>(code), s);
      }));
  builder.experimental().SetInterceptorCreators(std::move(observers));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || (bound_port == 0 && !cfg.listen.starts_with("unix:"))) {
    spdlog::error("cannot listen on {}", cfg.listen);
    return 4;
  }
  auto* health = server->GetHealthCheckService();
  const char* kReadyServices[] = {"xbar.v1.BoardService", "xbar.v1.ArrayService",
                                  "xbar.v1.KernelService", "xbar.v1.ModelService"};
  auto set_ready = [&](bool ok, const std::string& why) {
    const bool was = board_ok.exchange(ok);
    {
      std::lock_guard lk(reason_mu);
      not_ready_reason = why;
    }
    for (const char* s : kReadyServices) health->SetServingStatus(s, ok);
    if (was != ok) {
      if (ok) {
        spdlog::info("ready: board {} answers", info.serial);
      } else {
        spdlog::warn("not ready: {}", why);
      }
    }
  };
  health->SetServingStatus("", true);  // live: the process serves
  set_ready(false, "starting");

  std::unique_ptr<xbar::server::HttpEndpoint> http;
  if (!cfg.metrics_listen.empty()) {
    http = std::make_unique<xbar::server::HttpEndpoint>(
        registry, [&]() -> std::pair<bool, std::string> {
          std::lock_guard lk(reason_mu);
          return {board_ok.load(), not_ready_reason};
        });
    auto port = http->start(cfg.metrics_listen);
    if (!port) {
      spdlog::error("metrics endpoint {}: {}", cfg.metrics_listen, port.error());
      return 4;
    }
    spdlog::info("metrics and health on http://{}/metrics (port {})", cfg.metrics_listen, *port);
  }
  spdlog::info("serving xbar.v1 on {} (port {}){}{}", cfg.listen, bound_port,
               cfg.tls_cert.empty() ? "" : (cfg.tls_client_ca.empty() ? ", TLS" : ", mTLS"),
               xbar::server::token_required() ? ", token required for changes" : "");

  std::thread waiter([&] {
    auto next_check = std::chrono::steady_clock::now();
    while (!g_stop) {
      if (std::chrono::steady_clock::now() >= next_check) {
        // STATUS is served even while a loop runs, so this never waits for the queue.
        auto st = (*board)->status();
        set_ready(st.has_value() && states.board_verified(),
                  !st                       ? "board: " + st.error().message
                  : states.board_verified() ? ""
                                            : "board restarted: its arrays are not verified");
        refresh_deployments();
        next_check = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      }
      timespec wait{0, 50'000'000};  // 50 ms
      if (sigtimedwait(&stop_set, nullptr, &wait) > 0) g_stop = true;
    }
    // Running operations, detached ones too, stop at their next round and are recorded as
    // cancelled; systemd's stop timeout is never reached by a long program-verify.
    const size_t stopping = sched.operations.cancel_all();
    spdlog::info("shutting down{}",
                 stopping ? fmt::format(" ({} running operation(s) cancelled)", stopping) : "");
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  // The board restarted (or its link was re-opened) since its arrays were last read: until
  // they are read back, xbard is not ready and the deployments are `verifying`. Its own thread:
  // the read-back waits behind what runs on the board (a stream ends with UNAVAILABLE at its
  // next chunk), and a stop request ends the wait.
  std::thread reverifier([&] {
    xbar::server::WaitLimits until_stop;
    until_stop.cancelled = [] { return g_stop.load(); };
    while (!g_stop) {
      if (!states.board_verified() && (*board)->client().link_up()) {
        if (auto r = states.reverify_if_needed(sched, cfg.program_verify.tol_uS, until_stop);
            !r && !g_stop) {
          spdlog::warn("re-verifying after a board restart: {} (tried again in 1 s)",
                       r.error().message);
          for (int i = 0; i < 10 && !g_stop; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  server->Wait();
  g_stop = true;
  waiter.join();
  reverifier.join();
  if (http) http->stop();
  return 0;
}
