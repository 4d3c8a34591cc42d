// The kernel compiler: expansion, layout, golden models, routing and remapping invariants.
#include "xbar/kernel/kernel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "xbar/kernel/golden.h"
#include "xbar/kernel/remap.h"

namespace xbar::kernel {
namespace {

// An S4D-Lin style kernel: a_n = -0.5 + i pi n, C ~ N(0, 0.5^2) complex.
KernelSpec s4d_lin(int n, double log_dt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 0.5);
  KernelSpec k;
  k.name = "lin";
  k.continuous = true;
  k.log_dt = log_dt;
  for (int j = 0; j < n; ++j) {
    k.a.push_back(cd(-0.5, std::numbers::pi * j));
    k.c.push_back(cd(z(rng), z(rng)));
  }
  return k;
}

Eigen::VectorXd noise(int len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 1);
  Eigen::VectorXd u(len);
  for (int t = 0; t < len; ++t) u(t) = z(rng);
  return u;
}

Placement random_placement(uint64_t seed) {
  Placement p = Placement::identity();
  std::mt19937_64 rng(seed);
  std::shuffle(p.row_of.begin(), p.row_of.end(), rng);
  std::shuffle(p.col_of.begin(), p.col_of.end(), rng);
  return p;
}

TEST(Expansion, EveryBlockReproducesComplexMultiplicationExactly) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-2, 2);
  for (int trial = 0; trial < 1000; ++trial) {
    const cd m(u(rng), u(rng)), v(u(rng), u(rng));
    const Eigen::Matrix4d block = expand(m);
    ASSERT_GE(block.minCoeff(), 0.0);
    const Eigen::Vector4d rows(std::max(v.real(), 0.0), std::max(-v.real(), 0.0),
                               std::max(v.imag(), 0.0), std::max(-v.imag(), 0.0));
    const Eigen::Vector4d i = block.transpose() * rows;  // column currents
    const cd got(i(0) - i(1), i(2) - i(3));
    EXPECT_NEAR(got.real(), (m * v).real(), 1e-14);
    EXPECT_NEAR(got.imag(), (m * v).imag(), 1e-14);
    // A common offset on every device (g_min) cancels in the differences.
    const Eigen::Vector4d j = (block.array() + 3.0).matrix().transpose() * rows;
    EXPECT_NEAR(j(0) - j(1), got.real(), 1e-12);
    EXPECT_NEAR(j(2) - j(3), got.imag(), 1e-12);
  }
}

TEST(Quantization, FixedRangeGridAndClamp) {
  EXPECT_DOUBLE_EQ(quantize(0.3, 2, 1.0), 0.0);  // n = 1: ternary
  EXPECT_DOUBLE_EQ(quantize(-0.5, 2, 1.0), -1.0);
  EXPECT_DOUBLE_EQ(quantize(7.0, 2, 1.0), 1.0);       // clamped to the range
  EXPECT_DOUBLE_EQ(quantize(0.26, 3, 1.0), 1.0 / 3);  // n = 3
  EXPECT_DOUBLE_EQ(quantize(0.123, 0, 1.0), 0.123);   // off
  const cd q = quantize(cd(-0.7, 2.2), 5, 4.0);       // n = 15, step 4/15
  EXPECT_NEAR(q.real(), std::round(-0.7 * 15 / 4) * 4 / 15, 1e-15);
  EXPECT_NEAR(q.imag(), std::round(2.2 * 15 / 4) * 4 / 15, 1e-15);
}

