// A compiled, placed kernel run as a closed loop on the twin: the board's output agrees with
// the crossbar-as-programmed model and the ideal recurrence within the documented tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numbers>
#include <random>
#include <tuple>

#include "xbar/drivers/board.h"
#include "xbar/drivers/loop_runner.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/loop_plan.h"

namespace xbar::kernel {
namespace {

KernelSpec s4d_lin(double dt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 0.5);
  KernelSpec k;
  k.log_dt = std::log(dt);
  for (int j = 0; j < 14; ++j) {
    k.a.push_back(cd(-0.5, std::numbers::pi * j));
    k.c.push_back(cd(z(rng), z(rng)));
  }
  return k;
}

// Writes every device of `array` to exactly `g` (SIM_INJECT_FAULT with kind none).
void set_exactly(Board& b, int array, const Eigen::MatrixXd& g) {
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 64; ++c) {
      ASSERT_TRUE(b.sim_inject_fault(array, r, c, wire::FaultKind::kNone, g(r, c)).has_value());
    }
  }
}

struct LoopOutputs {
  Eigen::VectorXd y_board, y_host, y_model, y_ideal, y_quantized;
};

LoopOutputs run_kernel(const std::string& uri, double dt, uint64_t placement_seed,
                       bool error_feedback = false) {
  auto board = Board::open(uri);
  EXPECT_TRUE(board.has_value());
  Board& b = **board;
  const CompiledKernel ck = compile(s4d_lin(dt, 3), Window{});
  Placement p = Placement::identity();
  std::mt19937_64 rng(placement_seed);
  std::shuffle(p.row_of.begin(), p.row_of.end(), rng);
  std::shuffle(p.col_of.begin(), p.col_of.end(), rng);
  const Eigen::MatrixXd g = place(ck.target_uS, p);
  set_exactly(b, 1, g);
  LoopPlanOptions options;
  options.error_feedback = error_feedback;
  auto plan = plan_loop(ck, p, g, 1, b.info(), options);
  EXPECT_TRUE(plan.has_value()) << plan.error().message;
  const std::vector<wire::LoopProgram> progs = {plan->program};
  auto max_block = b.loop_load(progs);
  EXPECT_TRUE(max_block.has_value()) << max_block.error().message;
  Eigen::VectorXd u = fidelity_inputs(400)[1];  // low-pass noise
  u *= 3.0 / u.cwiseAbs().maxCoeff();
  const auto codes = input_codes(*plan, u);
  auto loop = run_loop(b, progs, *max_block, codes, static_cast<size_t>(u.size()), 5);
  EXPECT_TRUE(loop.has_value()) << loop.error().message;
  auto host = run_host_stepped(b, progs, codes, static_cast<size_t>(u.size()), 5);
  EXPECT_TRUE(host.has_value());
  LoopOutputs r;
  r.y_board = outputs_to_y(*plan, loop->outputs, 1, 0, u);
  r.y_host = outputs_to_y(*plan, host->outputs, 1, 0, u);
  r.y_model = run_crossbar(ck, p, g, u);
  r.y_ideal = run_ideal(ck.kernel, u);
  r.y_quantized = run_quantized(ck, *plan, u);
  return r;
}

double nrmse(const Eigen::VectorXd& y, const Eigen::VectorXd& ref) {
  return (y - ref).norm() / ref.norm();
}

TEST(KernelLoop, IdealTwinAtFullResolutionMatchesTheSoftwareModelOfTheHardwarePath) {
  // Error feedback off (plain rounding). Measured: board vs ideal recurrence 0.168 (dt 0.1,
  // |A| = 0.95: the 8-bit state rounding is
  // integrated over ~20 steps) and 0.034 (dt 0.5); board vs the quantized software model 0.019
  // and < 0.005 (a rounding tie decided differently by the ADC's rounding starts another, equally
  // valid trajectory, and the slow kernel integrates the difference).
  for (auto [dt, tol_ideal, tol_quant] :
       {std::tuple{0.1, 0.2, 0.03}, std::tuple{0.5, 0.05, 0.005}}) {
    const LoopOutputs r = run_kernel("sim:profile=ideal,adc_bits=16", dt, 11);
    EXPECT_EQ(r.y_board, r.y_host);                 // firmware loop == host-stepped, bit for bit
    EXPECT_LT(nrmse(r.y_model, r.y_ideal), 1e-12);  // exact conductances
    EXPECT_LT(nrmse(r.y_board, r.y_quantized), tol_quant) << "dt " << dt;
    EXPECT_LT(nrmse(r.y_board, r.y_ideal), tol_ideal) << "dt " << dt;
  }
}

