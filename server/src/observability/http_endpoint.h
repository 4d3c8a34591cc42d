// xbard's plain-HTTP side door: Prometheus scrapes and health probes (Boost.Beast, HTTP/1.1).
//
//   GET|HEAD /metrics        200 text/plain; version=0.0.4; charset=utf-8, Registry::render()
//   GET|HEAD /healthz/live   200 "live"
//   GET|HEAD /healthz/ready  200 "ready", or 503 "not ready: <reason>" from the readiness callback
//   another path             404;  another method on these paths: 405 (Allow: GET, HEAD)
//
// A query string is ignored. Keep-alive is honoured. One thread serves every connection
// asynchronously: each read of a request (including the idle wait for the next one on a
// kept-alive connection) and each write has its own deadline, so an idle or slow client only
// holds its own connection. Oversized requests get 431 or 413 and the connection is closed;
// malformed ones 400.
#pragma once

#include <chrono>
#include <cstddef>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace xbar::server {

class Registry;

struct HttpEndpointOptions {
  /// Deadline for reading one request (from the end of the previous response on a kept-alive
  /// connection) and for writing one response; past it the connection is closed.
  std::chrono::milliseconds timeout{10000};
  size_t max_header_bytes = 8 * 1024;  // request line + headers; 431 beyond
  size_t max_body_bytes = 8 * 1024;    // 413 beyond
  size_t max_connections = 64;         // more are accepted and closed at once
};

class HttpEndpoint {
 public:
  /// Called for each /healthz/ready request on the endpoint's thread: {ready, reason if not}.
  /// Must be thread-safe and quick; an exception counts as not ready. Empty: always ready.
  using Readiness = std::function<std::pair<bool, std::string>()>;

  /// `registry` is borrowed and must outlive the endpoint.
  explicit HttpEndpoint(const Registry& registry, Readiness readiness = {},
                        HttpEndpointOptions options = {});
  ~HttpEndpoint();  // stop()
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  /// Binds "HOST:PORT" ("127.0.0.1:9464", "[::1]:0", "localhost:9464", ":9464" for every IPv4
  /// interface; port 0 = an ephemeral port), starts the serving thread and returns the bound
  /// port. Fails if already started or the address cannot be bound.
  std::expected<int, std::string> start(const std::string& host_port);
  /// Closes the listener and every connection (requests in flight are dropped) and joins the
  /// thread. Idempotent; the endpoint can be started again. Not from the readiness callback.
  void stop();
  /// The bound port while started, else 0.
  int port() const;

 private:
  struct Impl;
  const Registry& registry_;
  Readiness readiness_;
  HttpEndpointOptions options_;
  mutable std::mutex mu_;  // start/stop
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace xbar::server
