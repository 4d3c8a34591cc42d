// The twin's device physics: each test states a physical behaviour that a wrong model breaks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "xbar/twin/chip.h"

namespace xbar::twin {
namespace {

using wire::FaultKind;
using wire::Polarity;

ChipProfile profile(const std::string& name) {
  auto p = load_profile(name);
  EXPECT_TRUE(p.has_value()) << p.error();
  return *p;
}

constexpr uint64_t kSettle_ns = 10'000'000'000ull;  // 10 s: relaxation is over

// Healthy (non-faulty) devices of array 0, row-major, at most n.
std::vector<std::pair<int, int>> healthy(const Chip& chip, size_t n) {
  std::vector<std::pair<int, int>> out;
  for (int r = 0; r < chip.rows() && out.size() < n; ++r) {
    for (int c = 0; c < chip.cols() && out.size() < n; ++c) {
      if (chip.device(0, r, c).fault == FaultKind::kNone) out.emplace_back(r, c);
    }
  }
  return out;
}

double mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}

TEST(Physics, HigherGateSetsHigherConductance) {
  Chip chip(profile("typical"), 3, 4);
  const auto devs = healthy(chip, 400);
  uint64_t op = 1;
  std::vector<double> low_gate, high_gate;
  for (size_t i = 0; i < devs.size(); ++i) {
    const auto [r, c] = devs[i];
    const double gate_V = (i % 2) ? 1.6 : 0.8;  // compliance ~192 uS vs ~64 uS
    for (int k = 0; k < 6; ++k) chip.pulse(0, r, c, Polarity::kSet, 3.0, gate_V, 1000, op++);
  }
  chip.advance_ns(kSettle_ns);
  for (size_t i = 0; i < devs.size(); ++i) {
    (i % 2 ? high_gate : low_gate).push_back(chip.true_g_uS(0, devs[i].first, devs[i].second));
  }
  EXPECT_GT(mean(high_gate), mean(low_gate) + 80.0)
      << "low gate " << mean(low_gate) << " uS, high gate " << mean(high_gate) << " uS";
  EXPECT_NEAR(mean(low_gate), 64.0, 15.0);
}

TEST(Physics, ResetLowersConductance) {
  Chip chip(profile("typical"), 3, 4);
  const auto devs = healthy(chip, 300);
  uint64_t op = 1;
  for (auto [r, c] : devs) {
    for (int k = 0; k < 4; ++k) chip.pulse(0, r, c, Polarity::kSet, 3.0, 1.5, 1000, op++);
  }
  chip.advance_ns(kSettle_ns);
  std::vector<double> before, after;
  for (auto [r, c] : devs) before.push_back(chip.true_g_uS(0, r, c));
  for (auto [r, c] : devs) chip.pulse(0, r, c, Polarity::kReset, 1.5, 5.0, 500, op++);
  chip.advance_ns(kSettle_ns);
  int lowered = 0;
  for (size_t i = 0; i < devs.size(); ++i) {
    after.push_back(chip.true_g_uS(0, devs[i].first, devs[i].second));
    lowered += after[i] < before[i];
  }
  EXPECT_GE(lowered, static_cast<int>(0.95 * devs.size()));
  EXPECT_LT(mean(after), 0.6 * mean(before));
}

TEST(Physics, StuckDevicesDoNotMove) {
  Chip chip(profile("harsh"), 9, 1);
  int stuck_high = 0, stuck_low = 0;
  uint64_t op = 1;
  for (int r = 0; r < chip.rows(); ++r) {
    for (int c = 0; c < chip.cols(); ++c) {
      const FaultKind f = chip.device(0, r, c).fault;
      if (f != FaultKind::kStuckHigh && f != FaultKind::kStuckLow) continue;
      const double g0 = chip.true_g_uS(0, r, c);
      chip.pulse(0, r, c, Polarity::kReset, 3.5, 5.5, 5000, op++);
      chip.pulse(0, r, c, Polarity::kSet, 3.5, 2.0, 5000, op++);
      chip.advance_ns(kSettle_ns);
      EXPECT_EQ(chip.true_g_uS(0, r, c), g0) << "(" << r << "," << c << ")";
      if (f == FaultKind::kStuckHigh) {
        ++stuck_high;
        EXPECT_GE(g0, 300.0);
      } else {
        ++stuck_low;
        EXPECT_LE(g0, 1.0);
      }
    }
  }
  // harsh: 2 % + 2 % of 4096 devices, ~82 each; a broken fault draw shows up here.
  EXPECT_GT(stuck_high, 40);
  EXPECT_GT(stuck_low, 40);
}

TEST(Physics, ImssaProfileHasOneToThreeStuckHighPerArray) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Chip chip(profile("imssa"), seed, 1);
    for (int a = 0; a < chip.arrays(); ++a) {
      int n = 0, other = 0;
      for (int r = 0; r < chip.rows(); ++r) {
        for (int c = 0; c < chip.cols(); ++c) {
          n += chip.device(a, r, c).fault == FaultKind::kStuckHigh;
          other += chip.device(a, r, c).fault == FaultKind::kStuckLow;
        }
      }
      EXPECT_GE(n, 1);
      EXPECT_LE(n, 3);
      EXPECT_EQ(other, 0);
    }
  }
}

