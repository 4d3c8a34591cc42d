// Host side of protocol v1: builds frames, numbers them, matches replies by sequence number
// and retries a lost or corrupted exchange with the SAME sequence number, so the board answers
// the retry from its reply cache instead of executing it twice (docs/protocol.md §5).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "xbar/drivers/error.h"
#include "xbar/drivers/transport.h"
#include "xbar/wire/frame.h"

namespace xbar {

struct ProtocolOptions {
  std::chrono::milliseconds timeout{2000};  // per attempt
  int max_attempts = 3;                     // first try + retries with the same seq
};

/// Thread-safe: calls are serialised; one request is in flight at a time.
class ProtocolClient {
 public:
  ProtocolClient(std::unique_ptr<Transport> transport, ProtocolOptions options = {});

  /// One request/reply exchange. Returns the reply payload; an error reply from the board
  /// becomes an Error whose message is the board's own text.
  Result<std::vector<uint8_t>> call(wire::Opcode op, std::span<const uint8_t> payload);

  const Transport& transport() const { return *transport_; }
  /// Number of retransmissions so far (for metrics and tests).
  uint64_t retransmissions() const { return retransmissions_; }

 private:
  std::mutex mu_;
  std::unique_ptr<Transport> transport_;
  ProtocolOptions options_;
  uint32_t next_seq_ = 1;
  uint64_t retransmissions_ = 0;
};

}  // namespace xbar