TEST(Quantization, LevelTablesTakeThePartsToTheirNearestLevel) {
  const std::vector<double> t = {-1.0, -0.25, 0.5};
  EXPECT_DOUBLE_EQ(nearest_level(t, -0.7), -1.0);
  EXPECT_DOUBLE_EQ(nearest_level(t, -0.55), -0.25);
  EXPECT_DOUBLE_EQ(nearest_level(t, 9.0), 0.5);
  EXPECT_DOUBLE_EQ(nearest_level(t, 0.125), -0.25);  // 0.375 from both: the lower
  KernelSpec k;
  k.continuous = false;
  k.a = {cd(0.62, -0.1), cd(0.3, 0.44)};
  k.c = {cd(1.7, -0.9), cd(0.05, 0.2)};
  k.quant.bits = 2;  // applies to the parts without a table: Im(A)
  k.quant.f_scale_a = 1.0;
  k.quant.levels_a_re = {0.25, 0.6};
  k.quant.levels_c = {-1.0, 0.0, 1.5};
  const DiscreteKernel d = discretize(k);
  EXPECT_EQ(d.a_bar[0], cd(0.6, 0.0));   // Re: table; Im: eq. 3, n = 1
  EXPECT_EQ(d.a_bar[1], cd(0.25, 0.0));  // 0.44 < 0.5: 0
  EXPECT_EQ(d.c_bar[0], cd(1.5, -1.0));
  EXPECT_EQ(d.c_bar[1], cd(0.0, 0.0));
  EXPECT_EQ(discretize(k, false).c_bar[0], cd(1.7, -0.9));  // unquantized: as given
  KernelSetSpec set{{s4d_lin(4, std::log(0.01), 1)}, {}};
  set.kernels[0].quant.levels_a_im = {0.0, 0.0};
  auto v = validate(set, 1.0, 250.0);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("kernels[0].quantization.levels_a_im[1] = 0"), std::string::npos)
      << v.error().message;
}

TEST(Discretization, ZeroOrderHoldMatchesTheClosedForm) {
  KernelSpec k = s4d_lin(3, std::log(0.05), 1);
  const DiscreteKernel d = discretize(k);
  for (int j = 0; j < 3; ++j) {
    const cd a = k.a[static_cast<size_t>(j)];
    EXPECT_NEAR(std::abs(d.a_bar[static_cast<size_t>(j)] - std::exp(0.05 * a)), 0, 1e-15);
    const cd cbar = k.c[static_cast<size_t>(j)] * (std::exp(0.05 * a) - 1.0) / a;
    EXPECT_NEAR(std::abs(d.c_bar[static_cast<size_t>(j)] - cbar), 0, 1e-15);
  }
  // A discrete kernel passes through.
  KernelSpec disc;
  disc.continuous = false;
  disc.a = {cd(0.9, 0.1)};
  disc.c = {cd(0.3, -0.2)};
  EXPECT_EQ(discretize(disc).a_bar[0], cd(0.9, 0.1));
}

TEST(GoldenModels, RecurrenceMatchesTheConvolutionKernel) {
  for (double log_dt : {std::log(0.001), std::log(0.01), std::log(0.1)}) {
    KernelSpec k = s4d_lin(14, log_dt, 3);
    k.d = 0.25;
    const DiscreteKernel d = discretize(k);
    const int len = 300;
    const Eigen::VectorXd u = noise(len, 5);
    const Eigen::VectorXd y = run_ideal(d, u);
    const Eigen::VectorXd kern = convolution_kernel(d, len);
    for (int t = 0; t < len; ++t) {
      double conv = d.d * u(t);
      for (int l = 0; l <= t; ++l) conv += kern(l) * u(t - l);
      ASSERT_NEAR(y(t), conv, 1e-9 * (1 + std::abs(conv))) << "t = " << t;
    }
  }
}

TEST(GoldenModels, CrossbarWithIdealConductancesEqualsTheRecurrence) {
  for (int bits : {0, 2, 5}) {
    KernelSpec k = s4d_lin(14, std::log(0.02), 11);
    k.quant = {bits, 1.0, 1.0};
    const CompiledKernel ck = compile(k, Window{});
    const Eigen::VectorXd u = noise(500, 9);
    const Eigen::VectorXd ref = run_ideal(ck.kernel, u);
    for (uint64_t seed : {0u, 1u, 2u}) {
      const Placement p = seed == 0 ? Placement::identity() : random_placement(seed);
      const Eigen::VectorXd y = run_crossbar(ck, p, place(ck.target_uS, p), u);
      EXPECT_LT((y - ref).norm() / ref.norm(), 1e-12) << "bits " << bits << " seed " << seed;
    }
  }
}

