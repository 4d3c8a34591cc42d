// xbard: the daemon that owns one xbar board and serves the xbar.v1 gRPC API. main() parses
// the flags into a DaemonConfig; the Daemon (daemon.h) builds and runs everything.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <expected>
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

// The command line: each flag overrides the config file's setting of the same name.
struct Flags {
  std::string config_path, listen, board_uri, log_level, state_dir, metrics_listen, token_file,
      tls_cert, tls_key, tls_client_ca, busy_policy, keep_inactive;
};

void add_flags(CLI::App& app, Flags& f) {
  app.add_option("-c,--config", f.config_path, "YAML config (see configs/xbard.yaml)");
  app.add_option("--listen", f.listen,
                 "gRPC address HOST:PORT or unix:PATH (overrides the config)");
  app.add_option("--board", f.board_uri,
                 "board URI (overrides the config): sim:profile=typical,seed=7 | "
                 "tcp:HOST:PORT | unix:PATH | usb:serial=S");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error");
  app.add_option(
      "--state-dir", f.state_dir,
      "directory of the durable chip record (overrides the config; default ./xbar-state)");
  app.add_option("--metrics-listen", f.metrics_listen,
                 "HOST:PORT of the HTTP endpoint: /metrics (Prometheus), /healthz/live, "
                 "/healthz/ready (port 0: any free port; default: off)");
  app.add_option("--auth-token-file", f.token_file,
                 "file holding the token that calls which change the board must send as "
                 "'authorization: Bearer TOKEN' (default: no token)");
  app.add_option("--tls-cert", f.tls_cert, "PEM certificate chain: serve TLS");
  app.add_option("--tls-key", f.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", f.tls_client_ca,
                 "PEM CA: require client certificates signed by it (mTLS)");
  app.add_option("--busy-policy", f.busy_policy,
                 "wait | refuse: a change (program, scan, deploy, delete) on arrays that "
                 "inference is using waits for it, or is refused at once");
  app.add_option("--keep-inactive", f.keep_inactive,
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
}

// The config file (if any) with the flags applied; the error is xbard's message.
std::expected<xbar::server::DaemonConfig, std::string> settings(const Flags& f) {
  xbar::server::DaemonConfig cfg;
  if (!f.config_path.empty()) {
    auto c = xbar::server::load_config_file(f.config_path);
    if (!c) return std::unexpected(c.error());
    cfg = *c;
  }
  if (!f.listen.empty()) cfg.listen = f.listen;
  if (!f.log_level.empty()) cfg.log_level = f.log_level;
  if (!f.state_dir.empty()) cfg.state_dir = f.state_dir;
  if (!f.metrics_listen.empty()) cfg.metrics_listen = f.metrics_listen;
  if (!f.token_file.empty()) cfg.token_file = f.token_file;
  if (!f.tls_cert.empty()) cfg.tls_cert = f.tls_cert;
  if (!f.tls_key.empty()) cfg.tls_key = f.tls_key;
  if (!f.tls_client_ca.empty()) cfg.tls_client_ca = f.tls_client_ca;
  if (!f.busy_policy.empty()) cfg.busy_policy = f.busy_policy;
  if (!f.keep_inactive.empty()) {
    auto k = xbar::server::parse_keep_inactive(f.keep_inactive, "--keep-inactive");
    if (!k) return std::unexpected(k.error());
    cfg.keep_inactive = *k;
  }
  if (auto c = xbar::server::check_settings(cfg); !c) return std::unexpected(c.error());
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  const sigset_t stop_set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
  CLI::App app{"xbard: the xbar daemon (gRPC xbar.v1 in front of one crossbar board)"};
  Flags f;
  add_flags(app, f);
  CLI11_PARSE(app, argc, argv);
  auto cfg = settings(f);
  if (!cfg) {
    std::cerr << "xbard: " << cfg.error() << "\n";
    return 2;
  }
  const std::string uri = f.board_uri.empty() ? cfg->board_uri() : f.board_uri;
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ xbard: %v");
  auto daemon = xbar::server::Daemon::create(*cfg, uri);
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