TEST(KernelLoop, ErrorFeedbackKeepsTheErrorOfTheSoftwareModel) {
  // With error feedback each route carries its rounding residual into the next step. A
  // different rounding decision (the ADC's, the fixed-point scale's) then starts another,
  // equally valid sequence of codes, so the board and the quantized software model part ways
  // step by step (measured NRMSE between them 0.123 at dt 0.1, 0.017 at dt 0.5) while their
  // error against the ideal recurrence is the same: 0.154 and 0.152 (dt 0.1; without error
  // feedback 0.168), 0.045 and 0.047 (dt 0.5; without 0.034).
  for (auto [dt, tol_ideal] : {std::pair{0.1, 0.18}, std::pair{0.5, 0.06}}) {
    const LoopOutputs r = run_kernel("sim:profile=ideal,adc_bits=16", dt, 11, true);
    EXPECT_EQ(r.y_board, r.y_host);  // firmware loop == host-stepped, bit for bit
    EXPECT_LT(nrmse(r.y_board, r.y_ideal), tol_ideal) << "dt " << dt;
    EXPECT_NEAR(nrmse(r.y_board, r.y_ideal), nrmse(r.y_quantized, r.y_ideal), 0.02) << "dt " << dt;
  }
}

TEST(KernelLoop, TenBitAdcCostsMeasurablyMore) {
  const LoopOutputs full = run_kernel("sim:profile=ideal,adc_bits=16", 0.5, 11);
  const LoopOutputs ten = run_kernel("sim:profile=ideal", 0.5, 11);
  EXPECT_GT(nrmse(ten.y_board, ten.y_ideal), nrmse(full.y_board, full.y_ideal));
  EXPECT_LT(nrmse(ten.y_board, ten.y_ideal), 0.2);
}

// The loop of `ck` placed by `p`, planned on conductances `g` with `o`, run on array 0 of `b` on
// input `u`: its NRMSE against `ideal` (1e9 when a step fails or the run diverges). `plan_out`
// gets the plan.
double board_loop_nrmse(Board& b, const CompiledKernel& ck, const Placement& p,
                        const Eigen::MatrixXd& g, const LoopPlanOptions& o,
                        const Eigen::VectorXd& u, const Eigen::VectorXd& ideal,
                        LoopPlan* plan_out = nullptr) {
  auto plan = plan_loop(ck, p, g, 0, b.info(), o);
  EXPECT_TRUE(plan.has_value());
  if (!plan) return 1e9;
  if (plan_out != nullptr) *plan_out = *plan;
  const std::vector<wire::LoopProgram> progs = {plan->program};
  auto max_block = b.loop_load(progs);
  EXPECT_TRUE(max_block.has_value());
  if (!max_block) return 1e9;
  const auto codes = input_codes(*plan, u);
  auto loop = run_loop(b, progs, *max_block, codes, static_cast<size_t>(u.size()), 5);
  EXPECT_TRUE(loop.has_value());
  if (!loop) return 1e9;
  const double e = nrmse(outputs_to_y(*plan, loop->outputs, 1, 0, u), ideal);
  return std::isfinite(e) ? e : 1e9;
}

TEST(KernelLoop, RouteTrimTakesOutARowsCommonGainError) {
  // Every mode's real state column pair programmed 20 % weak (every device's height above
  // g_min times 0.8, as if those columns' devices all came out low): rows 2 s of [A | B] are
  // 0.8 of the compiled ones. Their routes' trim is 1 / 0.8; the imaginary ones' is 1.
  const CompiledKernel ck = compile(s4d_lin(0.5, 3), Window{});
  Placement p = Placement::identity();
  std::mt19937_64 rng(5);
  std::shuffle(p.row_of.begin(), p.row_of.end(), rng);
  std::shuffle(p.col_of.begin(), p.col_of.end(), rng);
  Eigen::MatrixXd g = place(ck.target_uS, p);
  for (int s = 0; s < ck.n; ++s) {
    for (const int comp : {0, 1}) {
      auto col = g.col(p.col_of[static_cast<size_t>(state_col(s, comp))]);
      col = (ck.window.g_min_uS + 0.8 * (col.array() - ck.window.g_min_uS)).matrix();
    }
  }
  const std::vector<double> trims = route_trims(ck, p, g);
  ASSERT_EQ(trims.size(), 28u);
  for (size_t f = 0; f < trims.size(); ++f) {
    EXPECT_NEAR(trims[f], f % 2 == 0 ? 1.25 : 1.0, 1e-9) << "route " << f;
  }
  for (const double t : route_trims(ck, p, place(ck.target_uS, p))) EXPECT_NEAR(t, 1.0, 1e-12);

  // On the board (ideal twin, 16-bit ADC; dt 0.5, whose 8-bit state costs NRMSE 0.034) the
  // trimmed loop is closer to the ideal recurrence than the untrimmed one.
  auto board = Board::open("sim:profile=ideal,adc_bits=16");
  ASSERT_TRUE(board.has_value());
  set_exactly(**board, 0, g);
  Eigen::VectorXd u = fidelity_inputs(400)[1];
  u *= 3.0 / u.cwiseAbs().maxCoeff();
  const Eigen::VectorXd ideal = run_ideal(ck.kernel, u);
  auto error = [&](bool trim) {
    LoopPlanOptions o;
    o.trim_routes = trim;
    o.fix_devices = false;  // the fixes would take every weak device out one by one
    return board_loop_nrmse(**board, ck, p, g, o, u, ideal);
  };
  // Measured: untrimmed 0.265, trimmed 0.0339 (the 8-bit state's own 0.034).
  const double untrimmed = error(false), trimmed = error(true);
  EXPECT_LT(trimmed, 0.5 * untrimmed) << "untrimmed " << untrimmed << ", trimmed " << trimmed;
}