// KernelSpec::mode_range changes the mode gains (a diagonal change of state variables), not the
// kernel: the crossbar still computes the recurrence exactly, and each mode's gain is the
// smallest range over its own.
TEST(GoldenModels, ModeRangesChangeTheGainsNotTheKernel) {
  KernelSpec k = s4d_lin(14, std::log(0.05), 12);
  const CompiledKernel plain = compile(k, Window{});
  for (int j = 0; j < 14; ++j) k.mode_range.push_back(1.0 + 3.0 * j);
  const CompiledKernel ck = compile(k, Window{});
  for (int j = 0; j < 14; ++j) {
    EXPECT_NEAR(ck.mode_gain[static_cast<size_t>(j)], 1.0 / (1.0 + 3.0 * j), 1e-15) << j;
  }
  EXPECT_NE(ck.target_uS, plain.target_uS);
  const Eigen::VectorXd u = noise(400, 3);
  const Eigen::VectorXd ref = run_ideal(ck.kernel, u);
  const Eigen::VectorXd y = run_crossbar(ck, Placement::identity(), ck.target_uS, u);
  EXPECT_LT((y - ref).norm() / ref.norm(), 1e-12);
  // A wrong count is ignored by compile (validate refuses it): the worst-case gains.
  k.mode_range.pop_back();
  EXPECT_EQ(compile(k, Window{}).target_uS, plain.target_uS);
}

TEST(GoldenModels, EffectiveStateMatrixHasTheKernelsPoles) {
  const CompiledKernel ck = compile(s4d_lin(14, std::log(0.1), 2), Window{});
  const Placement p = random_placement(8);
  const Eigen::MatrixXd g = place(ck.target_uS, p);
  double max_abs = 0;
  for (cd a : ck.kernel.a_bar) max_abs = std::max(max_abs, std::abs(a));
  EXPECT_NEAR(spectral_radius(effective_state_matrix(ck, p, g)), max_abs, 1e-12);
  // A stuck-high device in a state's own block makes it unstable; one in an off-diagonal block
  // alone leaves the poles where they are (the matrix stays block-triangular), a pair closes
  // a loop and moves them.
  auto at = [&](Eigen::MatrixXd m, int k, int j) {
    m(p.row_of[static_cast<size_t>(state_row(k, 0))],
      p.col_of[static_cast<size_t>(state_col(j, 0))]) = 450;
    return m;
  };
  EXPECT_GT(spectral_radius(effective_state_matrix(ck, p, at(g, 4, 4))), 1.0);
  EXPECT_NEAR(spectral_radius(effective_state_matrix(ck, p, at(g, 3, 5))), max_abs, 1e-9);
  EXPECT_GT(spectral_radius(effective_state_matrix(ck, p, at(at(g, 3, 5), 5, 3))), 1.0);
}

TEST(GoldenModels, QuantizationChangesTheKernelMeasurably) {
  // A discrete kernel with components inside +-0.6, quantized with f = 1 (A_bar) and 1 (C_bar).
  KernelSpec k;
  k.continuous = false;
  for (int j = 0; j < 14; ++j) {
    k.a.push_back(std::polar(0.5 + 0.01 * j, 0.2 * j));
    k.c.push_back(cd(0.5 * std::cos(j), 0.5 * std::sin(j)));
  }
  const auto inputs = fidelity_inputs(300);
  auto q = [&](int bits) {
    k.quant = {bits, 1.0, 1.0};
    return quantization_nrmse(compile(k, Window{}), inputs);
  };
  const double q3 = q(3), q8 = q(8);
  EXPECT_EQ(q(0), 0.0);
  EXPECT_TRUE(std::isfinite(q3)) << "3 bits must stay stable here";
  EXPECT_GT(q3, 4 * q8);
  EXPECT_GT(q8, 0.0);
}

