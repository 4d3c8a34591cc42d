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

// One call's request and what its attempts saw.
struct ProtocolClient::Exchange {
  wire::Opcode op;
  std::span<const uint8_t> payload;
  uint32_t seq = 0;
  std::vector<uint8_t> frame;
  std::string last_problem = "no attempt made";
  int attempt = 0;
  int restart_refusals = 0;
};

Result<void> ProtocolClient::recover(const Error& lost) {
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
}

ProtocolClient::Next ProtocolClient::on_receive_error(Exchange& x, const Error& e) {
  if (e.code == ErrorCode::kUnavailable) {
    // Lost after the request went out: it may have been executed. Requests that are safe to
    // repeat go again on the re-opened link; a pulse batch or a loop run goes back to its
    // caller as kRestarted (program-verify reads back, a run starts again).
    if (auto r = recover(e); !r) return {Next::kReturn, std::unexpected(r.error())};
    if (x.op == wire::Opcode::kPulseBatch || x.op == wire::Opcode::kLoopRun) {
      return {Next::kReturn, make_error(ErrorCode::kRestarted,
                                        fmt::format("{} (seq {}): link lost ({}); the board is "
                                                    "back, whether this request was executed "
                                                    "is unknown",
                                                    wire::opcode_name(x.op), x.seq, e.message))};
    }
    x.last_problem = e.message + " (re-opened)";
    return {Next::kResend, {}};
  }
  // A timeout or a transfer that is not one whole frame (kProtocol): the exchange was lost or
  // damaged on the link; retry with the same seq. Anything else is final.
  if (e.code != ErrorCode::kTimeout && e.code != ErrorCode::kProtocol) {
    return {Next::kReturn, std::unexpected(e)};
  }
  x.last_problem = e.message;
  return {Next::kResend, {}};
}

ProtocolClient::Next ProtocolClient::on_error_reply(Exchange& x, std::span<const uint8_t> payload) {
  auto e = wire::decode_error_reply(payload);
  if (!e) {
    return {Next::kReturn, make_error(ErrorCode::kProtocol, "malformed error reply: " + e.error())};
  }
  if (e->code == wire::BoardErrorCode::kBadFrame) {
    // Our frame was damaged on the way: the board did not execute it. Send it again.
    x.last_problem = "board: " + e->message;
    return {Next::kResend, {}};
  }
  if (e->code == wire::BoardErrorCode::kRestarted) {
    // The board lost its reply cache: a retry of a request it had executed would run again.
    // Requests that are safe to repeat go again at once (the refusal cleared the board's
    // flag); a pulse batch or a loop run goes back to its caller, which reads back
    // (program-verify) or restarts the run.
    ++restarts_;
    ack_restart_ = true;  // the next request acknowledges it
    if (x.op == wire::Opcode::kPulseBatch || x.op == wire::Opcode::kLoopRun) {
      return {Next::kReturn, make_error(ErrorCode::kRestarted,
                                        fmt::format("{} (seq {}): board: {}",
                                                    wire::opcode_name(x.op), x.seq, e->message))};
    }
    x.last_problem = "board: " + e->message;
    if (++x.restart_refusals <= options_.max_attempts) --x.attempt;  // not a link failure
    x.frame = wire::encode_frame(x.op, wire::kFlagAckRestart, x.seq, x.payload);
    return {Next::kResend, {}};
  }
  return {Next::kReturn,
          make_error(map_board_error(e->code), fmt::format("board: {} ({})", e->message,
                                                           wire::board_error_code_name(e->code)))};
}

ProtocolClient::Next ProtocolClient::on_reply(Exchange& x, wire::Frame& reply) {
  const wire::Header& h = reply.header;
  if (!(h.flags & wire::kFlagReply)) {
    return {Next::kReturn,
            make_error(ErrorCode::kProtocol, "board sent a frame without the REPLY flag")};
  }
  if (h.seq != x.seq) return {Next::kReadAgain, {}};  // a stale reply to an earlier request
  // The board answered the acknowledging frame: it stopped refusing (a RESTARTED reply below
  // means another restart, acknowledged by the next frame in turn).
  if (x.frame[wire::kOffsetFlags] & wire::kFlagAckRestart) ack_restart_ = false;
  if (h.flags & wire::kFlagError) return on_error_reply(x, reply.payload);
  if (h.opcode != x.op) {
    return {Next::kReturn,
            make_error(ErrorCode::kProtocol,
                       fmt::format("reply opcode {} to a {} request", wire::opcode_name(h.opcode),
                                   wire::opcode_name(x.op)))};
  }
  if (x.op == wire::Opcode::kInfo && serial_.empty()) {
    if (auto info = wire::decode_info_reply(reply.payload)) serial_ = info->serial;
  }
  return {Next::kReturn, std::move(reply.payload)};
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
  Exchange x{op, payload};
  x.seq = next_seq_++;
  // A restart seen and not yet acknowledged: this request carries the acknowledgment.
  x.frame = wire::encode_frame(op, ack_restart_ ? wire::kFlagAckRestart : 0, x.seq, payload);
  for (; x.attempt < options_.max_attempts; ++x.attempt) {
    if (x.attempt > 0) ++retransmissions_;
    if (auto s = transport_->send(x.frame); !s) {
      if (s.error().code != ErrorCode::kUnavailable) return std::unexpected(s.error());
      // Not delivered: any request may go again once the board is back.
      if (auto r = recover(s.error()); !r) return std::unexpected(r.error());
      x.last_problem = s.error().message + " (re-opened)";
      continue;
    }
    for (;;) {
      auto bytes = transport_->receive(options_.timeout + extra_time);
      Next next;
      if (!bytes) {
        next = on_receive_error(x, bytes.error());
      } else if (auto reply = wire::decode_frame(*bytes); !reply) {
        x.last_problem = fmt::format("corrupted reply ({})", wire::frame_error_name(reply.error()));
        next = {Next::kResend, {}};
      } else {
        next = on_reply(x, *reply);
      }
      if (next.kind == Next::kReturn) return std::move(next.result);
      if (next.kind == Next::kResend) break;
    }
  }
  return make_error(ErrorCode::kTimeout,
                    fmt::format("{} (seq {}): no valid reply after {} attempts of {} ms: {}",
                                wire::opcode_name(op), x.seq, options_.max_attempts,
                                options_.timeout.count(), x.last_problem));
}

}  // namespace xbar
