#include "observability/http_endpoint.h"

// clang-format off
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_set>

#include "observability/metrics.h"
#include "xbar/base/host_port.h"

namespace xbar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

class Session;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";

Response text_response(http::status status, unsigned version, std::string body,
                       std::string_view content_type = kTextContentType) {
  Response res{status, version};
  res.set(http::field::server, "xbard");
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.body() = std::move(body);
  return res;
}

// The listener, its connections and the io thread.
struct Server {
  using Readiness = HttpEndpoint::Readiness;
  Server(const Registry& reg, const Readiness& ready, const HttpEndpointOptions& opt)
      : registry(reg), readiness(ready), options(opt) {}

  void do_accept();
  void run() noexcept;
  Response handle(const Request& req) const;

  const Registry& registry;
  const Readiness& readiness;
  const HttpEndpointOptions& options;

  // Touched only on the io thread (and after it has been joined). Declared before the
  // io_context so that sessions destroyed with it can still deregister.
  std::unordered_set<Session*> sessions;
  bool stopping = false;

  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_retry{ioc};
  std::string address;  // as bound, for the log
  std::thread thread;
};

// One connection: read a request, write its response, repeat while kept alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server& server)
      : server_(server),
        stream_(std::move(socket)),
        buffer_(server.options.max_header_bytes + server.options.max_body_bytes) {
    server_.sessions.insert(this);
  }
  ~Session() { server_.sessions.erase(this); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() { do_read(); }

  // Called by stop(): pending operations complete with operation_aborted and are not renewed.
  void cancel() { stream_.close(); }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options.max_header_bytes));
    parser_->body_limit(server_.options.max_body_bytes);
    stream_.expires_after(server_.options.timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (server_.stopping || ec == asio::error::operation_aborted) return;
    if (ec == http::error::end_of_stream) return shutdown();
    if (ec == beast::error::timeout) {
      spdlog::debug("metrics endpoint: closing an idle connection");
      return;  // the destructor closes the socket
    }
    if (ec == http::error::header_limit) {
      return write_error(http::status::request_header_fields_too_large, "headers too large");
    }
    if (ec == http::error::body_limit) {
      return write_error(http::status::payload_too_large, "request body too large");
    }
    if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
      return write_error(http::status::bad_request, "bad request: " + ec.message());
    }
    if (ec || !parser_) {
      spdlog::debug("metrics endpoint: read: {}", ec.message());
      return;
    }
    const Request& req = parser_->get();
    res_ = server_.handle(req);
    res_.keep_alive(req.keep_alive());
    do_write();
  }

  // After a malformed or oversized request the stream cannot be trusted: answer and close.
  void write_error(http::status status, std::string message) {
    res_ = text_response(status, 11, std::move(message));
    res_.keep_alive(false);
    res_.prepare_payload();
    do_write();
  }

  void do_write() {
    stream_.expires_after(server_.options.timeout);
    http::async_write(
        stream_, res_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    if (server_.stopping || ec) return;
    if (!res_.keep_alive()) return shutdown();
    res_ = {};
    do_read();
  }

  void shutdown() {
    beast::error_code ec;
    // NOLINTNEXTLINE(bugprone-unused-return-value): the error is in ec, and of no use here
    (void)stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  Server& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Response res_;
};

void Server::do_accept() {
  acceptor.async_accept(ioc, [this](beast::error_code ec, tcp::socket socket) {
    if (stopping || ec == asio::error::operation_aborted) return;
    if (ec) {
      // E.g. out of file descriptors: try again shortly rather than spin.
      spdlog::warn("metrics endpoint: accept: {}", ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && !stopping) do_accept();
      });
      return;
    }
    if (sessions.size() >= options.max_connections) {
      spdlog::warn("metrics endpoint: {} connections open, refusing one more", sessions.size());
      beast::error_code close_ec;
      (void)socket.close(close_ec);  // NOLINT(bugprone-unused-return-value)
    } else {
      std::make_shared<Session>(std::move(socket), *this)->start();
    }
    do_accept();
  });
}

// The thread boundary: nothing escapes.
void Server::run() noexcept {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("metrics endpoint: {}", e.what());
    } catch (...) {
      spdlog::error("metrics endpoint: unknown exception");
    }
  }
}

