// The twin's A0 personality (issue 20, docs/a0.md): the same chip physics (chip.h) behind the
// A0 DPE test board's serial command set (xbar/a0/commands.h), as its PIC firmware executes it.
// It takes the host's bytes as they come off a tty (commands split or glued together anywhere)
// and returns the bytes the board sends back.
//
// What it models, and what it assumes where the public firmware leaves a behaviour open:
// - The DAC (214): the span word and each channel's code. Reads use V_read = V(P_VREF_TIA) -
//   V(PLANE_VPP). The twin's physics is characterised at the profile's read voltage, so a read
//   at another V_read is refused (no reply: the PIC would hang on a wrong bias just as
//   silently) and counted in bad_reads(); writes take V_write and V_gate from the command's
//   own codes, as 404/405/406 do.
// - The TIA chains (303, chains 0 and 1): the gain of a fixed-gain read is the one-hot gain of
//   the first TIA word; automatic gain picks, per column, the highest of gains 0..3 whose
//   code is below full scale (the firmware reports only two gain bits).
// - The control chain (303, chain 2): byte 6 is P_RESET; a 404/405 pulse is (P_RESET - 1)
//   periods of CK_ARRAY, taken as the profile's width step (20 ns: 50 MHz).
// - Time: each command advances the chip's clock by its modelled duration, and the wall time
//   between commands advances it too, times `time_scale` (a test runs the board's relaxation
//   faster than real time; a real board has time_scale 1 by definition).
// - Malformed commands get no reply (the firmware's atoi reads them as zeros and an unknown
//   code is ignored; here nothing is executed at all), and are counted in bad_commands().
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "xbar/a0/commands.h"
#include "xbar/a0/dac.h"
#include "xbar/twin/chip.h"
#include "xbar/twin/profile.h"

namespace xbar::twin {

struct A0BoardOptions {
  uint64_t chip_seed = 1;
  uint64_t noise_seed = 1;
  double time_scale = 1.0;  // device seconds per wall-clock second between commands
};

/// \context One thread (the pty server's loop). Not thread-safe.
class A0Board {
 public:
  A0Board(const ChipProfile& profile, A0BoardOptions options);

  /// Takes bytes from the host and returns every reply byte they complete (often none).
  std::vector<uint8_t> feed(std::span<const uint8_t> bytes);

  Chip& chip() { return chip_; }
  uint64_t commands_executed() const { return commands_; }
  uint64_t bad_commands() const { return bad_commands_; }
  uint64_t bad_reads() const { return bad_reads_; }
  /// Commands executed, by code (103, 214, ...): what a host's job cost on the wire.
  const std::map<int, uint64_t>& commands_by_code() const { return by_code_; }

 private:
  std::vector<uint8_t> execute(const a0::Command& c);
  std::vector<uint8_t> read_single(const a0::ReadSingle& r);
  std::vector<uint8_t> read_batch(const a0::ReadBatch& r);
  std::vector<uint8_t> dpe_batch(const a0::DpeBatch& d);
  std::vector<uint8_t> write_single(uint8_t array, uint8_t row, uint8_t col, a0::WriteMode mode,
                                    uint16_t v_code, uint16_t gate_code, double width_ns);
  std::vector<uint8_t> write_batch_part(const a0::WriteBatchPart& w);
  void dac_write(uint32_t word);
  void scan_write(const a0::ScanWrite& s);
  /// False when the DAC's read bias is not the profile's read voltage (see above).
  bool read_bias_ok();
  /// One read's ADC word (401's conversion, without the bias check or the clock).
  uint16_t read_word(const a0::ReadSingle& r);
  double volts(uint16_t code) const { return a0::dac_volts(code, span_); }
  void account_wall_time();

  ChipProfile profile_;
  Chip chip_;
  double time_scale_;
  std::chrono::steady_clock::time_point last_command_;
  std::vector<uint8_t> pending_;  // bytes of a command not yet complete
  a0::DacSpan span_ = a0::DacSpan::kPlusMinus10V;
  std::array<uint16_t, 16> dac_{};
  std::array<uint8_t, 7> control_{0x10, 0x02, 0x0C, 0x10, 0x20, 0x01, 0x02};  // power-on
  int gain_ = 0;                       // the fixed gain the TIA chains set
  std::vector<uint16_t> write_codes_;  // 405's buffers: 64 x 64 write codes, then 64 x 64 gate
  uint64_t op_ = 0;
  uint64_t commands_ = 0, bad_commands_ = 0, bad_reads_ = 0;
  std::map<int, uint64_t> by_code_;
};

}  // namespace xbar::twin
