// Serves the twin's A0 personality (a0_board.h) on a pseudo-terminal, so that a host talks to
// it through a real tty as it would to the board's USB-CDC port: `xbar-fwsim --a0 --pty LINK`
// creates the pty and a symlink LINK to its slave end, and `xbard --board a0:LINK` opens it.
//
// The server keeps the slave end open itself, so a host closing and re-opening the port does
// not hang the master up. On exit it removes LINK. Killed with SIGKILL, it leaves LINK dangling:
// the board has gone away, and opening LINK fails until a new twin takes its place.
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded
#include <boost/asio.hpp>
// clang-format on
#include <cstdint>
#include <string>

#include "xbar/twin/a0_board.h"

namespace xbar::twin {

/// The test bench's faults on the A0 link (the board side of a flaky USB-CDC port).
struct A0LinkFaults {
  uint64_t drop_in_byte_every = 0;  // drop every Nth byte the host sends (0: none)
  uint64_t drop_ack_every = 0;      // drop every Nth one-byte acknowledgement (0: none)
};

/// \context The io_context's thread only.
class PtyServer {
 public:
  /// Creates the pty and LINK. Throws std::runtime_error naming what failed (setup only).
  PtyServer(boost::asio::io_context& io, A0Board& board, std::string link, A0LinkFaults faults);
  ~PtyServer();
  PtyServer(const PtyServer&) = delete;
  PtyServer& operator=(const PtyServer&) = delete;

  /// The slave's device path (/dev/pts/N).
  const std::string& slave_path() const { return slave_path_; }

 private:
  boost::asio::awaitable<void> serve();
  std::vector<uint8_t> inbound(std::span<const uint8_t> bytes);
  std::vector<uint8_t> outbound(std::vector<uint8_t> reply);

  A0Board& board_;
  std::string link_;
  std::string slave_path_;
  int slave_fd_ = -1;
  boost::asio::posix::stream_descriptor master_;
  A0LinkFaults faults_;
  uint64_t bytes_in_ = 0, acks_out_ = 0;
};

}  // namespace xbar::twin
