// Host side of protocol v1: builds frames, numbers them, matches replies by sequence number
// and retries a lost or corrupted exchange with the SAME sequence number, so the board answers
// the retry from its reply cache instead of executing it twice (docs/protocol.md §5).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/transport.h"
#include "xbar/wire/frame.h"

namespace xbar {

struct ProtocolOptions {
  std::chrono::milliseconds timeout{2000};  // per attempt
  int max_attempts = 5;                     // first try + retries with the same seq
  /// How long a request whose link was lost (unplug, closed socket) waits for the board to
  /// come back before it fails with kUnavailable; 0 never re-opens. A request that finds the
  /// link already down tries once.
  std::chrono::milliseconds reopen_window{5000};
};

/// Thread-safe: calls are serialised; one request is in flight at a time. The counters below
/// may be read from any thread at any time (e.g. a daemon's watchdog noticing a restart).
class ProtocolClient {
 public:
  ProtocolClient(std::unique_ptr<Transport> transport, ProtocolOptions options = {});

  /// One request/reply exchange. Returns the reply payload; an error reply from the board
  /// becomes an Error whose message is the board's own text.
  /// `extra_time` extends the per-attempt timeout for requests the board takes long to execute
  /// (WAIT, long pulse batches).
  Result<std::vector<uint8_t>> call(wire::Opcode op, std::span<const uint8_t> payload,
                                    std::chrono::milliseconds extra_time = {});

  const Transport& transport() const { return *transport_; }
  /// Number of retransmissions so far (for metrics and tests).
  uint64_t retransmissions() const { return retransmissions_; }
  /// Board restarts seen (RESTARTED replies) so far.
  uint64_t restarts() const { return restarts_; }
  /// Times the link was lost and the same board re-opened.
  uint64_t reopens() const { return reopens_; }
  /// Changes whenever state the board held may be gone (a restart, a re-opened link): loop
  /// programs loaded before must be loaded again.
  uint64_t epoch() const { return restarts_ + reopens_; }
  /// False after the link was lost until it is re-opened.
  bool link_up() const { return link_up_; }

 private:
  /// Re-opens the link and checks with INFO that the same board answers; tries until
  /// `window` has passed (at least once).
  Result<void> reconnect(std::chrono::milliseconds window);
  /// One INFO exchange on a fresh link: the serial of the board that answers.
  Result<std::string> probe_serial();

  struct Exchange;  // one call's request and what its attempts saw (protocol_client.cc)
  /// What call() does after one receive: read the next frame (a stale reply), send the request
  /// again, or end with `result`.
  struct Next {
    enum Kind { kReadAgain, kResend, kReturn } kind = kResend;
    Result<std::vector<uint8_t>> result;
  };
  /// The link was lost (`lost`): waits for the same board within the reopen window; kUnavailable
  /// naming what happened otherwise.
  Result<void> recover(const Error& lost);
  Next on_receive_error(Exchange& x, const Error& e);
  Next on_reply(Exchange& x, wire::Frame& reply);
  Next on_error_reply(Exchange& x, std::span<const uint8_t> payload);

  std::mutex mu_;
  std::unique_ptr<Transport> transport_;
  ProtocolOptions options_;
  // Starts at a random value: a board keeps its reply cache across host restarts (USB has no
  // session), so a new process must not reuse the previous one's recent sequence numbers.
  uint32_t next_seq_;
  uint64_t retransmissions_ = 0;
  std::atomic<uint64_t> restarts_{0};
  bool ack_restart_ = false;  // a RESTARTED reply seen; the next request acknowledges it
  std::atomic<bool> link_up_{true};
  std::atomic<uint64_t> reopens_{0};
  std::string serial_;  // from the first INFO reply: a re-opened link must reach this board
};

}  // namespace xbar
