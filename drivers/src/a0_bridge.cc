// A0Bridge: the request dispatch, the A0 side's calls and resynchronisation, and the
// requests without side effects (INFO, STATUS, READ, VMM, WAIT). Pulse batches are in
// a0_bridge_write.cc.
#include "xbar/drivers/a0_bridge.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "xbar/a0/chains.h"
#include "xbar/wire/frame.h"

namespace xbar {

namespace {

constexpr int kRows = a0::kRows, kCols = a0::kCols;
constexpr size_t kEchoBytes = 256;
// A READ of more cells than this reads the whole array (one 402, 16 reply chunks) instead of
// one 401 round trip per cell.
constexpr size_t kCellsPerWholeRead = 64;
constexpr uint8_t kMaxReadAvg = 64;
constexpr uint16_t kMaxVmmVectors = 128;
// The ADC's low reference is fixed on the board (dut_func.py adc2volt: V_LO = 0.5).
constexpr double kAdcLo_V = 0.5;

uint16_t to_mV(double v) { return static_cast<uint16_t>(std::lround(v * 1000)); }

}  // namespace

A0Bridge::A0Bridge(A0Link& link, A0Config config)
    : link_(link), config_(std::move(config)), opened_at_(std::chrono::steady_clock::now()) {}

// ---- the A0 side ----------------------------------------------------------------------------

Result<void> A0Bridge::send(const a0::Command& c) {
  auto bytes = a0::encode(c);
  if (!bytes) return make_error(ErrorCode::kInternal, "a0 encode: " + bytes.error());
  ++counters_.commands;
  counters_.bytes_out += bytes->size();
  return link_.write(*bytes);
}

Result<std::vector<uint8_t>> A0Bridge::call(const a0::Command& c, size_t reply_bytes) {
  XBAR_RETURN_IF_ERROR(send(c));
  ++counters_.round_trips;
  // The reply's own transfer time on top: 8 KiB of a whole-array read at USB full speed.
  const auto timeout = config_.reply_timeout + std::chrono::milliseconds(reply_bytes / 512);
  auto r = link_.read_exact(reply_bytes, timeout);
  if (r) counters_.bytes_in += r->size();
  return r;
}

Result<std::vector<uint8_t>> A0Bridge::call_repeatable(const a0::Command& c, size_t reply_bytes) {
  auto r = call(c, reply_bytes);
  if (r || r.error().code != ErrorCode::kTimeout) return r;
  // No reply, or part of one: the part is dropped, the link resynchronised, and the command
  // (a read, or a load that leaves the same state twice) sent once more.
  XBAR_RETURN_IF_ERROR(resync(r.error().message));
  r = call(c, reply_bytes);
  if (r || r.error().code != ErrorCode::kTimeout) return r;
  return make_error(ErrorCode::kUnavailable,
                    fmt::format("a0 {}: command {} unanswered twice, though the board answers the "
                                "echo probe (for a read: is the read bias right? {})",
                                link_.name(), a0::command_code(c), r.error().message));
}

Result<void> A0Bridge::echo_probe() {
  auto r = call(a0::Echo{}, kEchoBytes);
  if (!r) return std::unexpected(r.error());
  for (size_t i = 0; i < 64; ++i) {
    const int32_t v =
        static_cast<int32_t>((*r)[4 * i] | ((*r)[4 * i + 1] << 8) | ((*r)[4 * i + 2] << 16) |
                             (static_cast<uint32_t>((*r)[4 * i + 3]) << 24));
    if (v != static_cast<int32_t>(100000 * i)) {
      return make_error(ErrorCode::kProtocol, fmt::format("a0 {}: echo word {} is {}, not {}",
                                                          link_.name(), i, v, 100000 * i));
    }
  }
  return {};
}

Result<void> A0Bridge::resync(const std::string& why) {
  ++counters_.resyncs;
  Error last{ErrorCode::kUnavailable, why};
  for (int attempt = 0; attempt < 3; ++attempt) {
    link_.discard_input(std::chrono::milliseconds(20));
    auto p = echo_probe();
    if (p) return {};
    last = p.error();
    if (last.code == ErrorCode::kUnavailable) break;  // the port itself is gone
  }
  return make_error(ErrorCode::kUnavailable,
                    fmt::format("a0 {}: the board stopped answering ({}; then the echo probe: {})",
                                link_.name(), why, last.message));
}

Result<void> A0Bridge::set_dac(a0::DacChannel ch, double v_V) {
  auto code = a0::dac_code(v_V, config_.span, fmt::format("DAC channel {}", static_cast<int>(ch)));
  if (!code) return make_error(ErrorCode::kInvalidArgument, "a0: " + code.error());
  return send(a0::DacWrite{a0::dac_set_word(ch, *code)});
}

Result<void> A0Bridge::ensure_read_bias() {
  if (read_bias_set_) return {};
  using a0::DacChannel;
  XBAR_RETURN_IF_ERROR(set_dac(DacChannel::kVrefTia, config_.v_ref_tia_V));
  XBAR_RETURN_IF_ERROR(set_dac(DacChannel::kPlaneVpp, config_.v_ref_tia_V - config_.v_read_V));
  XBAR_RETURN_IF_ERROR(set_dac(DacChannel::kVrefHiCmp, config_.v_adc_hi_V));
  XBAR_RETURN_IF_ERROR(set_dac(DacChannel::kTvdd, config_.read_gate_V));
  XBAR_RETURN_IF_ERROR(set_dac(DacChannel::kVpPad, 0.0));
  auto ctl = a0::control_chain_read();
  auto ack = call_repeatable(a0::ScanWrite{a0::kChainControl, {ctl.begin(), ctl.end()}}, 1);
  if (!ack) return std::unexpected(ack.error());
  read_bias_set_ = true;
  return {};
}

Result<void> A0Bridge::ensure_gain(int gain_index) {
  if (gain_ == gain_index) return {};
  const std::vector<uint8_t> chain = a0::tia_chain(gain_index);
  for (uint8_t half : {a0::kChainTiaBottom, a0::kChainTiaTop}) {
    auto ack = call_repeatable(a0::ScanWrite{half, chain}, 1);
    if (!ack) return std::unexpected(ack.error());
  }
  gain_ = gain_index;
  return {};
}

Result<void> A0Bridge::power_up() {
  link_.discard_input(std::chrono::milliseconds(20));
  if (auto p = echo_probe(); !p) {
    return make_error(ErrorCode::kUnavailable, fmt::format("a0 {}: no A0 answers here: {}",
                                                           link_.name(), p.error().message));
  }
  XBAR_RETURN_IF_ERROR(send(a0::DacWrite{a0::dac_span_word(config_.span)}));
  read_bias_set_ = false;
  gain_.reset();
  XBAR_RETURN_IF_ERROR(ensure_read_bias());
  return ensure_gain(2);
}

uint64_t A0Bridge::board_uptime_ns() const {
  // The board has no clock the host can read: its time is the host's since the port opened,
  // at the devices' pace (time_scale, for a twin run faster than real time).
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - opened_at_).count();
  return static_cast<uint64_t>(s * config_.time_scale * 1e9);
}

