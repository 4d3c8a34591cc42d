// A0Bridge's pulse batches: protocol v1's PULSE_BATCH (per-device polarity, voltages and width)
// as A0 batch writes, which carry one polarity and one pulse width each (docs/a0.md).
#include <fmt/format.h>

#include <map>

#include "xbar/a0/chains.h"
#include "xbar/drivers/a0_bridge.h"

namespace xbar {

namespace {

constexpr int kRows = a0::kRows, kCols = a0::kCols;
constexpr size_t kCells = static_cast<size_t>(kRows) * kCols;

struct Group {
  std::vector<uint16_t> v_codes = std::vector<uint16_t>(kCells, 0);
  std::vector<uint16_t> gate_codes = std::vector<uint16_t>(kCells, 0);
  size_t devices = 0;
};

using Groups = std::map<std::pair<bool, uint16_t>, Group>;  // (SET?, width code) -> devices

std::expected<Groups, std::string> plan_groups(const wire::PulseBatchRequest& q,
                                               const A0Config& config) {
  auto refusal = [](std::string m) { return std::unexpected(std::move(m)); };
  // Every device is checked before anything is sent: a refused batch changes nothing. The
  // DAC span bounds the codes; the configured windows bound the voltages inside it.
  const a0::SpanLimits span = a0::span_limits(config.span);
  const double lsb = (span.hi_V - span.lo_V) / 65535.0;  // a code's half-step either side
  Groups groups;
  size_t k = 0;
  for (size_t i = 0; i < kCells; ++i) {
    if (!wire::mask_test(q.mask, i)) continue;
    const wire::PulseCodes c = q.codes[k];
    const int row = static_cast<int>(i) / kCols, col = static_cast<int>(i) % kCols;
    const bool set = q.polarity == wire::Polarity::kSet ||
                     (q.polarity == wire::Polarity::kMixed && !wire::mask_test(q.reset_mask, i));
    const A0Window vw = set ? config.set_v : config.reset_v;
    const A0Window gw = set ? config.set_gate : config.reset_gate;
    const double v = a0::dac_volts(c.v_code, config.span);
    const double g = a0::dac_volts(c.gate_code, config.span);
    const char* pol = set ? "SET" : "RESET";
    if (!(v >= vw.lo_V - lsb && v <= vw.hi_V + lsb)) {
      return refusal(
          fmt::format("PULSE_BATCH.v_code[{}] (row {}, col {}) = {} -> {:.3f} V: {} "
                      "voltage allowed {:.3f}..{:.3f} V (a0: window)",
                      k, row, col, c.v_code, v, pol, vw.lo_V, vw.hi_V));
    }
    if (!(g >= gw.lo_V - lsb && g <= gw.hi_V + lsb)) {
      return refusal(
          fmt::format("PULSE_BATCH.gate_code[{}] (row {}, col {}) = {} -> {:.3f} V: {} "
                      "gate allowed {:.3f}..{:.3f} V (a0: window)",
                      k, row, col, c.gate_code, g, pol, gw.lo_V, gw.hi_V));
    }
    if (c.width_code < 1 || c.width_code > config.width_max_code) {
      return refusal(
          fmt::format("PULSE_BATCH.width_code[{}] (row {}, col {}) = {}: allowed 1..{} "
                      "(x {} ns; P_RESET below 0xFF)",
                      k, row, col, c.width_code, config.width_max_code, config.width_step_ns));
    }
    Group& grp = groups[{set, c.width_code}];
    grp.v_codes[i] = c.v_code;  // never 0: a window never includes the span's bottom
    grp.gate_codes[i] = c.gate_code;
    ++grp.devices;
    ++k;
  }
  return groups;
}

}  // namespace

Result<void> A0Bridge::write_batch(uint8_t array, bool set, uint16_t width_code,
                                   const std::vector<uint16_t>& v_codes,
                                   const std::vector<uint16_t>& gate_codes) {
  // The pulse width: the control block's P_RESET, (P_RESET - 1) CK_ARRAY periods.
  auto ctl = a0::control_chain_write(static_cast<uint8_t>(width_code + 1));
  auto ack = call(a0::ScanWrite{a0::kChainControl, {ctl.begin(), ctl.end()}}, 1);
  if (!ack) return std::unexpected(ack.error());
  read_bias_set_ = false;  // the firmware leaves P_TVDD and the pad at the write's levels
  const a0::WriteMode mode = set ? a0::WriteMode::kSet : a0::WriteMode::kReset;
  for (int part = 0; part < a0::kWriteBatchParts; ++part) {
    const bool gate = part >= a0::kWriteBatchParts / 2;
    const std::vector<uint16_t>& src = gate ? gate_codes : v_codes;
    const size_t first_row = static_cast<size_t>(2 * (part % (a0::kWriteBatchParts / 2)));
    a0::WriteBatchPart w{array,
                         mode,
                         static_cast<uint8_t>(2 * part),
                         {src.begin() + static_cast<std::ptrdiff_t>(first_row * kCols),
                          src.begin() + static_cast<std::ptrdiff_t>((first_row + 2) * kCols)}};
    if (part + 1 < a0::kWriteBatchParts) {
      XBAR_RETURN_IF_ERROR(send(w));
      continue;
    }
    final_sent_ = true;      // from here the devices may be pulsed
    auto done = call(w, 1);  // the board pulses, then acknowledges
    if (!done) return std::unexpected(done.error());
  }
  return {};
}

Result<A0Bridge::Outcome> A0Bridge::pulse_batch(std::span<const uint8_t> payload) {
  auto q = wire::decode_pulse_batch_request(payload, (kCells + 7) / 8);
  if (!q) return refused(q.error(), wire::BoardErrorCode::kBadLength);
  if (q->array >= a0::kArrays) {
    return refused(fmt::format("PULSE_BATCH.array = {}: allowed 0..2", q->array));
  }
  auto groups = plan_groups(*q, config_);  // the whole batch checked before a byte is sent
  if (!groups) return refused(groups.error());
  const auto t0 = std::chrono::steady_clock::now();
  bool applied_any = false;  // a group's last 405 message went out: it may have been applied
  wire::PulseBatchReply reply;
  for (const auto& [key, grp] : *groups) {
    Result<void> w;
    for (int attempt = 0; attempt < 2; ++attempt) {
      final_sent_ = false;
      w = write_batch(q->array, key.first, key.second, grp.v_codes, grp.gate_codes);
      if (w || final_sent_ || applied_any) break;
      // Nothing of this batch reached the devices yet: safe to try again, once, after a
      // resynchronisation (or, for a port that is gone, after ProtocolClient re-opens it).
      if (w.error().code == ErrorCode::kUnavailable) return std::unexpected(w.error());
      XBAR_RETURN_IF_ERROR(resync(w.error().message));
    }
    if (!w && !final_sent_ && !applied_any) return std::unexpected(w.error());
    if (!w) {
      // Some of it may have been applied: never resent. Resynchronise, and let the caller read
      // back (program-verify does: RESTARTED means "applied or not, unknown").
      ++counters_.lost_acks;
      auto rs = resync(w.error().message);
      return Outcome{std::unexpected(Refusal{
          wire::BoardErrorCode::kRestarted,
          fmt::format("a0 {}: a batch write's acknowledgement was lost ({}); not resent, so "
                      "whether its {} pulses were applied is unknown; read back{}",
                      link_.name(), w.error().message, grp.devices,
                      rs ? "" : "; and the link did not recover: " + rs.error().message)})};
    }
    applied_any = true;
    counters_.pulses += grp.devices;
    reply.n_pulsed = static_cast<uint16_t>(reply.n_pulsed + grp.devices);
  }
  reply.duration_us = static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  return Outcome{reply.encode()};
}

}  // namespace xbar
