#include "pty_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace xbar::twin {

namespace {

std::runtime_error sys_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

// The master end, with the slave in raw mode: no echo, no line editing, no CR/LF mapping, so
// that every byte the host writes arrives as written (the A0's commands are binary-safe text).
int open_master(std::string& slave_path, int& slave_fd) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) throw sys_error("posix_openpt");
  if (grantpt(master) != 0 || unlockpt(master) != 0) {
    ::close(master);
    throw sys_error("grantpt/unlockpt");
  }
  const char* name = ptsname(master);
  if (name == nullptr) {
    ::close(master);
    throw sys_error("ptsname");
  }
  slave_path = name;
  slave_fd = ::open(name, O_RDWR | O_NOCTTY);
  if (slave_fd < 0) {
    ::close(master);
    throw sys_error("open " + slave_path);
  }
  termios t{};
  tcgetattr(slave_fd, &t);
  cfmakeraw(&t);
  tcsetattr(slave_fd, TCSANOW, &t);
  return master;
}

}  // namespace

PtyServer::PtyServer(boost::asio::io_context& io, A0Board& board, std::string link,
                     A0LinkFaults faults)
    : board_(board),
      link_(std::move(link)),
      master_(io, open_master(slave_path_, slave_fd_)),
      faults_(faults) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::symlink_status(link_, ec);
  if (!ec && fs::exists(st) && !fs::is_symlink(st)) {
    throw std::runtime_error("--pty " + link_ + ": exists and is not a symlink; not replaced");
  }
  fs::remove(link_, ec);  // a stale link from a twin that was killed
  fs::create_symlink(slave_path_, link_, ec);
  if (ec) throw std::runtime_error("--pty " + link_ + ": " + ec.message());
  boost::asio::co_spawn(io, serve(), boost::asio::detached);
}

PtyServer::~PtyServer() {
  std::error_code ec;
  std::filesystem::remove(link_, ec);
  if (slave_fd_ >= 0) ::close(slave_fd_);
}

std::vector<uint8_t> PtyServer::inbound(std::span<const uint8_t> bytes) {
  if (faults_.drop_in_byte_every == 0) return board_.feed(bytes);
  std::vector<uint8_t> kept;
  for (uint8_t b : bytes) {
    if (++bytes_in_ % faults_.drop_in_byte_every != 0) kept.push_back(b);
  }
  return board_.feed(kept);
}

std::vector<uint8_t> PtyServer::outbound(std::vector<uint8_t> reply) {
  // Acks are single bytes; a reply of several commands may hold more than one.
  if (faults_.drop_ack_every == 0 || reply.size() != 1 || reply[0] != a0::kAck) return reply;
  if (++acks_out_ % faults_.drop_ack_every == 0) {
    spdlog::info("a0 link fault: ack {} dropped", acks_out_);
    return {};
  }
  return reply;
}

boost::asio::awaitable<void> PtyServer::serve() {
  std::vector<uint8_t> buf(4096);
  for (;;) {
    boost::system::error_code ec;
    const size_t n = co_await master_.async_read_some(
        boost::asio::buffer(buf), boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec) {
      spdlog::error("pty {}: read: {}", slave_path_, ec.message());
      co_return;
    }
    std::vector<uint8_t> reply = outbound(inbound(std::span(buf).first(n)));
    if (reply.empty()) continue;
    co_await boost::asio::async_write(master_, boost::asio::buffer(reply),
                                      boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec) spdlog::warn("pty {}: write: {}", slave_path_, ec.message());
  }
}

}  // namespace xbar::twin