void A0Bridge::host_wait_ms(double ms) const {
  if (ms <= 0) return;
  const double scaled = ms / std::max(config_.time_scale, 1e-9);
  std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(scaled));
}

// ---- protocol v1 ----------------------------------------------------------------------------

Result<std::vector<uint8_t>> A0Bridge::execute(std::span<const uint8_t> request_frame) {
  if (!last_request_.empty() && std::ranges::equal(request_frame, last_request_)) {
    return last_reply_;  // sent again: answered, not executed twice
  }
  auto frame = wire::decode_frame(request_frame);
  if (!frame) {
    return make_error(ErrorCode::kInternal, fmt::format("a0: the host built a bad frame ({})",
                                                        wire::frame_error_name(frame.error())));
  }
  const wire::Header& h = frame->header;
  auto outcome = dispatch(h, frame->payload);
  if (!outcome) return std::unexpected(outcome.error());
  std::vector<uint8_t> reply;
  if (*outcome) {
    ++ops_executed_;
    reply = wire::encode_frame(h.opcode, wire::kFlagReply, h.seq, **outcome);
  } else {
    last_error_ = static_cast<uint16_t>(outcome->error().code);
    const wire::ErrorReply e{outcome->error().code, outcome->error().message};
    reply = wire::encode_frame(h.opcode, wire::kFlagReply | wire::kFlagError, h.seq, e.encode());
  }
  last_request_.assign(request_frame.begin(), request_frame.end());
  last_reply_ = reply;
  return reply;
}

Result<A0Bridge::Outcome> A0Bridge::dispatch(const wire::Header& h,
                                             std::span<const uint8_t> payload) {
  using wire::Opcode;
  switch (h.opcode) {
    case Opcode::kInfo:
      return info();
    case Opcode::kStatus:
      return status();
    case Opcode::kRead:
      return read(payload);
    case Opcode::kPulseBatch:
      return pulse_batch(payload);
    case Opcode::kVmm:
      return vmm(payload);
    case Opcode::kWait:
      return wait(payload);
    case Opcode::kAbort:
      return Outcome{wire::AbortReply{}.encode()};  // nothing runs on the board between calls
    default:
      return Outcome{std::unexpected(Refusal{
          wire::BoardErrorCode::kUnsupported,
          fmt::format("{}: the A0 board has no such operation (a0: runs loops host-stepped; "
                      "SIM_* is the twin's)",
                      wire::opcode_name(h.opcode))})};
  }
}

