// clang-format off
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded
#include <boost/asio.hpp>
// clang-format on
#include <fmt/format.h>
#include <termios.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "xbar/drivers/a0_link.h"

namespace xbar {

namespace {

namespace asio = boost::asio;

Error port_error(const std::string& path, const boost::system::error_code& ec, const char* what) {
  ErrorCode code = ErrorCode::kUnavailable;
  if (ec == boost::system::errc::no_such_file_or_directory) code = ErrorCode::kNotFound;
  if (ec == boost::system::errc::permission_denied) code = ErrorCode::kPermissionDenied;
  return Error{code, fmt::format("a0 {}: {}: {}", path, what, ec.message())};
}

class SerialA0Link final : public A0Link {
 public:
  explicit SerialA0Link(std::string path) : path_(std::move(path)), port_(io_) {}

  Result<void> open() {
    boost::system::error_code ec;
    (void)port_.open(path_, ec);  // reported through ec
    if (ec) return std::unexpected(port_error(path_, ec, "open"));
    termios t{};
    const int fd = port_.native_handle();
    if (tcgetattr(fd, &t) != 0) {
      (void)port_.close(ec);  // the error above is the one to report
      return make_error(
          ErrorCode::kUnavailable,
          fmt::format("a0 {}: not a terminal (tcgetattr: {})", path_, std::strerror(errno)));
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= ~static_cast<tcflag_t>(CRTSCTS | CSTOPB);
    cfsetspeed(&t, B115200);
    if (tcsetattr(fd, TCSANOW, &t) != 0) {
      (void)port_.close(ec);  // the error above is the one to report
      return make_error(ErrorCode::kUnavailable,
                        fmt::format("a0 {}: tcsetattr: {}", path_, std::strerror(errno)));
    }
    tcflush(fd, TCIOFLUSH);
    return {};
  }

  Result<void> write(std::span<const uint8_t> bytes) override {
    boost::system::error_code ec;
    asio::write(port_, asio::buffer(bytes.data(), bytes.size()), ec);
    if (ec) return std::unexpected(port_error(path_, ec, "write"));
    return {};
  }

  Result<std::vector<uint8_t>> read_exact(size_t n, std::chrono::milliseconds timeout) override {
    std::vector<uint8_t> buf(n);
    size_t got = 0;
    boost::system::error_code ec;
    bool done = false;
    asio::async_read(port_, asio::buffer(buf), [&](const boost::system::error_code& e, size_t k) {
      ec = e;
      got = k;
      done = true;
    });
    io_.restart();
    io_.run_for(timeout);
    if (!done) {  // the deadline: cancel, and let the handler report what did come
      boost::system::error_code ignored;
      (void)port_.cancel(ignored);  // the handler reports the outcome
      io_.restart();
      io_.run();
      return make_error(ErrorCode::kTimeout, fmt::format("a0 {}: {} of {} reply bytes within {} ms",
                                                         path_, got, n, timeout.count()));
    }
    if (ec) return std::unexpected(port_error(path_, ec, "read"));
    return buf;
  }

  void discard_input(std::chrono::milliseconds quiet) override {
    for (int i = 0; i < 64; ++i) {  // bounded: a board streaming garbage cannot hold us here
      tcflush(port_.native_handle(), TCIFLUSH);
      auto r = read_exact(1, quiet);
      if (!r) return;
    }
  }

  Result<void> reopen() override {
    boost::system::error_code ec;
    (void)port_.close(ec);  // a port already gone closes with an error nobody needs
    return open();
  }

  std::string name() const override { return path_; }

 private:
  std::string path_;
  asio::io_context io_;
  asio::serial_port port_;
};

}  // namespace

Result<std::unique_ptr<A0Link>> open_serial_link(const std::string& path) {
  auto link = std::make_unique<SerialA0Link>(path);
  if (auto r = link->open(); !r) return std::unexpected(r.error());
  return std::unique_ptr<A0Link>(std::move(link));
}

}  // namespace xbar
