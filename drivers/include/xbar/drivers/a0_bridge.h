// The a0: backend's core (issue 20, docs/a0.md): protocol v1 requests, as ProtocolClient sends
// them, executed as the A0 board's serial commands, with the reply frames built on the host.
// Everything above the transport (Board, program-verify, fault scans, deploys, inference) is
// then the same code for both boards.
//
// How each request maps (docs/a0.md has the table and the cost in round trips):
// - INFO: synthesized from A0Config: the A0's geometry, TIA gains, DAC span and the
//   configured SET/RESET windows. No on-board loop (host-stepped runs instead), no SIM_*.
// - READ: n_avg x 402 (whole array) or n_avg x 401 per cell, at a fixed TIA gain set through
//   the TIA scan chains; settle_ms is a wait on the host.
// - PULSE_BATCH: one A0 batch write (control chain + 64 x 405) per polarity and pulse width.
// - VMM: 8 bit planes per vector as row masks, 60 per 403, shift-and-add on the host.
// - STATUS, ABORT, WAIT: from host counters and host waits.
//
// Safety the lab code does not have: every voltage is checked against the DAC span and the
// configured windows and every width against the counter before anything is sent; a pulse
// batch whose acknowledgement is lost is never resent (the link is resynchronised with the echo
// probe and the request answered RESTARTED, which program-verify survives by reading back); a
// board that stops answering is kUnavailable naming the port; a partial reply is never data.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "xbar/a0/commands.h"
#include "xbar/a0/dac.h"
#include "xbar/base/error.h"
#include "xbar/drivers/a0_link.h"
#include "xbar/wire/frame.h"
#include "xbar/wire/messages.h"

namespace xbar {

struct A0Window {
  double lo_V = 0, hi_V = 0;
};

/// What the A0's host code leaves to the lab, as configuration (a0: URI keys, docs/a0.md).
struct A0Config {
  std::string serial = "A0";  // INFO.serial: the board has no identify command
  a0::DacSpan span = a0::DacSpan::kPlusMinus10V;
  double v_read_V = 0.2;     // PLANE_VPP = V_ref_TIA - V_read
  double v_ref_tia_V = 0.5;  // P_VREF_TIA; also the ADC's zero-current level
  double v_adc_hi_V = 4.0;   // DAC_VREF_HI_CMP, the ADC's full scale
  double read_gate_V = 5.0;  // P_TVDD during reads
  A0Window set_v{1.0, 3.5}, set_gate{0.5, 2.0};
  A0Window reset_v{0.3, 3.5}, reset_gate{5.0, 5.5};
  uint16_t width_step_ns = 20;    // one CK_ARRAY period (50 MHz)
  uint16_t width_max_code = 250;  // P_RESET = width code + 1 stays below 0xFF
  uint32_t read_delay_us = 0;     // 402/403 Tdly
  std::chrono::milliseconds reply_timeout{2000};
  /// Divides host waits (READ.settle_ms, WAIT). Only for a twin whose devices relax faster
  /// than real time (xbar-fwsim --time-scale); a real board's devices relax in real time.
  double time_scale = 1.0;
};

/// What the bridge did on the wire, for the docs' round-trip figures and the tests.
struct A0Counters {
  uint64_t commands = 0, round_trips = 0, bytes_out = 0, bytes_in = 0;
  uint64_t pulses = 0, resyncs = 0, lost_acks = 0;
};

/// \context One thread at a time (the transport's; ProtocolClient serialises callers).
class A0Bridge {
 public:
  A0Bridge(A0Link& link, A0Config config);

  /// Brings the board to a known state: the echo probe (is this an A0?), the DAC span and the
  /// read bias, the control block and the TIA gain. kUnavailable naming the port on no answer.
  Result<void> power_up();

  /// Executes one protocol v1 request frame; returns the reply frame (an error reply for a
  /// refused request, refused before anything is sent). kUnavailable when the link is gone
  /// and nothing of the request was applied (ProtocolClient may then send it again).
  Result<std::vector<uint8_t>> execute(std::span<const uint8_t> request_frame);

  const A0Counters& counters() const { return counters_; }
  const A0Config& config() const { return config_; }

 private:
  using Reply = Result<std::vector<uint8_t>>;  // a reply payload, or a link failure
  struct Refusal {
    wire::BoardErrorCode code;
    std::string message;
  };
  using Outcome = std::expected<std::vector<uint8_t>, Refusal>;
  static Outcome refused(std::string message,
                         wire::BoardErrorCode code = wire::BoardErrorCode::kOutOfRange) {
    return std::unexpected(Refusal{code, std::move(message)});
  }

  Result<Outcome> dispatch(const wire::Header& h, std::span<const uint8_t> payload);
  Outcome info() const;
  Outcome status() const;
  Result<Outcome> read(std::span<const uint8_t> payload);
  Result<Outcome> pulse_batch(std::span<const uint8_t> payload);
  Result<Outcome> vmm(std::span<const uint8_t> payload);
  Result<Outcome> wait(std::span<const uint8_t> payload);

  // The A0 side.
  Result<void> send(const a0::Command& c);
  Result<std::vector<uint8_t>> call(const a0::Command& c, size_t reply_bytes);
  /// A command that may run twice (a read, a scan-chain load): on no reply or part of one,
  /// resynchronised and sent once more.
  Result<std::vector<uint8_t>> call_repeatable(const a0::Command& c, size_t reply_bytes);
  Result<void> resync(const std::string& why);
  Result<void> echo_probe();
  Result<void> set_dac(a0::DacChannel ch, double v_V);
  Result<void> ensure_read_bias();
  Result<void> ensure_gain(int gain_index);
  Result<std::vector<uint16_t>> read_array_codes(uint8_t array);
  Result<void> write_batch(uint8_t array, bool set, uint16_t width_code,
                           const std::vector<uint16_t>& v_codes,
                           const std::vector<uint16_t>& gate_codes);
  void host_wait_ms(double ms) const;
  uint64_t board_uptime_ns() const;

  A0Link& link_;
  A0Config config_;
  A0Counters counters_;
  std::chrono::steady_clock::time_point opened_at_;
  bool read_bias_set_ = false;
  bool final_sent_ = false;  // write_batch sent its last 405 message
  std::optional<int> gain_;
  uint64_t ops_executed_ = 0;
  uint16_t last_error_ = 0;
  // The last request and its reply: a request sent again (same seq, same bytes) is answered
  // from here, never executed twice.
  std::vector<uint8_t> last_request_, last_reply_;
};

}  // namespace xbar
