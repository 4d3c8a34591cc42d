#include "kernel_checks.h"

#include <fmt/format.h>

#include <cmath>

#include "fuzz_util.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/wire/loop_program.h"

namespace xbar::fuzz {

const BoardInfo& twin_board_info() {
  static const BoardInfo info = [] {
    auto b = Board::open("sim:profile=typical,seed=1,noise_seed=1");
    if (!b) std::abort();
    return (*b)->info();
  }();
  return info;
}

namespace {

Eigen::VectorXd probe_input(int steps) {
  Eigen::VectorXd u(steps);
  for (int t = 0; t < steps; ++t) u(t) = (t == 0 ? 1.0 : 0.0) + 0.5 * std::sin(0.7 * t);
  return u;
}

}  // namespace

// Shared with model_fuzz and grpc_validators_fuzz: what must hold for a kernel set that
// kernel::validate accepted.
void check_accepted_kernel_set(const kernel::KernelSetSpec& set) {
  const kernel::Window& w = set.window;
  const double span = w.g_max_uS - w.g_min_uS;
  for (size_t i = 0; i < set.kernels.size(); ++i) {
    const kernel::KernelSpec& spec = set.kernels[i];
    const kernel::CompiledKernel ck = kernel::compile(spec, w);
    FUZZ_CHECK(ck.n == static_cast<int>(spec.a.size()), "compile: states != A entries");
    for (int r = 0; r < kernel::kSide; ++r) {
      for (int c = 0; c < kernel::kSide; ++c) {
        const double t = ck.target_uS(r, c);
        FUZZ_CHECK(std::isfinite(t) && t >= w.g_min_uS - 1e-9 * w.g_max_uS &&
                       t <= w.g_max_uS + 1e-9 * w.g_max_uS,
                   fmt::format("kernels[{}]: target ({}, {}) = {} uS outside the window {}..{}", i,
                               r, c, t, w.g_min_uS, w.g_max_uS));
      }
    }
    // The crossbar as compiled vs the ideal recurrence: equal up to rounding. Every column
    // current sums g * v over the rows and the differential pairs cancel the window's offset,
    // so the rounding error scales with g_max * sum|v| (the input row is driven at
    // u * input_gain = u / b_weight, huge for a tiny A_bar), divided by the column's scale
    // (span / max|C~| for the output, span / max|A_bar| for the state, whose error the
    // recurrence then amplifies by up to 1 / (1 - |a|)).
    const Eigen::VectorXd u = probe_input(24);
    const Eigen::VectorXd y_ideal = kernel::run_ideal(ck.kernel, u);
    const Eigen::VectorXd y_xbar =
        kernel::run_crossbar(ck, kernel::Placement::identity(), ck.target_uS, u);
    FUZZ_CHECK(y_xbar.size() == y_ideal.size(), "run_crossbar: length");
    double gain = 1, c_sum = 0, c_tilde = 0;
    for (size_t k = 0; k < ck.kernel.a_bar.size(); ++k) {
      gain = std::max(gain, 1.0 / (1.0 - std::abs(ck.kernel.a_bar[k])));
      c_sum += std::abs(ck.kernel.c_bar[k]);
      c_tilde = std::max(c_tilde, std::abs(ck.kernel.c_bar[k]) / ck.mode_gain[k]);
    }
    const double u_max = u.cwiseAbs().maxCoeff(), x_bound = gain * u.cwiseAbs().sum();
    const double v_bound = 2 * u_max * ck.input_gain + 4 * ck.n * x_bound;
    const double tol = 1e-12 * (w.g_max_uS / span) * v_bound *
                           (c_tilde + 2 * c_sum * gain * ck.b_weight) *
                           static_cast<double>(u.size()) +
                       1e-12 * std::abs(ck.kernel.d) * u_max;
    if (std::isfinite(tol)) {
      for (Eigen::Index t = 0; t < u.size(); ++t) {
        FUZZ_CHECK(std::abs(y_xbar(t) - y_ideal(t)) <= tol,
                   fmt::format("kernels[{}]: crossbar y[{}] = {} vs ideal {} (tolerance {})", i, t,
                               y_xbar(t), y_ideal(t), tol));
      }
    }
    // The board's loop program for it.
    const BoardInfo& info = twin_board_info();
    auto plan = kernel::plan_loop(ck, kernel::Placement::identity(), ck.target_uS,
                                  static_cast<int>(i), info);
    if (!plan) {
      FUZZ_CHECK(!plan.error().message.empty(), "plan_loop failed without a message");
      continue;
    }
    const std::string board_says =
        wire::check_loop_programs({plan->program}, info.arrays, info.rows, info.cols,
                                  static_cast<int>(info.tia_gains_ohm.size()));
    FUZZ_CHECK(board_says.empty(), "the board would refuse plan_loop's program: " + board_says);
    auto decoded = wire::decode_loop_load_request(wire::LoopLoadRequest{{plan->program}}.encode());
    FUZZ_CHECK(decoded && decoded->programs.size() == 1 && decoded->programs[0] == plan->program,
               "plan_loop's program does not survive LOOP_LOAD encoding");
  }
}

}  // namespace xbar::fuzz