TEST(Physics, SlowDevicesNeedMoreThanOnePulse) {
  Chip chip(profile("harsh"), 5, 2);
  std::vector<double> slow_step, normal_step;
  uint64_t op = 1;
  for (int r = 0; r < 32; ++r) {
    for (int c = 0; c < chip.cols(); ++c) {
      const FaultKind f = chip.device(0, r, c).fault;
      if (f == FaultKind::kStuckHigh || f == FaultKind::kStuckLow) continue;
      const double g0 = chip.true_g_uS(0, r, c);
      chip.pulse(0, r, c, Polarity::kSet, 1.5, 1.5, 200, op++);
      chip.advance_ns(kSettle_ns);
      (f == FaultKind::kSlow ? slow_step : normal_step).push_back(chip.true_g_uS(0, r, c) - g0);
    }
  }
  ASSERT_GT(slow_step.size(), 20u);
  EXPECT_LT(mean(slow_step), 0.4 * mean(normal_step));
}

TEST(Physics, RelaxationOffsetHasTheConfiguredSpread) {
  ChipProfile p = profile("typical");
  Chip chip(p, 21, 8);
  std::vector<double> drift;
  uint64_t op = 1;
  for (int r = 0; r < chip.rows(); ++r) {
    for (int c = 0; c < chip.cols(); ++c) {
      if (chip.device(0, r, c).fault != FaultKind::kNone) continue;
      chip.pulse(0, r, c, Polarity::kSet, 3.5, 1.7, 2000, op++);
      const Device& d = chip.device(0, r, c);
      // Only devices outside the 20..80 uS window (sigma 5 uS) and far from the clamps.
      if (d.g_prog_uS > 100 && d.g_prog_uS < 250) drift.push_back(d.relax_offset_uS);
    }
  }
  ASSERT_GT(drift.size(), 1000u);
  double s2 = 0;
  for (double x : drift) s2 += x * x;
  EXPECT_NEAR(std::sqrt(s2 / drift.size()), p.relax_sigma_other_uS, 0.4);

  // The offset is reached gradually: after one tau about 63 % of it.
  const int r = 0, c = 0;
  chip.pulse(0, r, c, Polarity::kSet, 3.5, 1.7, 2000, op++);
  const Device d = chip.device(0, r, c);
  chip.advance_ns(static_cast<uint64_t>(p.relax_tau_s * 1e9));
  EXPECT_NEAR(chip.true_g_uS(0, r, c) - d.g_prog_uS, d.relax_offset_uS * (1 - std::exp(-1.0)),
              1e-6);
}

// Reads at a fixed true conductance through a 16-bit ADC (so quantisation is negligible) and
// compares the read deviation with the configured fluctuation model.
class ReadNoise : public ::testing::TestWithParam<double> {};

