#include "cli.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

namespace xbar::client {

int exit_for(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kUsage;
    case grpc::StatusCode::UNAVAILABLE:
      return kUnavailable;
    case grpc::StatusCode::NOT_FOUND:
      return kNotFound;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kTimeout;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return kRefused;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kUnauthorized;
    default:
      return kFailed;
  }
}

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// A metadata value must be printable ASCII (gRPC refuses the call otherwise, with a message
// that does not name the token).
bool printable_ascii(const std::string& s) {
  for (const char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::string trim(std::string s) {
  const auto ws = " \t\r\n";
  s.erase(s.find_last_not_of(ws) + 1);
  s.erase(0, s.find_first_not_of(ws));
  return s;
}

}  // namespace

std::expected<std::string, std::string> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void add_global_options(CLI::App& app, GlobalOptions& o) {
  o.server = env_or("XBAR_SERVER", env_or("XBAR_ADDR", "127.0.0.1:50051"));
  const std::string conn = "Connection (any command, before or after it)";
  app.add_option("--server,--addr", o.server,
                 "xbard address: HOST:PORT or unix:/path/to/socket (default $XBAR_SERVER, "
                 "$XBAR_ADDR or 127.0.0.1:50051)")
      ->group(conn);
  app.add_option("--token", o.token,
                 "bearer token sent as 'authorization: Bearer TOKEN' on every call "
                 "(default $XBAR_TOKEN)")
      ->group(conn);
  app.add_option("--token-file", o.token_file,
                 "read the token from FILE (surrounding whitespace dropped); keeps it out of ps")
      ->group(conn);
  app.add_flag("--tls", o.tls, "TLS, server verified against the system's CA roots")->group(conn);
  app.add_option("--tls-ca", o.tls_ca, "TLS: PEM CA bundle to verify xbard's certificate with")
      ->group(conn);
  app.add_option("--tls-cert", o.tls_cert, "TLS: PEM client certificate (mTLS; with --tls-key)")
      ->group(conn);
  app.add_option("--tls-key", o.tls_key, "TLS: PEM private key of --tls-cert")->group(conn);
  app.add_option("--tls-server-name", o.tls_server_name,
                 "TLS: the name to check xbard's certificate for, when it is not the host in "
                 "--server (e.g. connecting by IP or unix socket)")
      ->group(conn);
  app.add_option("--timeout", o.timeout_s,
                 "seconds before a call is abandoned (default 30; 600 for program, scan, "
                 "deploy, deploy-model, stream and watch)")
      ->check(CLI::PositiveNumber)
      ->group(conn);
  const std::string out = "Output";
  app.add_flag("--json", o.json, "machine-readable: one JSON document on stdout")->group(out);
  app.add_flag("-q,--quiet", o.quiet, "no progress bars on stderr")->group(out);
}

std::expected<Session, std::string> Session::open(const GlobalOptions& o) {
  Session s;
  s.options_ = o;
  if (!o.token.empty()) {
    s.token_ = o.token;
  } else if (!o.token_file.empty()) {
    auto t = read_file_bytes(o.token_file);
    if (!t) return std::unexpected("--token-file " + t.error());
    s.token_ = trim(*t);
    if (s.token_.empty()) return std::unexpected("--token-file " + o.token_file + ": empty");
  } else {
    s.token_ = env_or("XBAR_TOKEN", "");
  }
  if (!printable_ascii(s.token_))
    return std::unexpected("the token must be printable ASCII (no newlines or control bytes)");

  s.tls_ = o.tls || !o.tls_ca.empty() || !o.tls_cert.empty() || !o.tls_key.empty() ||
           !o.tls_server_name.empty();
  if (o.tls_cert.empty() != o.tls_key.empty())
    return std::unexpected(
        "--tls-cert and --tls-key go together (the client certificate for mTLS)");
  std::shared_ptr<grpc::ChannelCredentials> creds;
  grpc::ChannelArguments args;
  if (s.tls_) {
    grpc::SslCredentialsOptions ssl;
    const std::pair<const std::string*, std::string*> files[] = {
        {&o.tls_ca, &ssl.pem_root_certs},
        {&o.tls_cert, &ssl.pem_cert_chain},
        {&o.tls_key, &ssl.pem_private_key}};
    const char* names[] = {"--tls-ca", "--tls-cert", "--tls-key"};
    for (size_t i = 0; i < 3; ++i) {
      if (files[i].first->empty()) continue;
      auto pem = read_file_bytes(*files[i].first);
      if (!pem) return std::unexpected(std::string(names[i]) + " " + pem.error());
      if (pem->find("-----BEGIN") == std::string::npos)
        return std::unexpected(fmt::format("{} {}: not a PEM file", names[i], *files[i].first));
      *files[i].second = std::move(*pem);
    }
    creds = grpc::SslCredentials(ssl);
    if (!o.tls_server_name.empty()) args.SetSslTargetNameOverride(o.tls_server_name);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  s.channel_ = grpc::CreateCustomChannel(o.server, creds, args);
  return s;
}

std::unique_ptr<grpc::ClientContext> Session::context(double long_default_s) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  const double t =
      long_default_s > 0 && !options_.timeout_given ? long_default_s : options_.timeout_s;
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(t * 1000)));
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  return ctx;
}

int Session::fail(const grpc::Status& s) const {
  std::cerr << "xbarctl: " << s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      // A channel that is READY reached xbard: the UNAVAILABLE is xbard's own (the board
      // restarted, was unplugged, ...), and its message says what to do.
      if (channel_->GetState(false) != GRPC_CHANNEL_READY) {
        std::cerr << " (is xbard running at " << options_.server
                  << (tls_ ? ", with TLS? check --tls-ca and --tls-server-name"
                           : "? if it serves TLS, give --tls-ca")
                  << ")";
      }
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      std::cerr << (token_.empty() ? " (xbard wants a token: --token, --token-file or XBAR_TOKEN)"
                                   : " (xbard refused the token)");
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      std::cerr << " (the call's deadline ran out; --timeout S gives it longer)";
      break;
    default:
      break;
  }
  std::cerr << "\n";
  return exit_for(s);
}

std::string footer_with(const std::string& examples) {
  return examples +
         "\nGlobal options (--server, --token, --tls-*, --json, --quiet, --timeout) go before or\n"
         "after the command. Exit codes: xbarctl --help. All commands: docs/xbarctl.md.";
}

}  // namespace xbar::client
