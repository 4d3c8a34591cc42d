// xbard as one object: the board, the chip record, the scheduler, the services and the gRPC
// server, built from a checked configuration. main() parses flags into a DaemonConfig, makes a
// Daemon and runs it; a test can make two in one process (nothing here is process-global).
#pragma once

#include <signal.h>

#include <expected>
#include <memory>
#include <string>

#include "config.h"

namespace xbar::server {

/// Why a daemon could not start, with xbard's exit code (2: configuration, 3: board or chip
/// record, 4: cannot listen).
struct StartError {
  int exit_code = 2;
  std::string message;
};

/// Owns everything it builds. \context create() and run() on one thread; run() serves on
/// gRPC's threads plus two of its own (readiness, re-verification) until a stop signal.
class Daemon {
 public:
  /// Checks `cfg` (check_settings), reads the TLS files and the token, opens the board
  /// `board_uri` and the chip record, reconciles them, applies retention, and starts serving.
  static std::expected<std::unique_ptr<Daemon>, StartError> create(const DaemonConfig& cfg,
                                                                   const std::string& board_uri);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  /// The gRPC port bound (the one chosen for a listen address with port 0; 0 for unix:).
  int port() const;

  /// Serves until one of `stop` (blocked in every thread by the caller) arrives; running
  /// operations are cancelled and recorded as such. Returns xbard's exit code.
  int run(const sigset_t& stop);

 private:
  struct Parts;
  explicit Daemon(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> p_;
};

}  // namespace xbar::server