Response Server::handle(const Request& req) const {
  std::string_view target(req.target().data(), req.target().size());
  target = target.substr(0, target.find('?'));
  const unsigned version = req.version();

  const bool head = req.method() == http::verb::head;
  Response res = [&] {
    const bool known =
        target == "/metrics" || target == "/healthz/live" || target == "/healthz/ready";
    if (!known) return text_response(http::status::not_found, version, "not found");
    if (req.method() != http::verb::get && !head) {
      Response r = text_response(http::status::method_not_allowed, version, "method not allowed");
      r.set(http::field::allow, "GET, HEAD");
      return r;
    }
    if (target == "/metrics") {
      try {
        return text_response(http::status::ok, version, registry.render(), kMetricsContentType);
      } catch (const std::exception& e) {
        spdlog::error("metrics endpoint: render: {}", e.what());
        return text_response(http::status::internal_server_error, version, "internal error");
      }
    }
    if (target == "/healthz/live") return text_response(http::status::ok, version, "live");
    std::pair<bool, std::string> ready{true, ""};
    try {
      if (readiness) ready = readiness();
    } catch (const std::exception& e) {
      ready = {false, fmt::format("readiness check failed: {}", e.what())};
    } catch (...) {
      ready = {false, "readiness check failed"};
    }
    return ready.first ? text_response(http::status::ok, version, "ready")
                       : text_response(http::status::service_unavailable, version,
                                       "not ready: " + ready.second);
  }();
  if (head) {
    // The length the GET would have, without the body.
    const std::size_t n = res.body().size();
    res.body().clear();
    res.content_length(n);
  } else {
    res.prepare_payload();
  }
  return res;
}

// "HOST:PORT", "[V6]:PORT", ":PORT" -> host (empty: any IPv4), port.
std::expected<std::pair<std::string, uint16_t>, std::string> listen_address(std::string_view s) {
  auto hp = xbar::parse_host_port(s);
  if (!hp) return std::unexpected(hp.error());
  return std::pair{hp->host.empty() ? std::string("0.0.0.0") : hp->host, hp->port};
}

}  // namespace

struct HttpEndpoint::Impl final : Server {
  using Server::Server;
};

HttpEndpoint::HttpEndpoint(const Registry& registry, Readiness readiness,
                           HttpEndpointOptions options)
    : registry_(registry), readiness_(std::move(readiness)), options_(options) {}

HttpEndpoint::~HttpEndpoint() { stop(); }

std::expected<int, std::string> HttpEndpoint::start(const std::string& host_port) {
  std::lock_guard lk(mu_);
  if (impl_) return std::unexpected(fmt::format("metrics endpoint already on port {}", port_));
  auto hp = listen_address(host_port);
  if (!hp) return std::unexpected("metrics endpoint " + hp.error());

  auto impl = std::make_unique<Impl>(registry_, readiness_, options_);
  beast::error_code ec;
  tcp::resolver resolver(impl->ioc);
  const auto endpoints =
      resolver.resolve(hp->first, std::to_string(hp->second),
                       tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) {
    return std::unexpected(
        fmt::format("metrics endpoint '{}': cannot resolve: {}", host_port, ec.message()));
  }
  bool bound = false;
  // Asio's error_code overloads also return the error_code: it is `e` here.
  // NOLINTBEGIN(bugprone-unused-return-value)
  for (const auto& entry : endpoints) {
    beast::error_code e;
    (void)impl->acceptor.open(entry.endpoint().protocol(), e);
    if (!e) (void)impl->acceptor.set_option(asio::socket_base::reuse_address(true), e);
    if (!e) (void)impl->acceptor.bind(entry.endpoint(), e);
    if (!e) (void)impl->acceptor.listen(asio::socket_base::max_listen_connections, e);
    if (!e) {
      bound = true;
      break;
    }
    ec = e;
    beast::error_code ignored;
    (void)impl->acceptor.close(ignored);
  }
  // NOLINTEND(bugprone-unused-return-value)
  if (!bound) {
    return std::unexpected(fmt::format("metrics endpoint '{}': cannot listen: {}", host_port,
                                       ec ? ec.message() : "no address"));
  }
  const tcp::endpoint local = impl->acceptor.local_endpoint(ec);
  if (ec) return std::unexpected(fmt::format("metrics endpoint '{}': {}", host_port, ec.message()));
  impl->address = local.address().is_v6()
                      ? fmt::format("[{}]:{}", local.address().to_string(), local.port())
                      : fmt::format("{}:{}", local.address().to_string(), local.port());
  impl->do_accept();
  try {
    impl->thread = std::thread([p = impl.get()] { p->run(); });
  } catch (const std::system_error& e) {
    return std::unexpected(fmt::format("metrics endpoint: cannot start its thread: {}", e.what()));
  }
  spdlog::info("metrics endpoint on http://{}/metrics", impl->address);
  port_ = local.port();
  impl_ = std::move(impl);
  return port_;
}

void HttpEndpoint::stop() {
  std::lock_guard lk(mu_);
  if (!impl_) return;
  Impl* p = impl_.get();
  asio::post(p->ioc, [p] {
    p->stopping = true;
    beast::error_code ec;
    (void)p->acceptor.close(ec);  // NOLINT(bugprone-unused-return-value)
    p->accept_retry.cancel();
    for (Session* s : p->sessions) s->cancel();
  });
  // Every pending operation now completes without renewing itself: run() runs out of work.
  p->thread.join();
  spdlog::info("metrics endpoint on {} stopped", p->address);
  impl_.reset();
  port_ = 0;
}

int HttpEndpoint::port() const {
  std::lock_guard lk(mu_);
  return port_;
}

}  // namespace xbar::server