TEST(Layout, SixtyBySixtyForFourteenStatesWithinTheWindow) {
  const CompiledKernel ck = compile(s4d_lin(14, std::log(0.01), 2), Window{7, 200});
  EXPECT_EQ(ck.target_uS.rows(), 64);
  EXPECT_NEAR(ck.target_uS.minCoeff(), 7.0, 1e-12);
  EXPECT_NEAR(ck.target_uS.maxCoeff(), 200.0, 1e-9);  // the largest weight uses the window
  // Spares (rows 60..63, columns 60..63) carry nothing.
  EXPECT_EQ(ck.part.bottomRows(4).maxCoeff(), 0.0);
  EXPECT_EQ(ck.part.rightCols(4).maxCoeff(), 0.0);
  // A is block-diagonal: state k's rows feed only state k's columns (and the outputs).
  for (int k = 0; k < 14; ++k) {
    for (int j = 0; j < 14; ++j) {
      const double block = ck.part.block<4, 4>(state_row(k, 0), state_col(j, 0)).maxCoeff();
      if (k != j) {
        EXPECT_EQ(block, 0.0);
      } else {
        EXPECT_GT(block, 0.0);
      }
    }
    const double b = ck.part.block<4, 4>(input_row(0), state_col(k, 0)).maxCoeff();
    const double c = ck.part.block<4, 4>(state_row(k, 0), output_col(14, 0)).maxCoeff();
    EXPECT_GT(b, 0.0);  // B
    EXPECT_GT(c, 0.0);  // C
  }
  // u is real: the imaginary input rows and output columns are present but carry 0 (B real).
  EXPECT_EQ(row_kind(14, 3), RowKind::kInput);
  EXPECT_EQ(row_kind(14, 59), RowKind::kState);
  EXPECT_EQ(row_kind(14, 60), RowKind::kSpare);
  EXPECT_EQ(col_kind(14, 55), ColKind::kState);
  EXPECT_EQ(col_kind(14, 56), ColKind::kOutput);
  EXPECT_EQ(col_kind(14, 60), ColKind::kSpare);
}

TEST(Routing, EveryStateColumnFeedsItsOwnStateRowAfterAnyPlacement) {
  const Placement p = random_placement(4);
  const auto routes = feedback_routes(14, p);
  ASSERT_EQ(routes.size(), 56u);
  std::set<int> cols, rows;
  for (size_t i = 0; i < routes.size(); ++i) {
    const int k = static_cast<int>(i) / 4, comp = static_cast<int>(i) % 4;
    EXPECT_EQ(routes[i].col, p.col_of[static_cast<size_t>(state_col(k, comp))]);
    EXPECT_EQ(routes[i].row, p.row_of[static_cast<size_t>(state_row(k, comp))]);
    cols.insert(routes[i].col);
    rows.insert(routes[i].row);
  }
  EXPECT_EQ(cols.size(), 56u);  // injective both ways
  EXPECT_EQ(rows.size(), 56u);
  // place/unplace are inverse.
  const Eigen::MatrixXd m = Eigen::MatrixXd::Random(64, 64);
  EXPECT_EQ(unplace(place(m, p), p), m);
}

