// xbard: the daemon that owns one xbar board and serves the xbar.v1 gRPC API. main() parses
// the flags into a DaemonConfig; the Daemon (daemon.h) builds and runs everything.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "config.h"
#include "daemon.h"

namespace {

// SIGINT and SIGTERM, blocked in every thread (the mask is set before any thread starts and
// inherited) and taken synchronously by the daemon's watcher thread with sigtimedwait: no
// async handler, and no dependence on which thread the kernel picks (under ThreadSanitizer, a
// handler's delivery waits for the thread to enter an instrumented call, which a thread parked
// in gRPC's own futex wait never does).
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
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
  const std::string uri = board_uri.empty() ? cfg.board_uri() : board_uri;
  if (auto c = xbar::server::check_settings(cfg); !c) {
    std::cerr << "xbard: " << c.error() << "\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ xbard: %v");
  auto daemon = xbar::server::Daemon::create(cfg, uri);
  if (!daemon) {
    if (daemon.error().exit_code == 2) {
      std::cerr << "xbard: " << daemon.error().message << "\n";
    } else {
      spdlog::error("{}", daemon.error().message);
    }
    return daemon.error().exit_code;
  }
  return (*daemon)->run(stop_set);
}
