// What every xbarctl command shares: the global options, the stable exit codes, and the one
// place that builds the gRPC channel (address, TLS) and the call contexts (deadline, token).
#pragma once

#include <expected>
#include <memory>
#include <string>

namespace CLI {
class App;
}
namespace grpc {
class Channel;
class ClientContext;
class Status;
}  // namespace grpc

namespace xbar::client {

/// Exit codes (docs/xbarctl.md): stable, for scripts.
enum Exit : int {
  kOk = 0,
  kFailed = 1,        // any other error; a deployment that is not ready; a cancelled run
  kUsage = 2,         // bad flags, unreadable input, or INVALID_ARGUMENT / OUT_OF_RANGE
  kUnavailable = 3,   // cannot reach xbard (or the TLS handshake failed), or xbard the board
  kNotFound = 4,      // NOT_FOUND: no such deployment, board, ...
  kTimeout = 5,       // DEADLINE_EXCEEDED: --timeout ran out
  kRefused = 6,       // FAILED_PRECONDITION: refused in the present state
  kUnauthorized = 7,  // UNAUTHENTICATED or PERMISSION_DENIED
};

/// The exit code of a failed call.
int exit_for(const grpc::Status& status);

/// Deadline of long calls (program, scan, deploy, deploy-model, stream, watch) unless --timeout
/// is given: programming three arrays of a real board takes minutes.
inline constexpr double kLongCallS = 600;

/// The global options, valid before or after the command.
struct GlobalOptions {
  std::string server;  // HOST:PORT or unix:/path
  std::string token, token_file;
  bool tls = false;  // TLS with the system's roots (implied by any --tls-* option)
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  bool json = false;
  bool quiet = false;
  double timeout_s = 30;
  bool timeout_given = false;  // filled in after parsing
};

/// Registers the global options on `app` (defaults: $XBAR_SERVER, $XBAR_ADDR, $XBAR_TOKEN).
void add_global_options(CLI::App& app, GlobalOptions& options);

/// The connection to xbard that every command uses: one channel, and call contexts that carry
/// the deadline and the token.
class Session {
 public:
  /// Builds the channel: plaintext, or TLS when asked for (server verified against --tls-ca or
  /// the system roots, --tls-server-name overriding the name checked; a client certificate when
  /// --tls-cert and --tls-key are given). Errors name the option (unreadable file, cert
  /// without key, token not printable ASCII): exit code kUsage.
  static std::expected<Session, std::string> open(const GlobalOptions& options);

  const GlobalOptions& options() const { return options_; }
  bool json() const { return options_.json; }
  /// Whether progress goes to stderr (not with --quiet).
  bool progress() const { return !options_.quiet; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  /// A context for one call: deadline --timeout (or `long_default_s`, when nonzero, if
  /// --timeout was not given), and `authorization: Bearer TOKEN` when a token is set.
  std::unique_ptr<grpc::ClientContext> context(double long_default_s = 0) const;

  /// Reports a failed call on stderr (with a hint for the usual causes) and returns its exit
  /// code.
  int fail(const grpc::Status& status) const;

 private:
  GlobalOptions options_;
  std::string token_;  // resolved: --token, --token-file, $XBAR_TOKEN
  bool tls_ = false;
  std::shared_ptr<grpc::Channel> channel_;
};

/// A file's bytes; the error is "PATH: cannot open (reason)".
std::expected<std::string, std::string> read_file_bytes(const std::string& path);

/// Standard text for a subcommand's footer: its examples, then where to find the rest.
std::string footer_with(const std::string& examples);

}  // namespace xbar::client
