#include <fmt/format.h>

#include "xbar/a0/chains.h"

namespace xbar::a0 {

std::vector<uint8_t> tia_chain(int gain_index) {
  const uint16_t word = kTiaGainWords.at(static_cast<size_t>(gain_index));
  std::vector<uint8_t> out(kTiaChainBytes, 0);
  for (int t = 0; t < kTias; ++t) {
    for (int b = 0; b < 10; ++b) {
      if (!((word >> (9 - b)) & 1u)) continue;
      const size_t bit = static_cast<size_t>(t) * 10 + static_cast<size_t>(b);
      out[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
    }
  }
  return out;
}

std::expected<int, std::string> tia_chain_gain(std::span<const uint8_t> chain) {
  if (chain.size() != kTiaChainBytes) {
    return std::unexpected(
        fmt::format("TIA chain of {} bytes: the chain holds {}", chain.size(), kTiaChainBytes));
  }
  auto word_at = [&](int t) {
    uint16_t w = 0;
    for (int b = 0; b < 10; ++b) {
      const size_t bit = static_cast<size_t>(t) * 10 + static_cast<size_t>(b);
      w = static_cast<uint16_t>((w << 1) | ((chain[bit / 8] >> (7 - bit % 8)) & 1u));
    }
    return w;
  };
  const uint16_t first = word_at(0);
  for (int t = 1; t < kTias; ++t) {
    if (word_at(t) != first) {
      return std::unexpected(fmt::format("TIA {} has word {:#05x}, TIA 0 {:#05x}: one gain for all",
                                         t, word_at(t), first));
    }
  }
  const unsigned gain_bits = first & 0x1Fu;
  for (int g = 0; g < 5; ++g) {
    if (gain_bits == (1u << g)) return g;
  }
  return std::unexpected(
      fmt::format("TIA word {:#05x}: gain bits {:#04x} are not one-hot", first, gain_bits));
}

std::array<uint8_t, kControlChainBytes> control_chain_write(uint8_t p_reset) {
  return {0x80, 0x01, 0x0C, 0x10, 0x20, 0x01, p_reset};
}

std::array<uint8_t, kControlChainBytes> control_chain_read(uint8_t t_agc, uint8_t t_sh) {
  return {0x10, 0x02, t_agc, 0x10, t_sh, 0x01, 0x02};
}

}  // namespace xbar::a0
