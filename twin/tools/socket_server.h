// Serves protocol v1 frames of one Firmware (one board) on a TCP or Unix stream socket.
// Framing on a stream: a 20-byte header, then header.length payload bytes (docs/protocol.md §6).
// Several clients may connect; each connection is one host session with its own reply cache,
// and the Firmware executes their requests one at a time, like a real board.
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded
#include <boost/asio.hpp>
// clang-format on
#include <string>

#include "xbar/twin/firmware.h"

namespace xbar::twin {

class SocketServer {
 public:
  /// `listen` is "tcp:HOST:PORT" (PORT 0 picks a free port) or "unix:PATH".
  /// Throws std::runtime_error on a bad address or a failed bind (setup only).
  SocketServer(boost::asio::io_context& io, Firmware& fw, const std::string& listen);

  /// The bound address in the same syntax, with the real port for tcp.
  std::string bound_address() const { return bound_; }

 private:
  boost::asio::awaitable<void> accept_tcp();
  boost::asio::awaitable<void> accept_unix();
  template <typename Socket>
  boost::asio::awaitable<void> serve(Socket socket, std::string peer);

  boost::asio::io_context& io_;
  Firmware& fw_;
  std::string bound_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> tcp_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> unix_;
};

}  // namespace xbar::twin
