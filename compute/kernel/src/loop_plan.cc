#include "xbar/kernel/loop_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "xbar/kernel/golden.h"

namespace xbar::kernel {

namespace {

// mul / 2^shift ~ f with the largest shift that keeps |mul| within i16.
Result<std::pair<int16_t, uint8_t>> fixed_point(double f, const char* what) {
  if (!(std::isfinite(f) && f != 0)) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("loop plan: {} scale {} ", what, f));
  }
  for (int shift = 31; shift >= 0; --shift) {
    const double m = std::round(f * std::ldexp(1.0, shift));
    if (std::abs(m) <= 32767 && std::abs(m) >= 1) {
      return std::pair{static_cast<int16_t>(m), static_cast<uint8_t>(shift)};
    }
  }
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("loop plan: {} scale {:.4g} does not fit mul / 2^shift", what, f));
}

// The rows of [A | B] that conductances `g_uS` realise through placement `p` (effective_state_
// matrix, with the input pair as the last column: half the difference of its two rows).
Eigen::MatrixXd effective_ab(const CompiledKernel& ck, const Placement& p,
                             const Eigen::MatrixXd& g_uS) {
  const int n = ck.n;
  Eigen::MatrixXd ab(2 * n, 2 * n + 1);
  ab.leftCols(2 * n) = effective_state_matrix(ck, p, g_uS);
  const auto pos = static_cast<Eigen::Index>(p.row_of[static_cast<size_t>(input_row(0))]);
  const auto neg = static_cast<Eigen::Index>(p.row_of[static_cast<size_t>(input_row(1))]);
  const Eigen::VectorXd i = 0.5 * (g_uS.row(pos) - g_uS.row(neg)).transpose();
  for (int q = 0; q < n; ++q) {
    auto col = [&](int comp) { return i(p.col_of[static_cast<size_t>(state_col(q, comp))]); };
    ab(2 * q, 2 * n) = (col(0) - col(1)) / ck.state_scale_uS;
    ab(2 * q + 1, 2 * n) = (col(2) - col(3)) / ck.state_scale_uS;
  }
  return ab;
}

}  // namespace

std::vector<DeviceFix> device_fixes(const CompiledKernel& ck, const Placement& p,
                                    const Eigen::MatrixXd& g_uS, const LoopPlanOptions& opt,
                                    int* candidates) {
  std::vector<DeviceFix> off;
  if (candidates != nullptr) *candidates = 0;
  if (!opt.fix_devices) return off;
  const int n = ck.n;
  std::vector<int> rows_used = {input_row(0), input_row(1)};
  std::vector<int> cols_used = {output_col(n, 0), output_col(n, 1)};
  for (int s = 0; s < n; ++s) {
    for (int c = 0; c < 4; ++c) {
      rows_used.push_back(state_row(s, c));
      cols_used.push_back(state_col(s, c));
    }
  }
  for (int lr : rows_used) {
    for (int lc : cols_used) {
      const int pr = p.row_of[static_cast<size_t>(lr)], pc = p.col_of[static_cast<size_t>(lc)];
      const double e = g_uS(pr, pc) - ck.target_uS(lr, lc);
      if (std::abs(e) > opt.fix_threshold_uS) off.push_back({pr, pc, e});
    }
  }
  if (candidates != nullptr) *candidates = static_cast<int>(off.size());
  std::stable_sort(off.begin(), off.end(), [](const DeviceFix& a, const DeviceFix& b) {
    return std::abs(a.err_uS) > std::abs(b.err_uS);
  });
  off.resize(
      std::min(off.size(), static_cast<size_t>(std::clamp(opt.max_fixes, 0, wire::kMaxLoopFixes))));
  return off;
}

Eigen::MatrixXd apply_device_fixes(Eigen::MatrixXd g_uS, std::span<const DeviceFix> fixes) {
  for (const DeviceFix& f : fixes) g_uS(f.row, f.col) -= f.err_uS;
  return g_uS;
}

std::vector<double> route_trims(const CompiledKernel& ck, const Placement& p,
                                const Eigen::MatrixXd& g_uS) {
  const Eigen::MatrixXd m = effective_ab(ck, p, g_uS);
  const Eigen::MatrixXd t = effective_ab(ck, Placement::identity(), ck.target_uS);
  std::vector<double> c(static_cast<size_t>(m.rows()), 1.0);
  for (Eigen::Index f = 0; f < m.rows(); ++f) {
    const double mm = m.row(f).squaredNorm();
    const double mt = m.row(f).dot(t.row(f));
    if (mm > 1e-12 * std::max(1.0, t.row(f).squaredNorm()) && std::isfinite(mt / mm)) {
      c[static_cast<size_t>(f)] = std::clamp(mt / mm, 0.5, 1.5);
    }
  }
  return c;
}

