// The A0's scan chains as command 303 loads them (docs/a0.md): the TIA chains, which set each
// TIA's gain, and the control block, whose last byte times the write pulse. Both sides use
// these: the a0: backend builds the bytes, the twin's A0 personality reads them back.
// Sources: lican81/A0_DUT dut_func.py (scan_tia, scan_control), dut_a0.py (_gain_table,
// pic_read_config, pic_write_batch).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

namespace xbar::a0 {

/// The chain addresses of 303.
inline constexpr uint8_t kChainTiaBottom = 0, kChainTiaTop = 1, kChainControl = 2;

/// One TIA's 10-bit word: bit 9 sample-and-hold enable, 8 op-amp enable, 7 and 6 the 400 fF and
/// 150 fF compensation, 5 Miller compensation, 4..0 the one-hot gain (1 MΩ, 200 kΩ, 30 kΩ,
/// 5 kΩ, 1 kΩ). The lab's word for each gain index (dut_a0.py _gain_table).
inline constexpr std::array<uint16_t, 5> kTiaGainWords = {0b1111100001, 0b1111100010, 0b1101000100,
                                                          0b1100001000, 0b1100010000};
inline constexpr std::array<double, 5> kTiaGainsOhm = {1e3, 5e3, 30e3, 200e3, 1e6};
/// 96 TIAs (32 per array and half) x 10 bits, packed most significant bit first.
inline constexpr int kTias = 96;
inline constexpr size_t kTiaChainBytes = 120;

/// The bytes of a TIA chain with every TIA at `gain_index` (0..4), as scan_tia sends them to
/// chains 0 and 1 (BitArray(word * 96).bytes).
std::vector<uint8_t> tia_chain(int gain_index);
/// The gain index a TIA chain sets, or why it sets none: every TIA must carry the same word,
/// with exactly one gain bit.
std::expected<int, std::string> tia_chain_gain(std::span<const uint8_t> chain);

/// The control block: 7 bytes, delays in CK_ARRAY periods. Byte 6, P_RESET, ends the write
/// pulse of 404/405: the pulse lasts (P_RESET - 1) periods, and the lab code asserts
/// 0x01 < P_RESET < 0xFF.
inline constexpr size_t kControlChainBytes = 7;
inline constexpr uint8_t kPResetMin = 0x02, kPResetMax = 0xFE;
/// The block pic_write_batch loads before a batch write.
std::array<uint8_t, kControlChainBytes> control_chain_write(uint8_t p_reset);
/// The block pic_read_config loads before reads (T_agc and T_sh at the lab's defaults for the
/// fixed gains up to 30 kΩ).
std::array<uint8_t, kControlChainBytes> control_chain_read(uint8_t t_agc = 0x24, uint8_t t_sh = 12);

}  // namespace xbar::a0
