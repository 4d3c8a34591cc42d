#include "xbar/drivers/socket_transport.h"

#include <fmt/format.h>

#include <cstring>

#include "xbar/base/host_port.h"
#include "xbar/drivers/transport_registry.h"
#include "xbar/wire/frame.h"

namespace xbar {

namespace asio = boost::asio;

namespace {

Error socket_error(const std::string& address, const boost::system::error_code& ec,
                   std::string_view what) {
  if (ec == asio::error::connection_refused || ec == asio::error::not_found ||
      ec == boost::system::errc::no_such_file_or_directory) {
    return {ErrorCode::kUnavailable,
            fmt::format("{}: {} ({}): is xbar-fwsim running there?", address, what, ec.message())};
  }
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe) {
    return {ErrorCode::kUnavailable,
            fmt::format("{}: board closed the connection during {}", address, what)};
  }
  if (ec == asio::error::timed_out || ec == asio::error::operation_aborted) {
    return {ErrorCode::kTimeout, fmt::format("{}: {} timed out", address, what)};
  }
  if (ec == boost::system::errc::permission_denied) {
    return {ErrorCode::kPermissionDenied, fmt::format("{}: {}: permission denied", address, what)};
  }
  return {ErrorCode::kUnavailable, fmt::format("{}: {}: {}", address, what, ec.message())};
}

}  // namespace

template <typename Op>
boost::system::error_code SocketTransport::run_with_deadline(Op&& start,
                                                             std::chrono::milliseconds timeout) {
  boost::system::error_code result = asio::error::would_block;
  io_.restart();
  start([&](const boost::system::error_code& ec, size_t /*n*/) { result = ec; });
  io_.run_for(timeout);
  if (result == asio::error::would_block) {
    // Deadline passed: cancel and let the handler run so no operation outlives this call.
    if (tcp_) tcp_->cancel();
    if (unix_) unix_->cancel();
    io_.restart();
    io_.run();
    return asio::error::timed_out;
  }
  return result;
}

Result<std::unique_ptr<SocketTransport>> SocketTransport::connect(
    const std::string& address, std::chrono::milliseconds timeout) {
  std::unique_ptr<SocketTransport> t(new SocketTransport());
  t->address_ = address;
  t->connect_timeout_ = timeout;
  if (address.starts_with("tcp:")) {
    t->kind_ = "tcp";
  } else if (address.starts_with("unix:")) {
    t->kind_ = "unix";
  } else {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("board URI '{}': expected tcp:HOST:PORT or unix:PATH", address));
  }
  if (auto r = t->open_socket(); !r) return std::unexpected(r.error());
  return t;
}

Result<void> SocketTransport::open_socket() {
  boost::system::error_code ec;
  if (kind_ == "tcp") {
    auto hp = parse_host_port(std::string_view(address_).substr(4));
    if (!hp || hp->host.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("board URI '{}': expected tcp:HOST:PORT{}", address_,
                                    hp ? "" : " (" + hp.error() + ")"));
    }
    asio::ip::tcp::resolver resolver(io_);
    auto endpoints = resolver.resolve(hp->host, std::to_string(hp->port), ec);
    if (ec) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("board URI '{}': cannot resolve: {}", address_, ec.message()));
    }
    tcp_ = std::make_unique<asio::ip::tcp::socket>(io_);
    ec = run_with_deadline(
        [&](auto handler) {
          asio::async_connect(
              *tcp_, endpoints,
              [handler](const boost::system::error_code& e, const auto&) { handler(e, 0); });
        },
        connect_timeout_);
    if (!ec) tcp_->set_option(asio::ip::tcp::no_delay(true));
  } else {
    unix_ = std::make_unique<asio::local::stream_protocol::socket>(io_);
    (void)unix_->connect(asio::local::stream_protocol::endpoint(address_.substr(5)), ec);
  }
  if (ec) return std::unexpected(socket_error(address_, ec, "connect"));
  return {};
}

Result<void> SocketTransport::reopen() {
  close();
  rx_.clear();  // a partial frame of the old connection is worthless
  return open_socket();
}

void SocketTransport::close() {
  boost::system::error_code ec;
  if (tcp_) (void)tcp_->close(ec);  // errors on close are of no use to anyone here
  if (unix_) (void)unix_->close(ec);
  tcp_.reset();
  unix_.reset();
}

SocketTransport::~SocketTransport() { close(); }
Result<void> SocketTransport::send(std::span<const uint8_t> frame) {
  if (!tcp_ && !unix_) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("{}: not connected (the board went away)", address_));
  }
  auto ec = run_with_deadline(
      [&](auto handler) {
        if (tcp_)
          asio::async_write(*tcp_, asio::buffer(frame.data(), frame.size()), handler);
        else
          asio::async_write(*unix_, asio::buffer(frame.data(), frame.size()), handler);
      },
      std::chrono::milliseconds(5000));
  if (ec) return std::unexpected(socket_error(address_, ec, "send"));
  return {};
}

Result<std::vector<uint8_t>> SocketTransport::receive(std::chrono::milliseconds timeout) {
  if (!tcp_ && !unix_) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("{}: not connected (the board went away)", address_));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (rx_.size() >= wire::kHeaderSize) {
      const uint32_t length = wire::announced_length(rx_);
      if (length > wire::kMaxPayload) {
        rx_.clear();
        return make_error(ErrorCode::kProtocol,
                          fmt::format("{}: reply announces {} payload bytes (> {})", address_,
                                      length, wire::kMaxPayload));
      }
      const size_t total = wire::kHeaderSize + length;
      if (rx_.size() >= total) {
        std::vector<uint8_t> frame(rx_.begin(), rx_.begin() + static_cast<ptrdiff_t>(total));
        rx_.erase(rx_.begin(), rx_.begin() + static_cast<ptrdiff_t>(total));
        return frame;
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return make_error(ErrorCode::kTimeout,
                        fmt::format("{}: no reply within {} ms", address_, timeout.count()));
    }
    uint8_t chunk[16384];
    size_t got = 0;
    auto ec = run_with_deadline(
        [&](auto handler) {
          auto h = [&got, handler](const boost::system::error_code& e, size_t n) {
            got = n;
            handler(e, n);
          };
          if (tcp_)
            tcp_->async_read_some(asio::buffer(chunk), h);
          else
            unix_->async_read_some(asio::buffer(chunk), h);
        },
        left);
    rx_.insert(rx_.end(), chunk, chunk + got);
    if (ec == asio::error::timed_out) continue;  // loop re-checks the deadline
    if (ec) return std::unexpected(socket_error(address_, ec, "receive"));
  }
}

namespace {

Result<std::unique_ptr<Transport>> open_socket_uri(const std::string& uri) {
  auto t = SocketTransport::connect(uri);
  if (!t) return std::unexpected(t.error());
  return std::unique_ptr<Transport>(std::move(*t));
}

}  // namespace

XBAR_REGISTER_TRANSPORT(tcp, "tcp", "tcp:HOST:PORT", open_socket_uri);
XBAR_REGISTER_TRANSPORT(unix, "unix", "unix:PATH", open_socket_uri);

}  // namespace xbar