TEST_P(ReadNoise, MatchesTheConfiguredModel) {
  const double g_uS = GetParam();
  ChipProfile p = profile("typical");
  p.adc_bits = 16;
  Chip chip(p, 1, 77);
  chip.inject_fault(0, 0, 0, FaultKind::kStuckHigh, g_uS);  // frozen: only read noise varies
  const int gain = 2;
  const double lsb_V = (p.adc_v_hi_V - p.adc_v_lo_V) / 65535.0;
  const int n = 40000;
  std::vector<double> log_dev;
  double sum_sq = 0;
  for (int k = 0; k < n; ++k) {
    const uint32_t code = chip.read_code(0, 0, 0, gain, 1000 + k, 0);
    const double g_read = code * lsb_V / p.tia_gains_ohm[gain] / p.v_read_V * 1e6;
    const double dev = g_read - g_uS;
    sum_sq += dev * dev;
    log_dev.push_back(std::log(std::abs(dev) + 1e-12));
  }
  // log|dev| = a + Z + log|N|: its median tests the median sigma exp(a). The median of
  // Z + log|N| comes from an independent generator (not Philox), so this is a real check.
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  std::vector<double> ref(400000);
  for (double& x : ref) x = normal(rng) + std::log(std::abs(normal(rng)));
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  const double a = p.fluc_slope * std::log(std::min(g_uS, p.fluc_g_cap_uS)) + p.fluc_offset;
  EXPECT_NEAR(median(log_dev), a + median(ref), 0.04) << "median sigma " << std::exp(a) << " uS";
  // E[dev^2] = E[sigma^2] (no folding at these conductances): the closed form.
  EXPECT_NEAR(sum_sq / n / chip.fluctuation_variance(g_uS), 1.0, 0.08);
}

TEST(Physics, ReadMomentsIncludeTheFoldAtLowConductance) {
  const ChipProfile p = profile("typical");
  Chip chip(p, 1, 1);
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal;
  for (double g : {1.0, 2.0, 7.0, 60.0}) {
    double m1 = 0, m2 = 0;
    const int n = 400000;
    const double a = p.fluc_slope * std::log(std::min(g, p.fluc_g_cap_uS)) + p.fluc_offset;
    for (int k = 0; k < n; ++k) {
      const double s = std::min(p.fluc_sigma_cap_uS, std::exp(a + normal(rng)));
      const double x = std::abs(g + s * normal(rng));
      m1 += x;
      m2 += x * x;
    }
    m1 /= n;
    const double var = m2 / n - m1 * m1;
    const auto m = chip.read_moments(g);
    EXPECT_NEAR(m.mean_uS, m1, 0.01 * m1 + 0.01) << "g = " << g;
    EXPECT_NEAR(m.var_uS2, var, 0.05 * var) << "g = " << g;
  }
}

INSTANTIATE_TEST_SUITE_P(AtConductances, ReadNoise, ::testing::Values(30.0, 150.0));

TEST(Physics, MedianReadSigmaMatchesTheBrief) {
  // DESIGN.md §2: median sigma 0.5 uS at 7 uS and 2.4 uS at >= 50 uS.
  const ChipProfile p = profile("typical");
  auto median_sigma = [&](double g) {
    return std::exp(p.fluc_slope * std::log(std::min(g, p.fluc_g_cap_uS)) + p.fluc_offset);
  };
  EXPECT_NEAR(median_sigma(7), 0.52, 0.02);
  EXPECT_NEAR(median_sigma(200), 2.44, 0.02);
}

TEST(Physics, AdcSaturatesAtFullScale) {
  Chip chip(profile("ideal"), 1, 1);
  chip.inject_fault(0, 0, 0, FaultKind::kStuckHigh, 600.0);
  EXPECT_EQ(chip.read_code(0, 0, 0, 2, 1, 0), 1023u);       // 30 kOhm: full scale 583 uS
  const uint32_t at_5k = chip.read_code(0, 0, 0, 1, 2, 0);  // 5 kOhm: full scale 3500 uS
  EXPECT_NEAR(at_5k, 600.0 / 3500.0 * 1023, 0.5001);
}

