// Philox4x32-10 counter-based RNG (Salmon et al., SC'11). Every random number of the twin is
// a pure function of (key, counter): the result never depends on call order or threads, which
// is what makes every ADC code reproducible to the bit. Known-answer tests in
// tests/philox_test.cc use the Random123 kat_vectors.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace xbar::twin {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

inline PhiloxCounter philox4x32_10(PhiloxCounter ctr, PhiloxKey key) {
  constexpr uint32_t kM0 = 0xD2511F53, kM1 = 0xCD9E8D57;
  constexpr uint32_t kW0 = 0x9E3779B9, kW1 = 0xBB67AE85;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{kM0} * ctr[0];
    const uint64_t p1 = uint64_t{kM1} * ctr[2];
    ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
           static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

inline PhiloxKey key_from_seed(uint64_t seed) {
  return {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
}

/// Uniform in the open interval (0, 1) from 32 random bits.
inline double uniform_open(uint32_t x) { return (static_cast<double>(x) + 0.5) * 0x1p-32; }

/// Four standard normals from one Philox block (two Box-Muller pairs).
inline std::array<double, 4> normals4(const PhiloxCounter& bits) {
  std::array<double, 4> z{};
  for (int k = 0; k < 2; ++k) {
    const double r = std::sqrt(-2.0 * std::log(uniform_open(bits[2 * k])));
    const double t = 2.0 * std::numbers::pi * uniform_open(bits[2 * k + 1]);
    z[2 * k] = r * std::cos(t);
    z[2 * k + 1] = r * std::sin(t);
  }
  return z;
}

/// Two standard normals from the first two words of a Philox block (one Box-Muller pair).
inline std::array<double, 2> normals2(const PhiloxCounter& bits) {
  const double r = std::sqrt(-2.0 * std::log(uniform_open(bits[0])));
  const double t = 2.0 * std::numbers::pi * uniform_open(bits[1]);
  return {r * std::cos(t), r * std::sin(t)};
}

/// Uniform in (0, 1) with 24 bits, exactly representable as a float.
inline float uniform24(uint32_t x) { return (static_cast<float>(x >> 8) + 0.5f) * 0x1p-24f; }

/// Stream tags (counter word 3, low byte): one per purpose, so streams never overlap.
enum class Stream : uint32_t {
  kDeviceParams = 0x01,  // chip seed: per-device thresholds, rates, initial state
  kFaultDraw = 0x02,     // chip seed: which devices are faulty
  kFaultValue = 0x03,    // chip seed: stuck conductances
  kC2C = 0x11,           // noise seed: cycle-to-cycle step noise of a pulse
  kRelax = 0x12,         // noise seed: relaxation offset of a programming event
  kReadNoise = 0x13,     // noise seed: per-device read fluctuation
  kVmmColumn = 0x14,     // noise seed: per-column VMM noise
  kVmmDevice = 0x15,     // noise seed: per-device VMM noise (exact mode)
};

/// Counter layout used throughout the twin: (a, b, c, stream | op_hi << 8).
inline PhiloxCounter make_counter(Stream s, uint32_t a, uint32_t b, uint32_t c, uint32_t hi = 0) {
  return {a, b, c, static_cast<uint32_t>(s) | (hi << 8)};
}

}  // namespace xbar::twin
