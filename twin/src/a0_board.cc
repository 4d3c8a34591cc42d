#include "xbar/twin/a0_board.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <variant>

#include "xbar/a0/chains.h"

namespace xbar::twin {

namespace {

// The firmware's fixed waits (fw dut_func.c): the DAC settling before a write pulse, the
// pulse's own 0.2 us strobe and the 1 us after it; 406 settles 10 us and adds about 40 us on
// the pad (dut_a0.py pic_write_single_ext's docstring).
constexpr double kWriteSettleUs = 5.0, kWriteAfterUs = 1.2;
constexpr double kExtSettleUs = 10.0, kExtExtraUs = 40.0;
// A read's bias must match the profile's within this (the DAC's LSB at ±10 V is 0.3 mV).
constexpr double kBiasToleranceV = 2e-3;
// The automatic gain reports indices 0..3 only (two gain bits, docs/a0.md).
constexpr int kMaxAutoGain = 3;

std::vector<uint8_t> u16_reply(uint16_t v) {
  return {static_cast<uint8_t>(v & 0xFF), static_cast<uint8_t>(v >> 8)};
}

}  // namespace

A0Board::A0Board(const ChipProfile& profile, A0BoardOptions options)
    : profile_(profile),
      chip_(profile, options.chip_seed, options.noise_seed),
      time_scale_(options.time_scale),
      last_command_(std::chrono::steady_clock::now()),
      write_codes_(static_cast<size_t>(2 * a0::kRows * a0::kCols), 0) {}

std::vector<uint8_t> A0Board::feed(std::span<const uint8_t> bytes) {
  pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  std::vector<uint8_t> out;
  size_t at = 0;
  while (at < pending_.size()) {
    const a0::Parsed p = a0::parse_command(std::span(pending_).subspan(at));
    if (p.status == a0::Parsed::Status::kNeedMore) break;
    at += p.consumed;
    if (p.status == a0::Parsed::Status::kBad) {
      ++bad_commands_;
      continue;
    }
    account_wall_time();
    ++commands_;
    ++by_code_[a0::command_code(p.command)];
    const std::vector<uint8_t> reply = execute(p.command);
    out.insert(out.end(), reply.begin(), reply.end());
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(at));
  return out;
}

void A0Board::account_wall_time() {
  const auto now = std::chrono::steady_clock::now();
  const double gap_s = std::chrono::duration<double>(now - last_command_).count();
  last_command_ = now;
  if (gap_s > 0 && time_scale_ > 0)
    chip_.advance_ns(static_cast<uint64_t>(gap_s * time_scale_ * 1e9));
}

std::vector<uint8_t> A0Board::execute(const a0::Command& c) {
  ++op_;
  return std::visit(
      [&](const auto& cmd) -> std::vector<uint8_t> {
        using T = std::decay_t<decltype(cmd)>;
        if constexpr (std::is_same_v<T, a0::Echo>) {
          std::vector<uint8_t> r;
          for (int32_t i = 0; i < 64; ++i) {
            const int32_t v = 100000 * i;
            for (int b = 0; b < 4; ++b) r.push_back(static_cast<uint8_t>(v >> (8 * b)));
          }
          return r;
        } else if constexpr (std::is_same_v<T, a0::DacWrite>) {
          dac_write(cmd.word);
          return {};
        } else if constexpr (std::is_same_v<T, a0::ScanWrite>) {
          scan_write(cmd);
          return {a0::kAck};
        } else if constexpr (std::is_same_v<T, a0::PinWrite>) {
          return {};  // pads: the twin has no pad-level model (docs/a0.md)
        } else if constexpr (std::is_same_v<T, a0::ReadSingle>) {
          return read_single(cmd);
        } else if constexpr (std::is_same_v<T, a0::ReadBatch>) {
          return read_batch(cmd);
        } else if constexpr (std::is_same_v<T, a0::DpeBatch>) {
          return dpe_batch(cmd);
        } else if constexpr (std::is_same_v<T, a0::WriteSingle>) {
          const double width_ns = (control_[6] - 1.0) * profile_.width_step_ns;
          return write_single(cmd.array, cmd.row, cmd.col, cmd.mode, cmd.v_write_code,
                              cmd.v_gate_code, width_ns);
        } else if constexpr (std::is_same_v<T, a0::WriteSingleExt>) {
          auto r = write_single(cmd.array, cmd.row, cmd.col, cmd.mode, cmd.v_write_code,
                                cmd.v_gate_code, cmd.t_width_us * 1000.0);
          chip_.advance_ns(static_cast<uint64_t>((kExtSettleUs + kExtExtraUs) * 1000));
          return r;
        } else {
          static_assert(std::is_same_v<T, a0::WriteBatchPart>);
          return write_batch_part(cmd);
        }
      },
      c);
}

void A0Board::dac_write(uint32_t word) {
  const uint32_t command = (word >> 20) & 0xFu, channel = (word >> 16) & 0xFu;
  const uint16_t code = static_cast<uint16_t>(word & 0xFFFFu);
  if (command == 0b0011u) {
    dac_[channel] = code;
  } else if (command == 0b1110u && (code & 0x7u) <= 0b100u) {
    span_ = static_cast<a0::DacSpan>(code & 0x7u);
  }
}

void A0Board::scan_write(const a0::ScanWrite& s) {
  if (s.chain == a0::kChainControl && s.data.size() == a0::kControlChainBytes) {
    std::copy(s.data.begin(), s.data.end(), control_.begin());
  } else if (s.chain == a0::kChainTiaBottom || s.chain == a0::kChainTiaTop) {
    // Both halves carry the same words in the lab's code. A chain with no one gain for every
    // TIA keeps gain 0, the least sensitive.
    auto g = a0::tia_chain_gain(s.data);
    gain_ = g ? std::min(*g, static_cast<int>(profile_.tia_gains_ohm.size()) - 1) : 0;
  }
}

bool A0Board::read_bias_ok() {
  using a0::DacChannel;
  auto v = [&](DacChannel ch) { return volts(dac_[static_cast<size_t>(ch)]); };
  const double v_ref = v(DacChannel::kVrefTia);
  const double v_read = v_ref - v(DacChannel::kPlaneVpp);
  const bool ok = std::abs(v_read - profile_.v_read_V) <= kBiasToleranceV &&
                  std::abs(v_ref - profile_.tia_v_ref_V) <= kBiasToleranceV &&
                  std::abs(v(DacChannel::kVrefHiCmp) - profile_.adc_v_hi_V) <= kBiasToleranceV;
  if (!ok) ++bad_reads_;
  return ok;
}

std::vector<uint8_t> A0Board::read_single(const a0::ReadSingle& r) {
  if (!read_bias_ok()) return {};
  chip_.advance_ns(static_cast<uint64_t>(profile_.vmm_plane_us * 1000));
  return u16_reply(read_word(r));
}

uint16_t A0Board::read_word(const a0::ReadSingle& r) {
  if (r.gain == a0::GainMode::kFixed) {
    const uint32_t code = chip_.read_code(r.array, r.row, r.col, gain_, op_, 0);
    return a0::encode_adc_word({static_cast<uint16_t>(code), 0});
  }
  // Automatic gain: the most sensitive gain that does not saturate; the same draw at each.
  const uint32_t full = (1u << profile_.adc_bits) - 1;
  for (int g = kMaxAutoGain;; --g) {
    const uint32_t code = chip_.read_code(r.array, r.row, r.col, g, op_, 0);
    if (code < full || g == 0) {
      return a0::encode_adc_word({static_cast<uint16_t>(code), static_cast<uint8_t>(g)});
    }
  }
}

std::vector<uint8_t> A0Board::read_batch(const a0::ReadBatch& r) {
  if (!read_bias_ok()) return {};
  std::vector<uint16_t> words(static_cast<size_t>(a0::kRows * a0::kCols));
  for (int row = 0; row < a0::kRows; ++row) {
    for (int col = 0; col < a0::kCols; ++col) {
      // One op for the whole batch: the draws are keyed by device too, so they differ.
      words[static_cast<size_t>(row) * a0::kCols + static_cast<size_t>(col)] =
          read_word({r.array, static_cast<uint8_t>(row), static_cast<uint8_t>(col), r.gain});
    }
  }
  chip_.advance_ns(static_cast<uint64_t>(profile_.vmm_plane_us * 1000) * a0::kRows * a0::kCols);
  chip_.advance_ns(uint64_t{r.t_delay_us} * 1000 * a0::kRows * a0::kCols);
  return a0::encode_rows(words);
}

std::vector<uint8_t> A0Board::dpe_batch(const a0::DpeBatch& d) {
  if (!read_bias_ok()) return {};
  const int rows = a0::kRows, cols = a0::kCols;
  const size_t n = d.row_masks.size();
  // Each mask is one read with the masked rows at V_read: bit plane 0 of a 0/1 input vector.
  std::vector<uint8_t> inputs(n * rows, 0);
  for (size_t v = 0; v < n; ++v) {
    for (int r = 0; r < rows; ++r) inputs[v * rows + r] = (d.row_masks[v] >> r) & 1u;
  }
  // The other seven planes drive no row and add the zero-current code << b, 254 times in all.
  auto plane_codes = [&](int gain) {
    std::vector<uint32_t> acc(n * cols, 0);
    chip_.vmm(d.array, gain, inputs, op_, acc);
    const uint32_t zero = chip_.adc_code(0.0, gain) * 254u;
    for (uint32_t& a : acc) a -= zero;
    return acc;
  };
  std::vector<uint16_t> words(n * cols);
  if (d.gain == a0::GainMode::kFixed) {
    const std::vector<uint32_t> acc = plane_codes(gain_);
    for (size_t i = 0; i < acc.size(); ++i) words[i] = static_cast<uint16_t>(acc[i]);
  } else {
    const uint32_t full = (1u << profile_.adc_bits) - 1;
    std::vector<bool> chosen(n * cols, false);
    for (int g = kMaxAutoGain; g >= 0; --g) {
      const std::vector<uint32_t> acc = plane_codes(g);
      for (size_t i = 0; i < acc.size(); ++i) {
        if (chosen[i] || (acc[i] >= full && g > 0)) continue;
        chosen[i] = true;
        words[i] = a0::encode_adc_word({static_cast<uint16_t>(acc[i]), static_cast<uint8_t>(g)});
      }
    }
  }
  chip_.advance_ns(
      static_cast<uint64_t>(n * (profile_.vmm_plane_us * 1000 + d.t_delay_us * 1000.0)));
  return a0::encode_rows(words);
}

std::vector<uint8_t> A0Board::write_single(uint8_t array, uint8_t row, uint8_t col,
                                           a0::WriteMode mode, uint16_t v_code, uint16_t gate_code,
                                           double width_ns) {
  // A zero code is the firmware's "skip this device" (fw dut_func.c): still acknowledged.
  if (v_code != 0 && gate_code != 0 && width_ns > 0) {
    const wire::Polarity pol =
        mode == a0::WriteMode::kSet ? wire::Polarity::kSet : wire::Polarity::kReset;
    chip_.pulse(array, row, col, pol, volts(v_code), volts(gate_code), width_ns, op_);
    chip_.advance_ns(static_cast<uint64_t>((kWriteSettleUs + kWriteAfterUs) * 1000 + width_ns));
  }
  return {a0::kAck};
}

std::vector<uint8_t> A0Board::write_batch_part(const a0::WriteBatchPart& w) {
  // Rows 0..62 carry two rows of write codes, 64..126 two rows of gate codes (cmd.c).
  const size_t at = static_cast<size_t>(w.row) * a0::kCols;
  std::copy(w.codes.begin(), w.codes.end(), write_codes_.begin() + static_cast<std::ptrdiff_t>(at));
  if (w.row != a0::kLastWriteBatchRow) return {};
  const double width_ns = (control_[6] - 1.0) * profile_.width_step_ns;
  const size_t gate_at = static_cast<size_t>(a0::kRows) * a0::kCols;
  for (int r = 0; r < a0::kRows; ++r) {
    for (int c = 0; c < a0::kCols; ++c) {
      const size_t i = static_cast<size_t>(r) * a0::kCols + static_cast<size_t>(c);
      write_single(w.array, static_cast<uint8_t>(r), static_cast<uint8_t>(c), w.mode,
                   write_codes_[i], write_codes_[gate_at + i], width_ns);
    }
  }
  return {a0::kAck};
}

}  // namespace xbar::twin
