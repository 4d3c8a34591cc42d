#include "socket_server.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <stdexcept>

#include "xbar/base/host_port.h"
#include "xbar/wire/frame.h"

namespace xbar::twin {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

SocketServer::SocketServer(asio::io_context& io, Firmware& fw, const std::string& listen)
    : io_(io), fw_(fw) {
  if (listen.starts_with("tcp:")) {
    auto hp = parse_host_port(std::string_view(listen).substr(4));
    if (!hp) throw std::runtime_error("listen tcp:" + hp.error());
    asio::ip::tcp::endpoint ep(asio::ip::make_address(hp->host.empty() ? "0.0.0.0" : hp->host),
                               hp->port);
    tcp_ = std::make_unique<asio::ip::tcp::acceptor>(io_, ep);
    const auto local = tcp_->local_endpoint();
    bound_ = "tcp:" + local.address().to_string() + ":" + std::to_string(local.port());
    asio::co_spawn(io_, accept_tcp(), asio::detached);
  } else if (listen.starts_with("unix:")) {
    const std::string path = listen.substr(5);
    std::error_code ec;
    std::filesystem::remove(path, ec);  // a stale socket file from a killed run
    unix_ = std::make_unique<asio::local::stream_protocol::acceptor>(
        io_, asio::local::stream_protocol::endpoint(path));
    bound_ = listen;
    asio::co_spawn(io_, accept_unix(), asio::detached);
  } else {
    throw std::runtime_error("listen '" + listen + "': expected tcp:HOST:PORT or unix:PATH");
  }
}

awaitable<void> SocketServer::accept_tcp() {
  for (;;) {
    boost::system::error_code ec;
    auto sock = co_await tcp_->async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      spdlog::warn("accept: {}", ec.message());
      continue;
    }
    sock.set_option(asio::ip::tcp::no_delay(true));
    std::string peer = sock.remote_endpoint().address().to_string() + ":" +
                       std::to_string(sock.remote_endpoint().port());
    asio::co_spawn(io_, serve(std::move(sock), std::move(peer)), asio::detached);
  }
}

awaitable<void> SocketServer::accept_unix() {
  for (;;) {
    boost::system::error_code ec;
    auto sock = co_await unix_->async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      spdlog::warn("accept: {}", ec.message());
      continue;
    }
    asio::co_spawn(io_, serve(std::move(sock), std::string("unix peer")), asio::detached);
  }
}

template <typename Socket>
awaitable<void> SocketServer::serve(Socket socket, std::string peer) {
  if (!fw_.present()) {
    // Unplugged (SIM_LINK unplug): nobody answers until the board is back.
    spdlog::info("connection from {} dropped: the board is unplugged", peer);
    co_return;
  }
  const Firmware::SessionId session = fw_.open_session();
  spdlog::info("session {} opened ({})", session, peer);
  std::vector<uint8_t> buf(wire::kMaxFrame);
  for (;;) {
    boost::system::error_code ec;
    co_await asio::async_read(socket, asio::buffer(buf.data(), wire::kHeaderSize),
                              asio::redirect_error(use_awaitable, ec));
    if (ec) break;
    auto hdr = wire::decode_header(std::span(buf.data(), wire::kHeaderSize));
    size_t total = wire::kHeaderSize;
    const bool resync_impossible = !hdr && (hdr.error() == wire::FrameError::kBadMagic ||
                                            hdr.error() == wire::FrameError::kBadVersion ||
                                            hdr.error() == wire::FrameError::kOversize);
    if (!resync_impossible) {
      uint32_t length = 0;
      std::memcpy(&length, buf.data() + 12, 4);
      total += length;
      co_await asio::async_read(socket, asio::buffer(buf.data() + wire::kHeaderSize, length),
                                asio::redirect_error(use_awaitable, ec));
      if (ec) break;
    }
    // The firmware answers every frame, malformed ones with an error reply; the link (SIM_LINK)
    // may lose, repeat or hold back replies.
    for (const std::vector<uint8_t>& reply : fw_.exchange(session, std::span(buf.data(), total))) {
      co_await asio::async_write(socket, asio::buffer(reply),
                                 asio::redirect_error(use_awaitable, ec));
      if (ec) break;
    }
    if (ec) break;
    if (fw_.link_cut(session)) {
      spdlog::warn("session {}: the board was unplugged (SIM_LINK); closing the connection",
                   session);
      break;
    }
    if (resync_impossible) {
      // A byte stream cannot find the next frame boundary after a bad header: drop the link.
      spdlog::warn("session {}: {}; closing the connection", session,
                   wire::frame_error_name(hdr.error()));
      break;
    }
  }
  fw_.close_session(session);
  spdlog::info("session {} closed", session);
}

}  // namespace xbar::twin