TEST(Validation, NamesTheFieldAndTheRange) {
  auto err = [](KernelSetSpec s) {
    auto r = validate(s, 1.0, 250.0);
    return r ? std::string("ok") : r.error().message;
  };
  KernelSetSpec good{{s4d_lin(14, std::log(0.01), 1)}, {}};
  EXPECT_EQ(err(good), "ok");
  KernelSetSpec s = good;
  s.kernels[0] = s4d_lin(16, std::log(0.01), 1);
  EXPECT_EQ(err(s), "kernels[0].a: 16 states, allowed 1..15");
  s = good;
  s.kernels[0].c.pop_back();
  EXPECT_EQ(err(s), "kernels[0].c: 13 values, a has 14: lengths must match");
  s = good;
  s.kernels[0].a[2] = cd(std::nan(""), 0);
  EXPECT_EQ(err(s), "kernels[0].a[2] is not finite: allowed finite numbers");
  s = good;
  s.kernels[0].a[4] = cd(0.1, 3.0);  // Re(a) > 0: |A_bar| > 1
  EXPECT_NE(err(s).find("kernels[0].a[4]: |A_bar| = "), std::string::npos) << err(s);
  s = good;
  s.kernels[0].quant = {2, 1.0, 1.0};
  s.kernels[0].a[0] = cd(-0.3, 0);  // quantizes to 0: |A_bar| = 1
  EXPECT_NE(err(s).find("after quantization"), std::string::npos) << err(s);
  s = good;
  s.window = {0.5, 200};
  EXPECT_EQ(err(s),
            "window: g_min_uS = 0.5, g_max_uS = 200: need 1 <= g_min_uS < g_max_uS <= 250 uS");
  s = good;
  s.kernels.assign(4, good.kernels[0]);
  EXPECT_EQ(err(s), "kernels: 4 given, allowed 1..3 (one per array)");
  s = good;
  s.kernels[0].continuous = false;
  s.kernels[0].a = {cd(0.9, 0.5)};
  s.kernels[0].c = {cd(1, 0)};
  EXPECT_NE(err(s).find("kernels[0].a_bar[0]: |A_bar| = 1.0"), std::string::npos) << err(s);
  s = good;
  s.kernels[0].mode_range.assign(13, 1.0);
  EXPECT_EQ(err(s), "kernels[0].mode_range: 13 values for 14 states: one per state, or none");
  s.kernels[0].mode_range.assign(14, 1.0);
  s.kernels[0].mode_range[3] = -2;
  EXPECT_EQ(err(s), "kernels[0].mode_range[3] = -2: allowed finite > 0");
  s.kernels[0].mode_range[3] = std::nan("");
  EXPECT_EQ(err(s), "kernels[0].mode_range[3] = nan: allowed finite > 0");
  s.kernels[0].mode_range[3] = 2000;
  EXPECT_NE(err(s).find("kernels[0].mode_range[3] = 2000: allowed at most 1000 x the smallest"),
            std::string::npos)
      << err(s);
  s.kernels[0].mode_range[3] = 999;
  EXPECT_EQ(err(s), "ok");
}

// Found by tests/fuzz/grpc_validators_fuzz (tests/fuzz/corpus/grpc_validators/
// regress-denormal-c-bar): validate accepted kernels whose compiled targets were NaN, a C_bar so
// small (1.95e-313) that the output scale overflowed, or so large on a small mode gain that
// C_bar / gain did.
TEST(Validation, KernelsWhoseScalesOverflowAreRefused) {
  auto discrete = [](std::vector<cd> a, std::vector<cd> c) {
    KernelSpec k;
    k.continuous = false;
    k.a = std::move(a);
    k.c = std::move(c);
    return KernelSetSpec{{k}, {}};
  };
  const KernelSetSpec tiny =
      discrete({cd(0.0027346283197402952, 0.2)}, {cd(1.95223612767817e-313, 0)});
  const KernelSetSpec huge = discrete({cd(0.999999999, 0), cd(0, 0)}, {cd(1e300, 0), cd(1, 0)});
  for (const KernelSetSpec& s : {tiny, huge}) {
    ASSERT_FALSE(compile(s.kernels[0], s.window).target_uS.allFinite());  // what it prevents
    auto r = validate(s, 1.0, 250.0);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("kernels[0]: the conductance scales overflow"),
              std::string::npos)
        << r.error().message;
  }
  // Small and spread, but representable: accepted, finite.
  const KernelSetSpec ok = discrete({cd(0.5, 0)}, {cd(1e-200, 0)});
  EXPECT_TRUE(validate(ok, 1.0, 250.0));
  EXPECT_TRUE(compile(ok.kernels[0], ok.window).target_uS.allFinite());
}