// Stuck-high devices (400-560 uS) at zero-weight positions of the state block: no partner in
// 1..250 uS cancels them, and the analog loop is unstable. The device fixes take exactly those
// devices out digitally, and the loop on the board is as close to the ideal recurrence as with
// exact conductances.
TEST(KernelLoop, DeviceFixesTakeOutStuckHighDevicesNoPartnerCanCancel) {
  const CompiledKernel ck = compile(s4d_lin(0.5, 3), Window{});
  Placement p = Placement::identity();
  std::mt19937_64 rng(8);
  std::shuffle(p.row_of.begin(), p.row_of.end(), rng);
  std::shuffle(p.col_of.begin(), p.col_of.end(), rng);
  const Eigen::MatrixXd exact = place(ck.target_uS, p);
  Eigen::MatrixXd g = exact;
  std::vector<std::pair<int, int>> stuck;  // physical
  for (int i = 0; i < 6; ++i) {
    // Modes 4k and 4k+1 feed each other through zero weights (x_r+ row -> i_r+ column).
    const int s = 4 * (i / 2) + i % 2, q = 4 * (i / 2) + 1 - i % 2;
    const int pr = p.row_of[static_cast<size_t>(state_row(s, 0))];
    const int pc = p.col_of[static_cast<size_t>(state_col(q, 0))];
    ASSERT_NEAR(g(pr, pc), ck.window.g_min_uS, 1e-9);
    g(pr, pc) = 400 + 30 * i;
    stuck.emplace_back(pr, pc);
  }
  const double radius_analog = spectral_radius(effective_state_matrix(ck, p, g));
  EXPECT_GT(radius_analog, 1.0) << "the stuck devices should make the analog loop unstable";

  // The fixes are exactly the stuck devices, largest first, and restore the targets.
  const std::vector<DeviceFix> fixes = device_fixes(ck, p, g, LoopPlanOptions{});
  ASSERT_EQ(fixes.size(), stuck.size());
  for (const DeviceFix& f : fixes) {
    EXPECT_TRUE(std::find(stuck.begin(), stuck.end(), std::pair(f.row, f.col)) != stuck.end());
    EXPECT_NEAR(f.err_uS, g(f.row, f.col) - ck.window.g_min_uS, 1e-9);
  }
  EXPECT_GT(std::abs(fixes.front().err_uS), std::abs(fixes.back().err_uS));
  EXPECT_LT((apply_device_fixes(g, fixes) - exact).cwiseAbs().maxCoeff(), 1e-9);
  LoopPlanOptions off;
  off.fix_devices = false;
  EXPECT_TRUE(device_fixes(ck, p, g, off).empty());

  auto board = Board::open("sim:profile=ideal,adc_bits=16");
  ASSERT_TRUE(board.has_value());
  set_exactly(**board, 0, g);
  Eigen::VectorXd u = fidelity_inputs(400)[1];
  u *= 3.0 / u.cwiseAbs().maxCoeff();
  const Eigen::VectorXd ideal = run_ideal(ck.kernel, u);
  auto error = [&](const Eigen::MatrixXd& conductances, bool fix) {
    set_exactly(**board, 0, conductances);
    LoopPlanOptions o;
    o.fix_devices = fix;
    LoopPlan plan;
    const double e = board_loop_nrmse(**board, ck, p, conductances, o, u, ideal, &plan);
    EXPECT_EQ(plan.fixes, fix ? static_cast<int>(&conductances == &g ? stuck.size() : 0) : 0);
    EXPECT_EQ(static_cast<bool>(plan.program.flags & wire::kLoopDeviceFixes), plan.fixes > 0);
    return e;
  };
  const double clean = error(exact, true), fixed = error(g, true), unfixed = error(g, false);
  std::printf(
      "loop NRMSE: exact conductances %.4f, stuck + fixes %.4f, stuck alone %.4g "
      "(analog spectral radius %.3f)\n",
      clean, fixed, unfixed, radius_analog);
  EXPECT_LT(fixed, 1.5 * clean + 0.01);
  EXPECT_GT(unfixed, 10 * fixed);
}

}  // namespace
}  // namespace xbar::kernel
