// Protocol frames over a TCP or Unix stream socket (an xbar-fwsim process). Boost.Asio with
// deadlines; a partial frame left by a timeout is kept and completed by the next receive().
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded
#include <boost/asio.hpp>
// clang-format on
#include <memory>
#include <string>
#include <vector>

#include "xbar/drivers/transport.h"

namespace xbar {

class SocketTransport : public Transport {
 public:
  /// `address` is "tcp:HOST:PORT" or "unix:PATH".
  static Result<std::unique_ptr<SocketTransport>> connect(
      const std::string& address,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~SocketTransport() override;

  Result<void> send(std::span<const uint8_t> frame) override;
  Result<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) override;
  std::string describe() const override { return address_; }
  std::string kind() const override { return kind_; }
  /// Closes the connection and connects to the same address again.
  Result<void> reopen() override;

 private:
  SocketTransport() = default;
  Result<void> open_socket();
  void close();
  template <typename Op>
  boost::system::error_code run_with_deadline(Op&& start, std::chrono::milliseconds timeout);

  boost::asio::io_context io_;
  std::unique_ptr<boost::asio::ip::tcp::socket> tcp_;
  std::unique_ptr<boost::asio::local::stream_protocol::socket> unix_;
  std::string address_;
  std::string kind_;
  std::chrono::milliseconds connect_timeout_{2000};
  std::vector<uint8_t> rx_;  // bytes received but not yet returned as a frame
};

}  // namespace xbar
