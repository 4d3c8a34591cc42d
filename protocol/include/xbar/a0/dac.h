// The A0 board's 16-channel, 16-bit DAC (docs/a0.md): which channel drives what, its output
// spans, and the words command 214 sends. Source: lican81/A0_DUT misc.py (channels, spans) and
// dut_func.py dac_init / dac_set / dac_volt2raw.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace xbar::a0 {

/// The DAC's channels (misc.py; firmware dut_func.h has the same enum).
enum class DacChannel : uint8_t {
  kPlaneVpp = 0,   // the read plane: V_ref_TIA - V_read
  kVrefArray = 1,  // the array's reference
  kVrefTia = 2,    // the TIAs' reference
  kVrefHiCmp = 3,  // the ADC's high reference (4 V)
  kVrefSh = 4,     // sample-and-hold reference
  kVpPad = 5,      // the write-pulse voltage
  kTvdd = 6,       // the gate voltage
  kVagc0 = 7,      // automatic gain thresholds
  kVagc1 = 8,
  kAdcExtTestIn = 9,  // ADC test input
  kAmpVref = 10,
  kAmpInput = 11,
};

/// Output spans (misc.py DAC_SPAN). The host code runs at ±10 V.
enum class DacSpan : uint8_t {
  k0To5V = 0b000,
  k0To10V = 0b001,
  kPlusMinus5V = 0b010,
  kPlusMinus10V = 0b011,
  kPlusMinus2_5V = 0b100,
};

struct SpanLimits {
  double lo_V, hi_V;
};
SpanLimits span_limits(DacSpan s);

/// The 16-bit code for `v_V` in span `s`, as dac_volt2raw computes it (truncated, 0xFFFF at the
/// top). Refuses a voltage outside the span, naming `field` and the span's range, so that an
/// out-of-range voltage never reaches the board (the host code does not check, and an
/// out-of-span code spills into the word's address bits).
std::expected<uint16_t, std::string> dac_code(double v_V, DacSpan s, std::string_view field);
/// The voltage a code gives in span `s`.
double dac_volts(uint16_t code, DacSpan s);

/// Command 214's word that sets a channel's code (DAC command 0b0011).
constexpr uint32_t dac_set_word(DacChannel ch, uint16_t code) {
  return code | (static_cast<uint32_t>(ch) << 16) | (0b0011u << 20);
}
/// Command 214's word that sets every channel's span (DAC command 0b1110).
constexpr uint32_t dac_span_word(DacSpan s) { return static_cast<uint32_t>(s) | (0b1110u << 20); }

}  // namespace xbar::a0
