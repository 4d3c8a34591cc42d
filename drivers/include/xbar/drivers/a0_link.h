// The byte link to an A0 board (docs/a0.md): its USB-CDC serial port. The A0's replies have no
// framing, so the link's one read is "exactly n bytes by a deadline": fewer is an error that
// carries how many came, and those bytes are never returned as data.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "xbar/base/error.h"

namespace xbar {

/// \context One thread at a time (the transport's caller, serialised by ProtocolClient).
class A0Link {
 public:
  virtual ~A0Link() = default;
  /// Writes all of `bytes`. kUnavailable when the port is gone.
  virtual Result<void> write(std::span<const uint8_t> bytes) = 0;
  /// Exactly `n` bytes within `timeout`: kTimeout (with the count that came) otherwise,
  /// kUnavailable when the port is gone.
  virtual Result<std::vector<uint8_t>> read_exact(size_t n, std::chrono::milliseconds timeout) = 0;
  /// Discards whatever the board sent that nobody read, waiting `quiet` for stragglers.
  virtual void discard_input(std::chrono::milliseconds quiet) = 0;
  /// Closes and opens the port again (after the board went away).
  virtual Result<void> reopen() = 0;
  /// The port as users name it, e.g. "/dev/ttyACM0".
  virtual std::string name() const = 0;
};

/// A serial port through Boost.Asio's serial_port, in raw mode (cfmakeraw: no echo, no line
/// editing, no CR/LF mapping; 8N1, no flow control). The baud rate is irrelevant on USB-CDC.
/// kNotFound for a path that does not exist, kPermissionDenied without access (the dialout
/// group), kUnavailable for anything else.
Result<std::unique_ptr<A0Link>> open_serial_link(const std::string& path);

}  // namespace xbar