// Issue 16 item 10: a kernel whose impulse response is exactly zero was programmed and reported
// degraded with "NRMSE 5.441e+14". Purely imaginary C_bar on real A_bar puts nothing on the
// output; so does a quantization that rounds every real contribution away.
TEST(Validation, KernelsWhoseImpulseResponseIsZeroAreRefused) {
  KernelSpec k;
  k.name = "silent";
  k.continuous = false;
  k.a = {cd(0.6, 0), cd(0.3, 0)};
  k.c = {cd(0, 0.3), cd(0, -0.7)};
  auto r = validate(KernelSetSpec{{k}, {}}, 1.0, 250.0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(
                "kernels[0] ('silent'): the impulse response 2 Re(C_bar A_bar^t) is zero"),
            std::string::npos)
      << r.error().message;
  // Zero only after quantization: on a 3-bit grid with f_scale 1 (levels k/3) the real parts of C
  // round to 0 (A to 2/3 and 1/3); the message names the quantization.
  k.c = {cd(0.01, 1.0), cd(0.02, 0.5)};
  EXPECT_TRUE(validate(KernelSetSpec{{k}, {}}, 1.0, 250.0));
  k.quant = {.bits = 3, .f_scale_a = 1.0, .f_scale_c = 1.0};
  r = validate(KernelSetSpec{{k}, {}}, 1.0, 250.0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("is zero after quantization to 3 bits"), std::string::npos)
      << r.error().message;
  // One real part is enough.
  k.quant = {};
  k.c = {cd(0, 0.3), cd(1e-3, 0)};
  EXPECT_TRUE(validate(KernelSetSpec{{k}, {}}, 1.0, 250.0));
}

TEST(Assignment, MatchesBruteForceOnSmallMatrices) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0, 10);
  for (int trial = 0; trial < 30; ++trial) {
    const int n = 6;
    Eigen::MatrixXd c(n, n);
    for (int i = 0; i < c.size(); ++i) c.data()[i] = trial % 3 == 0 ? std::floor(u(rng)) : u(rng);
    std::vector<int> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    double best = 1e300;
    do {
      double s = 0;
      for (int i = 0; i < n; ++i) s += c(i, perm[static_cast<size_t>(i)]);
      best = std::min(best, s);
    } while (std::next_permutation(perm.begin(), perm.end()));
    const auto a = min_cost_assignment(c);
    double got = 0;
    std::set<int> used(a.begin(), a.end());
    EXPECT_EQ(used.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) got += c(i, a[static_cast<size_t>(i)]);
    EXPECT_NEAR(got, best, 1e-9 * (1 + best));
  }
}

std::vector<StuckDevice> random_stuck(int count, uint64_t seed, double p_high = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pos(0, 63);
  std::uniform_real_distribution<double> g(300, 600), u(0, 1);
  std::vector<StuckDevice> out;
  std::set<std::pair<int, int>> seen;
  while (static_cast<int>(out.size()) < count) {
    const int r = pos(rng), c = pos(rng);
    if (!seen.insert({r, c}).second) continue;
    const bool high = u(rng) < p_high;
    out.push_back({r, c, high, high ? g(rng) : 0.5});
  }
  return out;
}

bool is_permutation(const std::vector<int>& v) {
  std::vector<int> s = v;
  std::sort(s.begin(), s.end());
  for (int i = 0; i < 64; ++i) {
    if (s[static_cast<size_t>(i)] != i) return false;
  }
  return s.size() == 64;
}