namespace {

// The physical row (column) of a logical one, as the loop program's byte fields hold it.
uint8_t phys_row(const Placement& p, int logical) {
  return static_cast<uint8_t>(p.row_of[static_cast<size_t>(logical)]);
}
uint8_t phys_col(const Placement& p, int logical) {
  return static_cast<uint8_t>(p.col_of[static_cast<size_t>(logical)]);
}

// The largest column sum (uS) over the used rows: every used row at full magnitude in one
// plane.
double worst_column_uS(const CompiledKernel& ck, const Placement& p, const Eigen::MatrixXd& g_uS) {
  std::vector<int> used_rows = {phys_row(p, input_row(0)), phys_row(p, input_row(1))};
  for (int k = 0; k < ck.n; ++k) {
    for (int c = 0; c < 4; ++c) used_rows.push_back(phys_row(p, state_row(k, c)));
  }
  double worst_uS = 0;
  for (int c = 0; c < kSide; ++c) {
    double sum = 0;
    for (int r : used_rows) sum += g_uS(r, c);
    worst_uS = std::max(worst_uS, sum);
  }
  return worst_uS;
}

// The largest state component the array holds on the ideal trajectory of the fidelity inputs
// scaled to peak u_max.
double ideal_state_max(const CompiledKernel& ck, double u_max) {
  double x_max = 0;
  for (Eigen::VectorXd u : fidelity_inputs()) {
    u *= u_max / u.cwiseAbs().maxCoeff();
    std::vector<cd> x(static_cast<size_t>(ck.n), 0.0);
    for (Eigen::Index t = 0; t < u.size(); ++t) {
      for (size_t j = 0; j < x.size(); ++j) {
        x[j] = ck.kernel.a_bar[j] * x[j] + u(t);
        const cd xt = ck.mode_gain[j] * x[j];  // what the array holds
        x_max = std::max({x_max, std::abs(xt.real()), std::abs(xt.imag())});
      }
    }
  }
  return x_max;
}

// The state units per clamp: the range given, else the calibrated or the ideal one with
// headroom; never less than one step of the largest input needs.
double state_scale(const CompiledKernel& ck, const LoopPlanOptions& opt) {
  double x_scale = 0;
  if (opt.state_range > 0) {
    x_scale = opt.state_range / opt.clamp;
  } else if (opt.state_max > 0) {
    x_scale = opt.calibrated_headroom * opt.state_max / opt.clamp;
  } else {
    x_scale = opt.headroom * ideal_state_max(ck, opt.u_max) / opt.clamp;
  }
  const double u_seen = opt.input_max > 0 ? opt.input_max : opt.u_max;
  return std::max(x_scale, input_state_range(ck, u_seen) / opt.clamp);
}

// Device fixes into the program (codes_per_uS: ADC codes per uS of column current).
Result<void> add_device_fixes(wire::LoopProgram& prog, std::span<const DeviceFix> fixes,
                              double codes_per_uS) {
  for (const DeviceFix& f : fixes) {
    auto fp = fixed_point(f.err_uS * codes_per_uS, "device fix");
    if (!fp) return std::unexpected(fp.error());
    prog.fixes.push_back(
        {static_cast<uint8_t>(f.row), static_cast<uint8_t>(f.col), fp->first, fp->second});
  }
  if (!prog.fixes.empty()) prog.flags |= wire::kLoopDeviceFixes;
  return {};
}

// The feedback routes: per state, one per plane, each scaled by its route gain.
Result<void> add_routes(wire::LoopProgram& prog, const CompiledKernel& ck, const Placement& p,
                        const std::vector<double>& route_gain, double codes_per_uS) {
  for (int s = 0; s < ck.n; ++s) {
    for (int part = 0; part < 2; ++part) {
      const double gain = route_gain[(2 * static_cast<size_t>(s)) + static_cast<size_t>(part)];
      auto route = fixed_point(gain / (codes_per_uS * ck.state_scale_uS), "feedback");
      if (!route) return std::unexpected(route.error());
      prog.routes.push_back({phys_col(p, state_col(s, 2 * part)),
                             phys_col(p, state_col(s, 2 * part + 1)),
                             phys_row(p, state_row(s, 2 * part)),
                             phys_row(p, state_row(s, 2 * part + 1)), route->first, route->second});
    }
  }
  return {};
}

}  // namespace

