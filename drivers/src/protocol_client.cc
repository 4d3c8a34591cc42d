#include "xbar/drivers/protocol_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <thread>

#include "xbar/wire/messages.h"

namespace xbar {

namespace {

ErrorCode map_board_error(wire::BoardErrorCode c) {
  switch (c) {
    case wire::BoardErrorCode::kBadLength:
    case wire::BoardErrorCode::kOutOfRange:
      return ErrorCode::kInvalidArgument;
    case wire::BoardErrorCode::kUnsupported:
    case wire::BoardErrorCode::kUnknownOpcode:
      return ErrorCode::kUnsupported;
    case wire::BoardErrorCode::kBusy:
      return ErrorCode::kBusy;
    case wire::BoardErrorCode::kAborted:
      return ErrorCode::kCancelled;
    default:
      return ErrorCode::kBoardError;
  }
}

// Pauses between re-open attempts: 10 ms, doubling to 250 ms (a USB board re-enumerates in
// a few hundred ms; a socket server is back at once).
constexpr std::chrono::milliseconds kReopenFirstPause{10};
constexpr std::chrono::milliseconds kReopenMaxPause{250};

}  // namespace

ProtocolClient::ProtocolClient(std::unique_ptr<Transport> transport, ProtocolOptions options)
    : transport_(std::move(transport)), options_(options), next_seq_(std::random_device{}()) {}

Result<void> ProtocolClient::reconnect(std::chrono::milliseconds window) {
  using Clock = std::chrono::steady_clock;
  link_up_ = false;
  const auto deadline = Clock::now() + window;
  Error last{ErrorCode::kUnavailable, "not tried"};
  std::chrono::milliseconds pause = kReopenFirstPause;
  for (;;) {
    if (auto r = transport_->reopen(); !r) {
      if (r.error().code == ErrorCode::kUnsupported) return std::unexpected(r.error());
      last = r.error();
    } else if (auto serial = probe_serial(); !serial) {
      last = serial.error();
    } else if (!serial_.empty() && *serial != serial_) {
      // Another board on the same port: program-verify must not go on there.
      last = Error{
          ErrorCode::kUnavailable,
          fmt::format("a different board answered (serial {}, expected {})", *serial, serial_)};
    } else {
      link_up_ = true;
      ++reopens_;
      return {};
    }
    if (Clock::now() + pause >= deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min(2 * pause, kReopenMaxPause);
  }
  return make_error(ErrorCode::kUnavailable, last.message);
}

Result<std::string> ProtocolClient::probe_serial() {
  const uint32_t seq = next_seq_++;
  if (auto s = transport_->send(wire::encode_frame(wire::Opcode::kInfo, 0, seq, {})); !s)
    return std::unexpected(s.error());
  for (;;) {
    auto bytes = transport_->receive(options_.timeout);
    if (!bytes) return std::unexpected(bytes.error());
    auto reply = wire::decode_frame(*bytes);
    if (!reply) {
      return make_error(ErrorCode::kProtocol, fmt::format("corrupted INFO reply after re-open ({})",
                                                          wire::frame_error_name(reply.error())));
    }
    if (reply->header.seq != seq) continue;  // a stale reply from before the link was lost
    if (reply->header.flags & wire::kFlagError)
      return make_error(ErrorCode::kProtocol, "error reply to INFO after re-open");
    auto info = wire::decode_info_reply(reply->payload);
    if (!info) return make_error(ErrorCode::kProtocol, "malformed INFO reply: " + info.error());
    return info->serial;
  }
}

Result<std::vector<uint8_t>> ProtocolClient::call(wire::Opcode op, std::span<const uint8_t> payload,
                                                  std::chrono::milliseconds extra_time) {
  std::lock_guard lock(mu_);
  if (payload.size() > wire::kMaxPayload) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: payload of {} bytes exceeds the {}-byte frame limit",
                                  wire::opcode_name(op), payload.size(), wire::kMaxPayload));
  }
  if (!link_up_ && options_.reopen_window.count() > 0) {
    // Lost earlier and not back then: one attempt, so that callers learn it at once.
    if (auto r = reconnect(std::chrono::milliseconds(0)); !r) {
      return make_error(
          ErrorCode::kUnavailable,
          fmt::format("{}: the board is gone: {}", wire::opcode_name(op), r.error().message));
    }
  }
  const uint32_t seq = next_seq_++;
  // A restart seen and not yet acknowledged: this request carries the acknowledgment.
  std::vector<uint8_t> frame =
      wire::encode_frame(op, ack_restart_ ? wire::kFlagAckRestart : 0, seq, payload);
  std::string last_problem = "no attempt made";
  int restart_refusals = 0;
  // The link lost (unplug, closed socket): wait for the same board to come back. Fails with
  // kUnavailable naming what happened when it does not.
  auto recover = [&](const Error& lost) -> Result<void> {
    if (options_.reopen_window.count() <= 0) {
      link_up_ = false;
      return std::unexpected(lost);
    }
    if (auto r = reconnect(options_.reopen_window); !r) {
      if (r.error().code == ErrorCode::kUnsupported) return std::unexpected(lost);
      return make_error(ErrorCode::kUnavailable,
                        fmt::format("{}; not back within {} ms: {}", lost.message,
                                    options_.reopen_window.count(), r.error().message));
    }
    return {};
  };
  for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
    if (attempt > 0) ++retransmissions_;
    if (auto s = transport_->send(frame); !s) {
      if (s.error().code != ErrorCode::kUnavailable) return std::unexpected(s.error());
      // Not delivered: any request may go again once the board is back.
      if (auto r = recover(s.error()); !r) return std::unexpected(r.error());
      last_problem = s.error().message + " (re-opened)";
      continue;
    }
    for (;;) {  // skip stale replies to earlier, timed-out requests
      auto bytes = transport_->receive(options_.timeout + extra_time);
      if (!bytes) {
        const ErrorCode c = bytes.error().code;
        if (c == ErrorCode::kUnavailable) {
          // Lost after the request went out: it may have been executed. Requests that are safe
          // to repeat go again on the re-opened link; a pulse batch or a loop run goes back to
          // its caller as kRestarted (program-verify reads back, a run starts again).
          if (auto r = recover(bytes.error()); !r) return std::unexpected(r.error());
          if (op == wire::Opcode::kPulseBatch || op == wire::Opcode::kLoopRun) {
            return make_error(ErrorCode::kRestarted,
                              fmt::format("{} (seq {}): link lost ({}); the board is back, "
                                          "whether this request was executed is unknown",
                                          wire::opcode_name(op), seq, bytes.error().message));
          }
          last_problem = bytes.error().message + " (re-opened)";
          break;
        }
        // A timeout or a transfer that is not one whole frame (kProtocol): the exchange was
        // lost or damaged on the link; retry with the same seq. Anything else is final.
        if (c != ErrorCode::kTimeout && c != ErrorCode::kProtocol)
          return std::unexpected(bytes.error());
        last_problem = bytes.error().message;
        break;
      }
      auto reply = wire::decode_frame(*bytes);
      if (!reply) {
        last_problem = fmt::format("corrupted reply ({})", wire::frame_error_name(reply.error()));
        break;
      }
      const wire::Header& h = reply->header;
      if (!(h.flags & wire::kFlagReply)) {
        return make_error(ErrorCode::kProtocol, "board sent a frame without the REPLY flag");
      }
      if (h.seq != seq) continue;
      // The board answered the acknowledging frame: it stopped refusing (a RESTARTED reply
      // below means another restart, acknowledged by the next frame in turn).
      if (frame[6] & wire::kFlagAckRestart) ack_restart_ = false;
      if (h.flags & wire::kFlagError) {
        auto e = wire::decode_error_reply(reply->payload);
        if (!e) return make_error(ErrorCode::kProtocol, "malformed error reply: " + e.error());
        if (e->code == wire::BoardErrorCode::kBadFrame) {
          // Our frame was damaged on the way: the board did not execute it. Send it again.
          last_problem = "board: " + e->message;
          break;
        }
        if (e->code == wire::BoardErrorCode::kRestarted) {
          // The board lost its reply cache: a retry of a request it had executed would run
          // again. Requests that are safe to repeat go again at once (the refusal cleared the
          // board's flag); a pulse batch or a loop run goes back to its caller, which reads
          // back (program-verify) or restarts the run.
          ++restarts_;
          ack_restart_ = true;  // the next request acknowledges it
          if (op == wire::Opcode::kPulseBatch || op == wire::Opcode::kLoopRun) {
            return make_error(
                ErrorCode::kRestarted,
                fmt::format("{} (seq {}): board: {}", wire::opcode_name(op), seq, e->message));
          }
          last_problem = "board: " + e->message;
          if (++restart_refusals <= options_.max_attempts) --attempt;  // not a link failure
          frame = wire::encode_frame(op, wire::kFlagAckRestart, seq, payload);
          break;
        }
        return make_error(
            map_board_error(e->code),
            fmt::format("board: {} ({})", e->message, wire::board_error_code_name(e->code)));
      }
      if (h.opcode != op) {
        return make_error(ErrorCode::kProtocol,
                          fmt::format("reply opcode {} to a {} request",
                                      wire::opcode_name(h.opcode), wire::opcode_name(op)));
      }
      if (op == wire::Opcode::kInfo && serial_.empty()) {
        if (auto info = wire::decode_info_reply(reply->payload)) serial_ = info->serial;
      }
      return std::move(reply->payload);
    }
  }
  return make_error(ErrorCode::kTimeout,
                    fmt::format("{} (seq {}): no valid reply after {} attempts of {} ms: {}",
                                wire::opcode_name(op), seq, options_.max_attempts,
                                options_.timeout.count(), last_problem));
}

}  // namespace xbar
