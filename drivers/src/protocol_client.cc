#include "xbar/drivers/protocol_client.h"

#include <fmt/format.h>

#include <random>

#include "xbar/wire/messages.h"

namespace xbar {

namespace {

ErrorCode map_board_error(wire::ErrorCode c) {
  switch (c) {
    case wire::ErrorCode::kBadLength:
    case wire::ErrorCode::kOutOfRange:
      return ErrorCode::kInvalidArgument;
    case wire::ErrorCode::kUnsupported:
    case wire::ErrorCode::kUnknownOpcode:
      return ErrorCode::kUnsupported;
    case wire::ErrorCode::kBusy:
      return ErrorCode::kBusy;
    case wire::ErrorCode::kAborted:
      return ErrorCode::kCancelled;
    default:
      return ErrorCode::kBoardError;
  }
}

}  // namespace

ProtocolClient::ProtocolClient(std::unique_ptr<Transport> transport, ProtocolOptions options)
    : transport_(std::move(transport)), options_(options), next_seq_(std::random_device{}()) {}

Result<std::vector<uint8_t>> ProtocolClient::call(wire::Opcode op, std::span<const uint8_t> payload,
                                                  std::chrono::milliseconds extra_time) {
  std::lock_guard lock(mu_);
  if (payload.size() > wire::kMaxPayload) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: payload of {} bytes exceeds the {}-byte frame limit",
                                  wire::opcode_name(op), payload.size(), wire::kMaxPayload));
  }
  const uint32_t seq = next_seq_++;
  // A restart seen and not yet acknowledged: this request carries the acknowledgment.
  std::vector<uint8_t> frame =
      wire::encode_frame(op, ack_restart_ ? wire::kFlagAckRestart : 0, seq, payload);
  std::string last_problem = "no attempt made";
  int restart_refusals = 0;
  for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
    if (attempt > 0) ++retransmissions_;
    if (auto s = transport_->send(frame); !s) return std::unexpected(s.error());
    for (;;) {  // skip stale replies to earlier, timed-out requests
      auto bytes = transport_->receive(options_.timeout + extra_time);
      if (!bytes) {
        // A timeout or a transfer that is not one whole frame (kProtocol): the exchange was
        // lost or damaged on the link; retry with the same seq. Anything else is final.
        const ErrorCode c = bytes.error().code;
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
        if (e->code == wire::ErrorCode::kBadFrame) {
          // Our frame was damaged on the way: the board did not execute it. Send it again.
          last_problem = "board: " + e->message;
          break;
        }
        if (e->code == wire::ErrorCode::kRestarted) {
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
        return make_error(map_board_error(e->code), fmt::format("board: {} ({})", e->message,
                                                                wire::error_code_name(e->code)));
      }
      if (h.opcode != op) {
        return make_error(ErrorCode::kProtocol,
                          fmt::format("reply opcode {} to a {} request",
                                      wire::opcode_name(h.opcode), wire::opcode_name(op)));
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