A0Bridge::Outcome A0Bridge::info() const {
  wire::InfoReply i;
  i.n_arrays = a0::kArrays;
  i.rows = kRows;
  i.cols = kCols;
  i.serial = config_.serial.substr(0, 16);
  i.firmware_version = "a0-cdc";
  i.capabilities = 0;
  i.adc_v_lo_mV = to_mV(kAdcLo_V);
  i.adc_v_hi_mV = to_mV(config_.v_adc_hi_V);
  i.tia_v_ref_mV = to_mV(config_.v_ref_tia_V);
  i.v_read_mV = to_mV(config_.v_read_V);
  i.read_gate_mV = to_mV(config_.read_gate_V);
  const a0::SpanLimits span = a0::span_limits(config_.span);
  i.dac_v_min_mV = static_cast<int16_t>(std::lround(span.lo_V * 1000));
  i.dac_v_max_mV = static_cast<int16_t>(std::lround(span.hi_V * 1000));
  i.tia_gains_ohm.assign(a0::kTiaGainsOhm.begin(), a0::kTiaGainsOhm.end());
  i.width_step_ns = config_.width_step_ns;
  i.width_max_code = config_.width_max_code;
  i.set_v_min_mV = to_mV(config_.set_v.lo_V);
  i.set_v_max_mV = to_mV(config_.set_v.hi_V);
  i.set_gate_min_mV = to_mV(config_.set_gate.lo_V);
  i.set_gate_max_mV = to_mV(config_.set_gate.hi_V);
  i.reset_v_min_mV = to_mV(config_.reset_v.lo_V);
  i.reset_v_max_mV = to_mV(config_.reset_v.hi_V);
  i.reset_gate_min_mV = to_mV(config_.reset_gate.lo_V);
  i.reset_gate_max_mV = to_mV(config_.reset_gate.hi_V);
  i.max_vmm_vectors = kMaxVmmVectors;
  i.max_read_avg = kMaxReadAvg;
  return i.encode();
}

A0Bridge::Outcome A0Bridge::status() const {
  wire::StatusReply s;
  s.last_error = last_error_;
  s.uptime_ns = board_uptime_ns();
  s.ops_executed = ops_executed_;
  s.pulses_applied = counters_.pulses;
  return s.encode();
}

Result<std::vector<uint16_t>> A0Bridge::read_array_codes(uint8_t array) {
  const a0::ReadBatch rb{array, a0::GainMode::kFixed, config_.read_delay_us};
  auto bytes = call_repeatable(rb, a0::rows_reply_bytes(kRows));
  if (!bytes) return std::unexpected(bytes.error());
  auto words = a0::decode_rows(*bytes, kRows);
  if (!words) return make_error(ErrorCode::kProtocol, "a0 402: " + words.error());
  for (uint16_t& w : *words) w = a0::decode_adc_word(w).code;
  return std::move(*words);
}

Result<A0Bridge::Outcome> A0Bridge::read(std::span<const uint8_t> payload) {
  auto q = wire::decode_read_request(payload);
  if (!q) return refused(q.error(), wire::BoardErrorCode::kBadLength);
  if (q->array >= a0::kArrays)
    return refused(fmt::format("READ.array = {}: allowed 0..2", q->array));
  if (q->gain_index >= a0::kTiaGainsOhm.size()) {
    return refused(fmt::format("READ.gain_index = {}: allowed 0..4", q->gain_index));
  }
  if (q->n_avg < 1 || q->n_avg > kMaxReadAvg) {
    return refused(fmt::format("READ.n_avg = {}: allowed 1..{}", q->n_avg, kMaxReadAvg));
  }
  if (q->settle_ms > wire::ReadRequest::kMaxSettleMs) {
    return refused(fmt::format("READ.settle_ms = {}: allowed 0..{}", q->settle_ms,
                               wire::ReadRequest::kMaxSettleMs));
  }
  for (const wire::Cell& c : q->cells) {
    if (c.row >= kRows || c.col >= kCols) {
      return refused(fmt::format("READ.cells: ({}, {}): rows and columns 0..63", c.row, c.col));
    }
  }
  host_wait_ms(q->settle_ms);
  XBAR_RETURN_IF_ERROR(ensure_read_bias());
  XBAR_RETURN_IF_ERROR(ensure_gain(q->gain_index));
  wire::ReadReply r{q->array, q->gain_index, q->n_avg, q->mode, {}};
  const bool whole = q->mode == wire::ReadMode::kWholeArray || q->cells.size() > kCellsPerWholeRead;
  if (whole) {
    std::vector<uint32_t> sums(static_cast<size_t>(kRows * kCols), 0);
    for (int k = 0; k < q->n_avg; ++k) {
      auto codes = read_array_codes(q->array);
      if (!codes) return std::unexpected(codes.error());
      for (size_t i = 0; i < sums.size(); ++i) sums[i] += (*codes)[i];
    }
    if (q->mode == wire::ReadMode::kWholeArray) {
      r.code_sums = std::move(sums);
    } else {
      for (const wire::Cell& c : q->cells) r.code_sums.push_back(sums[c.row * kCols + c.col]);
    }
    return Outcome{r.encode()};
  }
  for (const wire::Cell& c : q->cells) {
    uint32_t sum = 0;
    for (int k = 0; k < q->n_avg; ++k) {
      auto w = call_repeatable(a0::ReadSingle{q->array, c.row, c.col, a0::GainMode::kFixed}, 2);
      if (!w) return std::unexpected(w.error());
      sum += a0::decode_adc_word(static_cast<uint16_t>((*w)[0] | ((*w)[1] << 8))).code;
    }
    r.code_sums.push_back(sum);
  }
  return Outcome{r.encode()};
}