TEST(Physics, BitSerialVmmIsTheShiftAndAddOfItsPlanes) {
  Chip chip(profile("ideal"), 1, 1);
  uint64_t op = 1;
  for (int r = 0; r < chip.rows(); ++r) {
    for (int c = 0; c < chip.cols(); ++c) {
      chip.pulse(0, r, c, Polarity::kSet, 2.0, 0.5 + 0.02 * ((r * 7 + c) % 60), 500, op++);
    }
  }
  std::vector<uint8_t> x(64);
  for (int r = 0; r < 64; ++r) x[r] = static_cast<uint8_t>((r * 37 + 11) % 256);
  std::vector<uint32_t> acc(64);
  chip.vmm(0, 0, x, op++, acc);
  std::vector<uint32_t> by_planes(64, 0);
  for (int b = 0; b < 8; ++b) {
    std::vector<uint8_t> plane(64);
    for (int r = 0; r < 64; ++r) plane[r] = (x[r] >> b) & 1u;
    std::vector<uint32_t> one(64);
    chip.vmm(0, 0, plane, op++, one);
    for (int c = 0; c < 64; ++c) by_planes[c] += one[c] << b;
  }
  EXPECT_EQ(acc, by_planes);
  // And each plane's code is the ADC of the summed column current.
  const ChipProfile& p = chip.profile();
  for (int c = 0; c < 64; c += 9) {
    double g_sum = 0;
    for (int r = 0; r < 64; ++r) g_sum += (x[r] & 1u) ? chip.true_g_uS(0, r, c) : 0.0;
    std::vector<uint8_t> plane(64);
    for (int r = 0; r < 64; ++r) plane[r] = x[r] & 1u;
    std::vector<uint32_t> one(64);
    chip.vmm(0, 0, plane, op++, one);
    EXPECT_EQ(one[c], chip.adc_code(g_sum * 1e-6 * p.v_read_V, 0));
  }
}

TEST(Physics, PerColumnVmmNoiseMatchesPerDeviceInMeanAndVariance) {
  ChipProfile pc = profile("typical");
  pc.stuck_high = pc.stuck_low = pc.slow = {};
  ChipProfile pd = pc;
  pd.vmm_noise = "per_device";
  Chip a(pc, 4, 1), b(pd, 4, 2);
  std::vector<uint8_t> x(64, 0);
  for (int r = 0; r < 8; ++r) x[r * 8] = 1;  // 8 active rows, plane 0 only
  const int n = 3000;
  const int gain = 3;  // 200 kOhm: LSB 0.085 uS, far below the noise
  std::vector<double> ma(64, 0), mb(64, 0), va(64, 0), vb(64, 0);
  std::vector<uint32_t> acc(64);
  for (int k = 0; k < n; ++k) {
    a.vmm(0, gain, x, 10 + k, acc);
    for (int c = 0; c < 64; ++c) {
      ma[c] += acc[c];
      va[c] += double(acc[c]) * acc[c];
    }
    b.vmm(0, gain, x, 10 + k, acc);
    for (int c = 0; c < 64; ++c) {
      mb[c] += acc[c];
      vb[c] += double(acc[c]) * acc[c];
    }
  }
  double ratio_sum = 0, z_max = 0;
  for (int c = 0; c < 64; ++c) {
    ma[c] /= n;
    mb[c] /= n;
    va[c] = va[c] / n - ma[c] * ma[c];
    vb[c] = vb[c] / n - mb[c] * mb[c];
    ratio_sum += va[c] / vb[c];
    z_max = std::max(z_max, std::abs(ma[c] - mb[c]) / std::sqrt((va[c] + vb[c]) / n));
  }
  EXPECT_NEAR(ratio_sum / 64, 1.0, 0.1) << "per-column / per-device variance";
  EXPECT_LT(z_max, 5.0) << "column means differ beyond sampling error";
}

}  // namespace
}  // namespace xbar::twin