TEST(Remap, AvoidsEveryAvoidableFaultAndBeatsTheIdentity) {
  const CompiledKernel ck = compile(s4d_lin(14, std::log(0.01), 2), Window{});
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    // 1-3 stuck-high devices (the paper's chip): spare rows and columns can take them all.
    const auto stuck = random_stuck(1 + static_cast<int>(seed % 3), seed);
    auto plans = remap({ck}, {stuck}, {0}, RemapOptions{});
    ASSERT_TRUE(plans.has_value()) << plans.error().message;
    const ArrayPlan& plan = plans->front();
    EXPECT_TRUE(is_permutation(plan.placement.row_of));
    EXPECT_TRUE(is_permutation(plan.placement.col_of));
    EXPECT_EQ(plan.faults, static_cast<int>(stuck.size()));
    EXPECT_EQ(plan.avoided, plan.faults) << "seed " << seed;  // avoidance beats compensation
    EXPECT_EQ(plan.cost, 0.0);
    EXPECT_LT(plan.predicted_nrmse, 1e-9);
    for (const StuckDevice& f : stuck) EXPECT_TRUE(plan.skip(f.row, f.col));
    // The naive placement puts most of them where they hurt.
    EXPECT_GT(plan.naive_predicted_nrmse, 100 * plan.predicted_nrmse + 1e-6) << "seed " << seed;
  }
}

TEST(Remap, ManyFaultsCostLessThanNaiveAndCompensationIsWithinRange) {
  const CompiledKernel ck = compile(s4d_lin(14, std::log(0.01), 5), Window{});
  const auto stuck = random_stuck(80, 42, 0.5);  // 2 % of the array, half high, half low
  auto plans = remap({ck}, {stuck}, {0}, RemapOptions{});
  ASSERT_TRUE(plans.has_value());
  const ArrayPlan& plan = plans->front();
  EXPECT_TRUE(is_permutation(plan.placement.row_of));
  EXPECT_TRUE(is_permutation(plan.placement.col_of));
  EXPECT_EQ(plan.avoided + plan.compensated + plan.residual, 80);
  EXPECT_GT(plan.avoided, 0);
  EXPECT_LT(plan.predicted_nrmse, plan.naive_predicted_nrmse / 2);
  EXPECT_GE(plan.target_uS.minCoeff(), 1.0);  // compensating partners stay programmable
  EXPECT_LE(plan.target_uS.maxCoeff(), 250.0);
  // The cost model is first order: it ranks like the exact crossbar model.
  const auto naive = evaluate_placement(ck, error_sensitivity(ck, fidelity_inputs()), stuck,
                                        Placement::identity(), RemapOptions{.naive = true});
  EXPECT_LT(plan.cost, naive.cost);
}

TEST(Remap, KernelsGoToTheArraysWhereTheyHurtLeast) {
  const CompiledKernel a = compile(s4d_lin(14, std::log(0.01), 2), Window{});
  const CompiledKernel b = compile(s4d_lin(14, std::log(0.05), 3), Window{});
  // Array 0 is clean; array 1 has many faults; array 2 has a few: two kernels avoid array 1.
  const std::vector<std::vector<StuckDevice>> stuck = {
      {}, random_stuck(120, 9, 0.5), random_stuck(2, 10)};
  auto plans = remap({a, b}, stuck, {0, 1, 2}, RemapOptions{});
  ASSERT_TRUE(plans.has_value());
  ASSERT_EQ(plans->size(), 2u);
  EXPECT_NE((*plans)[0].array, 1);
  EXPECT_NE((*plans)[1].array, 1);
  EXPECT_NE((*plans)[0].array, (*plans)[1].array);
  auto bad = remap({a, b}, stuck, {0}, RemapOptions{});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message, "arrays: 1 allowed for 2 kernels: need one array per kernel");
}

}  // namespace
}  // namespace xbar::kernel