Result<A0Bridge::Outcome> A0Bridge::vmm(std::span<const uint8_t> payload) {
  auto q = wire::decode_vmm_request(payload, kRows);
  if (!q) return refused(q.error(), wire::BoardErrorCode::kBadLength);
  if (q->array >= a0::kArrays)
    return refused(fmt::format("VMM.array = {}: allowed 0..2", q->array));
  if (q->gain_index >= a0::kTiaGainsOhm.size()) {
    return refused(fmt::format("VMM.gain_index = {}: allowed 0..4", q->gain_index));
  }
  if (q->n_vectors < 1 || q->n_vectors > kMaxVmmVectors) {
    return refused(fmt::format("VMM.n_vectors = {}: allowed 1..{}", q->n_vectors, kMaxVmmVectors));
  }
  XBAR_RETURN_IF_ERROR(ensure_read_bias());
  XBAR_RETURN_IF_ERROR(ensure_gain(q->gain_index));
  // Bit plane b of vector v is one row mask; the board reads each mask once (403).
  std::vector<uint64_t> masks;
  masks.reserve(static_cast<size_t>(q->n_vectors) * 8);
  for (size_t v = 0; v < q->n_vectors; ++v) {
    for (int b = 0; b < 8; ++b) {
      uint64_t m = 0;
      for (int r = 0; r < kRows; ++r) {
        if ((q->inputs[v * kRows + r] >> b) & 1u) m |= uint64_t{1} << r;
      }
      masks.push_back(m);
    }
  }
  wire::VmmReply reply{q->array, q->gain_index, q->n_vectors, {}};
  reply.acc.assign(static_cast<size_t>(q->n_vectors) * kCols, 0);
  for (size_t at = 0; at < masks.size(); at += a0::kMaxDpeVectors) {
    const size_t n = std::min<size_t>(a0::kMaxDpeVectors, masks.size() - at);
    a0::DpeBatch d{q->array,
                   true,
                   a0::GainMode::kFixed,
                   config_.read_delay_us,
                   {masks.begin() + static_cast<std::ptrdiff_t>(at),
                    masks.begin() + static_cast<std::ptrdiff_t>(at + n)}};
    auto bytes = call_repeatable(d, a0::rows_reply_bytes(static_cast<int>(n)));
    if (!bytes) return std::unexpected(bytes.error());
    auto words = a0::decode_rows(*bytes, static_cast<int>(n));
    if (!words) return make_error(ErrorCode::kProtocol, "a0 403: " + words.error());
    for (size_t k = 0; k < n; ++k) {
      const size_t v = (at + k) / 8, b = (at + k) % 8;
      for (int c = 0; c < kCols; ++c) {
        reply.acc[v * kCols + c] += uint32_t{a0::decode_adc_word((*words)[k * kCols + c]).code}
                                    << b;
      }
    }
  }
  return Outcome{reply.encode()};
}

Result<A0Bridge::Outcome> A0Bridge::wait(std::span<const uint8_t> payload) {
  auto q = wire::decode_wait_request(payload);
  if (!q) return refused(q.error(), wire::BoardErrorCode::kBadLength);
  if (q->duration_us > wire::WaitRequest::kMaxUs) {
    return Outcome{
        std::unexpected(Refusal{wire::BoardErrorCode::kOutOfRange,
                                fmt::format("WAIT.duration_us = {}: allowed 0..{}", q->duration_us,
                                            wire::WaitRequest::kMaxUs)})};
  }
  host_wait_ms(q->duration_us / 1000.0);
  wire::WaitReply r;
  r.uptime_ns = board_uptime_ns();
  return Outcome{r.encode()};
}

}  // namespace xbar