Result<LoopPlan> plan_loop(const CompiledKernel& ck, const Placement& p,
                           const Eigen::MatrixXd& g_uS, int array, const BoardInfo& info,
                           const LoopPlanOptions& opt) {
  const int n = ck.n;
  LoopPlan plan;
  plan.d = ck.kernel.d;
  wire::LoopProgram& prog = plan.program;
  prog.array = static_cast<uint8_t>(array);
  prog.clamp = opt.clamp;
  prog.flags = opt.error_feedback ? wire::kLoopErrorFeedback : 0;

  // The TIA gain: the largest column current must stay inside the ADC's range above V_ref.
  auto gain = info.vmm_gain_for(worst_column_uS(ck, p, g_uS));
  if (!gain) return make_error(gain.error().code, "loop plan: " + gain.error().message);
  prog.gain_index = static_cast<uint8_t>(*gain);
  const double k = info.codes_per_uS(*gain);
  plan.codes_per_uS = k;

  plan.x_scale = state_scale(ck, opt);
  plan.input_lsb = opt.u_max / 32767.0;

  auto tap = fixed_point(plan.input_lsb / (ck.b_weight * plan.x_scale), "input");
  if (!tap) return std::unexpected(tap.error());
  prog.taps.push_back(
      {phys_row(p, input_row(0)), phys_row(p, input_row(1)), tap->first, tap->second});

  // Device fixes; what the loop then sees is g_seen.
  const std::vector<DeviceFix> fixes = device_fixes(ck, p, g_uS, opt, &plan.fix_candidates);
  if (auto f = add_device_fixes(prog, fixes, k); !f) return std::unexpected(f.error());
  plan.fixes = static_cast<int>(prog.fixes.size());
  const Eigen::MatrixXd g_seen = apply_device_fixes(g_uS, fixes);
  plan.route_gain = opt.trim_routes ? route_trims(ck, p, g_seen)
                                    : std::vector<double>(static_cast<size_t>(2 * n), 1.0);
  if (auto r = add_routes(prog, ck, p, plan.route_gain, k); !r) return std::unexpected(r.error());
  prog.outputs.push_back({phys_col(p, output_col(n, 0)), phys_col(p, output_col(n, 1))});
  plan.y_scale = 2 * plan.x_scale / (k * ck.output_scale_uS);
  return plan;
}

std::vector<int16_t> input_codes(const LoopPlan& plan, const Eigen::VectorXd& u) {
  std::vector<int16_t> out(static_cast<size_t>(u.size()));
  for (Eigen::Index t = 0; t < u.size(); ++t) {
    out[static_cast<size_t>(t)] =
        static_cast<int16_t>(std::clamp(std::round(u(t) / plan.input_lsb), -32767.0, 32767.0));
  }
  return out;
}

Eigen::VectorXd outputs_to_y(const LoopPlan& plan, std::span<const int32_t> outputs, size_t stride,
                             size_t offset, const Eigen::VectorXd& u) {
  Eigen::VectorXd y(u.size());
  for (Eigen::Index t = 0; t < u.size(); ++t) {
    y(t) = plan.y_scale * outputs[static_cast<size_t>(t) * stride + offset] + plan.d * u(t);
  }
  return y;
}

Eigen::VectorXd run_quantized(const CompiledKernel& ck, const LoopPlan& plan,
                              const Eigen::VectorXd& u) {
  const double c = plan.program.clamp;
  auto q = [c](double v) { return std::clamp(std::round(v), -c, c); };  // std::round: half away
  const std::vector<int16_t> codes = input_codes(plan, u);
  const bool feedback = plan.program.flags & wire::kLoopErrorFeedback;
  std::vector<cd> x(static_cast<size_t>(ck.n), 0.0);  // state codes as the array holds them
  std::vector<cd> e(static_cast<size_t>(ck.n), 0.0);  // rounding residuals (error feedback)
  auto carry = [](double r) { return std::clamp(r, -0.5, 0.5); };
  Eigen::VectorXd y(u.size());
  for (Eigen::Index t = 0; t < u.size(); ++t) {
    const double m_u =
        q(codes[static_cast<size_t>(t)] * plan.input_lsb / (ck.b_weight * plan.x_scale));
    double acc = 0;
    for (size_t k = 0; k < x.size(); ++k) {
      cd next = ck.kernel.a_bar[k] * x[k] + ck.b_weight * ck.mode_gain[k] * m_u;
      if (feedback) next += e[k];
      x[k] = cd(q(next.real()), q(next.imag()));
      if (feedback) e[k] = cd(carry(next.real() - x[k].real()), carry(next.imag() - x[k].imag()));
      acc += (ck.kernel.c_bar[k] / ck.mode_gain[k] * x[k]).real();
    }
    y(t) = 2 * plan.x_scale * acc + plan.d * u(t);
  }
  return y;
}

}  // namespace xbar::kernel
