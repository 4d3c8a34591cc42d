// A transport moves whole protocol frames between host and board. It knows nothing of
// opcodes; ProtocolClient builds frames, matches replies and retries.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xbar/base/error.h"

namespace xbar {

/// Thread model: one thread at a time (ProtocolClient serialises callers).
class Transport {
 public:
  virtual ~Transport() = default;

  /// Sends one complete frame (header + payload).
  virtual Result<void> send(std::span<const uint8_t> frame) = 0;

  /// Receives the next complete frame from the board, or kTimeout after `timeout`.
  /// Returns the raw bytes; ProtocolClient checks CRC and sequence number.
  virtual Result<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) = 0;

  /// Human-readable description of the link, e.g. "usb 1-2 (serial XB000123)".
  virtual std::string describe() const = 0;

  /// Backend kind as shown to users: "sim", "tcp", "unix" or "usb".
  virtual std::string kind() const = 0;

  /// After kUnavailable (unplugged, connection closed): drops the old link and opens the same
  /// board address again (USB: the same serial; a socket: the same address). Fails with
  /// kUnavailable/kNotFound while the board is not back. Whether it is the same board is
  /// checked above (ProtocolClient compares the INFO serial).
  virtual Result<void> reopen() {
    return make_error(ErrorCode::kUnsupported, kind() + ": this link cannot be re-opened");
  }
};

}  // namespace xbar
