// xbard's configuration: YAML file (configs/xbard.yaml) + command-line overrides.
// Validation errors name the key and the allowed values.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>

#include "xbar/drivers/program_verify.h"

namespace xbar::server {

struct DaemonConfig {
  std::string listen = "127.0.0.1:50051";  // gRPC address (host:port)
  std::string backend = "sim";             // sim | socket | usb
  std::string profile = "typical";         // sim: chip profile name or path
  uint64_t seed = 1;                       // sim: chip seed
  uint64_t noise_seed = 1;                 // sim: noise seed
  std::string address;                     // socket: tcp:HOST:PORT or unix:PATH
  std::string serial;                      // usb: board serial (empty: the only board)
  std::string state_dir = "./xbar-state";  // durable state (chip records)
  std::string log_level = "info";
  std::string metrics_listen;  // HOST:PORT of the Prometheus/health HTTP endpoint; empty: off

  // security:
  std::string token_file;     // calls that change the board need this file's token
  std::string tls_cert;       // PEM server certificate chain: TLS instead of plaintext
  std::string tls_key;        // PEM private key of tls_cert
  std::string tls_client_ca;  // PEM CA: clients must present a certificate it signed (mTLS)

  // scheduling:
  std::string busy_policy = "wait";   // wait | refuse: a change on arrays that streams use
  uint64_t max_queue = 1024;          // requests waiting for the board before RESOURCE_EXHAUSTED
  double stream_idle_timeout_s = 30;  // a stream silent this long is cancelled (frees its arrays)

  // retention (docs/record.md, "Retention"): the newest keep_inactive failed/stale/lost
  // deployments per chip stay whole, older ones are archived; nullopt ("all"): retention off.
  std::optional<uint64_t> keep_inactive = 20;

  /// The driver URI this configuration selects, e.g. "sim:profile=typical,seed=1,noise_seed=1".
  std::string board_uri() const;

  /// Program-verify defaults (config section `program_verify:`); a request's own tol_uS and
  /// max_rounds override the first two.
  ProgramVerifyConfig program_verify;
};

/// Parses a retention.keep_inactive value (YAML or --keep-inactive): "all" (nullopt:
/// retention off) or a count 0..1000000. Errors name `key` and the allowed values.
std::expected<std::optional<uint64_t>, std::string> parse_keep_inactive(const std::string& text,
                                                                        const std::string& key);

/// Parses YAML text into a config (defaults for absent keys). `origin` prefixes messages.
std::expected<DaemonConfig, std::string> parse_config(const std::string& yaml_text,
                                                      const std::string& origin);
std::expected<DaemonConfig, std::string> load_config_file(const std::string& path);

/// The checks across fields (TLS pairing, busy policy, backend and address, listen, log
/// level), named by their config keys and flags: parse_config runs them, and xbard again after
/// its flags override the file.
std::expected<void, std::string> check_settings(const DaemonConfig& c);

}  // namespace xbar::server
