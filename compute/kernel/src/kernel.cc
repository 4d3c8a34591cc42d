#include "xbar/kernel/kernel.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace xbar::kernel {

namespace {

Error bad(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

bool finite(cd z) { return std::isfinite(z.real()) && std::isfinite(z.imag()); }

double max_component(const std::vector<cd>& v) {
  double m = 0;
  for (cd z : v) m = std::max({m, std::abs(z.real()), std::abs(z.imag())});
  return m;
}

}  // namespace

double quantize(double x, int bits, double f_scale) {
  if (bits <= 0) return x;
  const double n = std::ldexp(1.0, bits - 1) - 1;  // levels per sign
  return std::clamp(std::round(x * n / f_scale), -n, n) * f_scale / n;
}

cd quantize(cd x, int bits, double f_scale) {
  return {quantize(x.real(), bits, f_scale), quantize(x.imag(), bits, f_scale)};
}

double nearest_level(const std::vector<double>& t, double x) {
  auto it = std::lower_bound(t.begin(), t.end(), x);
  if (it == t.end()) return t.back();
  if (it == t.begin()) return *it;
  return (x - *(it - 1)) <= (*it - x) ? *(it - 1) : *it;
}

namespace {

// One kernel's own fields: name, state count, finite values, log_dt.
Result<void> check_fields(const KernelSpec& k, const std::string& at) {
  const char* a_name = k.continuous ? "a" : "a_bar";
  const char* c_name = k.continuous ? "c" : "c_bar";
  if (k.name.size() > 64) {
    return std::unexpected(
        bad(fmt::format("{}.name: {} characters, allowed up to 64", at, k.name.size())));
  }
  if (k.a.empty() || k.a.size() > static_cast<size_t>(kMaxStates)) {
    return std::unexpected(
        bad(fmt::format("{}.{}: {} states, allowed 1..{}", at, a_name, k.a.size(), kMaxStates)));
  }
  if (k.c.size() != k.a.size()) {
    return std::unexpected(bad(fmt::format("{}.{}: {} values, {} has {}: lengths must match", at,
                                           c_name, k.c.size(), a_name, k.a.size())));
  }
  for (size_t j = 0; j < k.a.size(); ++j) {
    if (!finite(k.a[j])) {
      return std::unexpected(
          bad(fmt::format("{}.{}[{}] is not finite: allowed finite numbers", at, a_name, j)));
    }
    if (!finite(k.c[j])) {
      return std::unexpected(
          bad(fmt::format("{}.{}[{}] is not finite: allowed finite numbers", at, c_name, j)));
    }
  }
  if (!std::isfinite(k.d)) return std::unexpected(bad(fmt::format("{}.d is not finite", at)));
  if (k.continuous && !(k.log_dt >= -20 && k.log_dt <= 5)) {
    return std::unexpected(
        bad(fmt::format("{}.log_dt = {}: allowed -20..5 (finite)", at, k.log_dt)));
  }
  return {};
}

Result<void> check_quantization(const Quantization& q, const std::string& at) {
  if (q.bits < 0 || q.bits == 1 || q.bits > kMaxBits) {
    return std::unexpected(bad(
        fmt::format("{}.quantization.bits = {}: allowed 0 (off) or 2..{}", at, q.bits, kMaxBits)));
  }
  if (q.bits > 0 && !(std::isfinite(q.f_scale_a) && q.f_scale_a > 0)) {
    return std::unexpected(bad(
        fmt::format("{}.quantization.f_scale_a = {}: allowed > 0 when bits > 0", at, q.f_scale_a)));
  }
  if (q.bits > 0 && !(std::isfinite(q.f_scale_c) && q.f_scale_c >= 0)) {
    return std::unexpected(bad(
        fmt::format("{}.quantization.f_scale_c = {}: allowed >= 0 (0 = from C)", at, q.f_scale_c)));
  }
  for (const auto& [t, name] :
       {std::pair{&q.levels_a_re, "levels_a_re"}, std::pair{&q.levels_a_im, "levels_a_im"},
        std::pair{&q.levels_c, "levels_c"}}) {
    if (t->size() > static_cast<size_t>(kMaxLevels)) {
      return std::unexpected(bad(fmt::format("{}.quantization.{}: {} levels, allowed up to {}", at,
                                             name, t->size(), kMaxLevels)));
    }
    for (size_t j = 0; j < t->size(); ++j) {
      if (!std::isfinite((*t)[j]) || (j > 0 && !((*t)[j] > (*t)[j - 1]))) {
        return std::unexpected(bad(fmt::format(
            "{}.quantization.{}[{}] = {}: allowed finite levels, sorted ascending and distinct", at,
            name, j, (*t)[j])));
      }
    }
  }
  return {};
}

Result<void> check_mode_range(const KernelSpec& k, const std::string& at) {
  if (k.mode_range.empty()) return {};
  if (k.mode_range.size() != k.a.size()) {
    return std::unexpected(
        bad(fmt::format("{}.mode_range: {} values for {} states: one per state, or none", at,
                        k.mode_range.size(), k.a.size())));
  }
  const auto [lo, hi] = std::minmax_element(k.mode_range.begin(), k.mode_range.end());
  for (size_t j = 0; j < k.mode_range.size(); ++j) {
    if (!(std::isfinite(k.mode_range[j]) && k.mode_range[j] > 0)) {
      return std::unexpected(
          bad(fmt::format("{}.mode_range[{}] = {}: allowed finite > 0", at, j, k.mode_range[j])));
    }
  }
  if (*hi > kMaxModeRangeRatio * *lo) {
    return std::unexpected(bad(fmt::format(
        "{}.mode_range[{}] = {:.6g}: allowed at most {:g} x the smallest ({:.6g}; a mode gain "
        "below 1/{:g} puts the mode's input weight under the programming resolution)",
        at, hi - k.mode_range.begin(), *hi, kMaxModeRangeRatio, *lo, kMaxModeRangeRatio)));
  }
  return {};
}

// The discretized (and quantized) kernel: stable, non-zero, and with an output at all.
Result<void> check_discrete(const KernelSpec& k, const DiscreteKernel& dk, const std::string& at) {
  const char* a_name = k.continuous ? "a" : "a_bar";
  const char* c_name = k.continuous ? "c" : "c_bar";
  const Quantization& q = k.quant;
  for (int j = 0; j < dk.states(); ++j) {
    const double mag = std::abs(dk.a_bar[static_cast<size_t>(j)]);
    if (!(mag < 1.0)) {
      return std::unexpected(bad(fmt::format(
          "{}.{}[{}]: |A_bar| = {:.6g}{}: allowed < 1 (the recurrence is unstable otherwise)", at,
          a_name, j, mag, q.bits > 0 ? " after quantization" : "")));
    }
    if (!finite(dk.c_bar[static_cast<size_t>(j)])) {
      return std::unexpected(bad(fmt::format("{}.{}[{}]: C_bar is not finite", at, c_name, j)));
    }
  }
  if (max_component(dk.a_bar) == 0) {
    return std::unexpected(bad(fmt::format("{}.{}: A_bar is all zero", at, a_name)));
  }
  if (max_component(dk.c_bar) == 0) {
    return std::unexpected(bad(fmt::format("{}.{}: C_bar is all zero", at, c_name)));
  }
  // The output is y_t = 2 Re(C_bar A_bar^t) u_0 + ...: C_bar can be non-zero and still put
  // nothing on the output (purely imaginary C_bar on real A_bar; a quantization that rounds
  // the real parts away). Such a kernel programs, then verifies at an NRMSE of 1e14.
  double peak = 0;
  std::vector<cd> x(dk.a_bar.size(), cd(1.0, 0.0));
  for (int t = 0; t < 64; ++t) {  // h has order <= 2 kMaxStates: 30 zeros in a row, all zero
    cd y = 0;
    for (size_t j = 0; j < x.size(); ++j) y += dk.c_bar[j] * x[j];
    peak = std::max(peak, std::abs(2 * y.real()));
    for (size_t j = 0; j < x.size(); ++j) x[j] *= dk.a_bar[j];
  }
  if (!(peak > 1e-12 * max_component(dk.c_bar))) {
    return std::unexpected(bad(fmt::format(
        "{}{}: the impulse response 2 Re(C_bar A_bar^t) is zero{} (largest |C_bar| "
        "component {:.3g}): nothing would reach the output",
        at, k.name.empty() ? "" : " ('" + k.name + "')",
        q.bits > 0 ? fmt::format(" after quantization to {} bits (f_scale_a = {}, f_scale_c = "
                                 "{})",
                                 q.bits, q.f_scale_a, q.f_scale_c)
                   : std::string(),
        max_component(dk.c_bar))));
  }
  return {};
}

}  // namespace

Result<void> validate(const KernelSetSpec& set, double chip_lo_uS, double chip_hi_uS) {
  const Window& w = set.window;
  if (set.kernels.empty() || set.kernels.size() > static_cast<size_t>(kMaxKernels)) {
    return std::unexpected(bad(fmt::format("kernels: {} given, allowed 1..{} (one per array)",
                                           set.kernels.size(), kMaxKernels)));
  }
  if (!(std::isfinite(w.g_min_uS) && std::isfinite(w.g_max_uS) && w.g_min_uS >= chip_lo_uS &&
        w.g_max_uS <= chip_hi_uS && w.g_min_uS < w.g_max_uS)) {
    return std::unexpected(bad(
        fmt::format("window: g_min_uS = {}, g_max_uS = {}: need {} <= g_min_uS < g_max_uS <= {} uS",
                    w.g_min_uS, w.g_max_uS, chip_lo_uS, chip_hi_uS)));
  }
  for (size_t i = 0; i < set.kernels.size(); ++i) {
    const KernelSpec& k = set.kernels[i];
    const std::string at = fmt::format("kernels[{}]", i);
    XBAR_RETURN_IF_ERROR(check_fields(k, at));
    XBAR_RETURN_IF_ERROR(check_quantization(k.quant, at));
    XBAR_RETURN_IF_ERROR(check_mode_range(k, at));
    const DiscreteKernel dk = discretize(k);
    XBAR_RETURN_IF_ERROR(check_discrete(k, dk, at));
    // compile() divides the window by the largest components (and C_bar by the mode gains):
    // a C_bar of 1e-313, or of 1e300 on a mode gain of 1e-9, overflows a scale and the targets
    // come out NaN.
    if (!compile(k, w).target_uS.allFinite()) {
      return std::unexpected(bad(fmt::format(
          "{}: the conductance scales overflow (largest component of A_bar {:.3g}, of C_bar "
          "{:.3g}): the values are too small or too far apart for the window",
          at, max_component(dk.a_bar), max_component(dk.c_bar))));
    }
  }
  return {};
}

DiscreteKernel discretize(const KernelSpec& spec, bool apply_quantization) {
  DiscreteKernel out;
  out.d = spec.d;
  const Quantization& q = spec.quant;
  const int bits = apply_quantization ? q.bits : 0;
  const double f_c = q.f_scale_c > 0 ? q.f_scale_c : std::max(max_component(spec.c), 1e-300);
  std::vector<cd> a = spec.a, c = spec.c;
  // One part (Re or Im of A or C): its level table when it has one, else eq. 3.
  auto part = [&](double x, const std::vector<double>& table, double f) {
    if (!apply_quantization) return x;
    return table.empty() ? quantize(x, bits, f) : nearest_level(table, x);
  };
  for (cd& z : a) {
    z = {part(z.real(), q.levels_a_re, q.f_scale_a), part(z.imag(), q.levels_a_im, q.f_scale_a)};
  }
  for (cd& z : c) z = {part(z.real(), q.levels_c, f_c), part(z.imag(), q.levels_c, f_c)};
  if (!spec.continuous) {
    out.a_bar = std::move(a);
    out.c_bar = std::move(c);
    return out;
  }
  const double dt = std::exp(spec.log_dt);
  for (size_t j = 0; j < a.size(); ++j) {
    const cd dta = dt * a[j];
    const cd abar = std::exp(dta);
    // (exp(dt a) - 1) / a, with its limit dt for a -> 0 (expm1 keeps small dt a accurate).
    const cd ratio = std::abs(dta) < 1e-8 ? cd(dt) : (abar - 1.0) / a[j];
    out.a_bar.push_back(abar);
    out.c_bar.push_back(c[j] * ratio);
  }
  return out;
}

RowKind row_kind(int n_states, int r) {
  if (r < 4) return RowKind::kInput;
  if (r < 4 + 4 * n_states) return RowKind::kState;
  return RowKind::kSpare;
}

ColKind col_kind(int n_states, int c) {
  if (c < 4 * n_states) return ColKind::kState;
  if (c < 4 * n_states + 4) return ColKind::kOutput;
  return ColKind::kSpare;
}

Eigen::Matrix4d expand(cd m) {
  const double rp = std::max(m.real(), 0.0), rn = std::max(-m.real(), 0.0);
  const double ip = std::max(m.imag(), 0.0), in = std::max(-m.imag(), 0.0);
  // Eq. 6 with outputs as rows; the crossbar has inputs on rows, so the block is transposed.
  Eigen::Matrix4d out_by_in;
  out_by_in << rp, rn, in, ip,  //
      rn, rp, ip, in,           //
      ip, in, rp, rn,           //
      in, ip, rn, rp;
  return out_by_in.transpose();
}

double CompiledKernel::scale_uS(int logical_col) const {
  return col_kind(n, logical_col) == ColKind::kOutput ? output_scale_uS : state_scale_uS;
}

CompiledKernel compile(const KernelSpec& spec, const Window& window) {
  CompiledKernel ck;
  ck.kernel = discretize(spec, true);
  ck.unquantized = discretize(spec, false);
  ck.n = ck.kernel.states();
  ck.window = window;
  const double span = window.g_max_uS - window.g_min_uS;
  const double a_max = max_component(ck.kernel.a_bar);
  ck.b_weight = a_max;
  ck.state_scale_uS = span / a_max;
  ck.input_gain = 1.0 / ck.b_weight;
  const int n = ck.n;
  // Mode gains: the array holds beta_k x_k, with beta_k = H_min / H_k, so that every mode spans
  // the same range of row magnitudes (a diagonal change of state variables: exact; B_k =
  // b beta_k, C_k / beta_k). H_k is the range the mode's state meets: measured on data when
  // the spec has it (a mode that real inputs barely excite then gets fine codes instead of
  // the worst case's coarse ones), else the worst case for a unit input, 1 / (1 - |A_k|).
  std::vector<double> h;
  if (spec.mode_range.size() == ck.kernel.a_bar.size()) {
    h = spec.mode_range;
  } else {
    for (cd a : ck.kernel.a_bar) h.push_back(1.0 / std::max(1.0 - std::abs(a), 1e-9));
  }
  const double h_min = *std::min_element(h.begin(), h.end());
  std::vector<cd> c_tilde;
  for (int k = 0; k < n; ++k) {
    ck.mode_gain.push_back(h_min / h[static_cast<size_t>(k)]);
    c_tilde.push_back(ck.kernel.c_bar[static_cast<size_t>(k)] / ck.mode_gain.back());
  }
  ck.output_scale_uS = span / max_component(c_tilde);
  ck.part = Eigen::MatrixXd::Zero(kSide, kSide);
  for (int k = 0; k < n; ++k) {
    const auto kk = static_cast<size_t>(k);
    ck.part.block<4, 4>(input_row(0), state_col(k, 0)) =
        expand(cd(ck.b_weight * ck.mode_gain[kk], 0));
    ck.part.block<4, 4>(state_row(k, 0), state_col(k, 0)) = expand(ck.kernel.a_bar[kk]);
    ck.part.block<4, 4>(state_row(k, 0), output_col(n, 0)) = expand(c_tilde[kk]);
  }
  ck.target_uS.resize(kSide, kSide);
  for (int c = 0; c < kSide; ++c) {
    ck.target_uS.col(c) = (window.g_min_uS + ck.scale_uS(c) * ck.part.col(c).array()).matrix();
  }
  return ck;
}

Placement Placement::identity() {
  Placement p;
  p.row_of.resize(kSide);
  p.col_of.resize(kSide);
  std::iota(p.row_of.begin(), p.row_of.end(), 0);
  std::iota(p.col_of.begin(), p.col_of.end(), 0);
  return p;
}

Eigen::MatrixXd place(const Eigen::MatrixXd& logical, const Placement& p) {
  Eigen::MatrixXd out(logical.rows(), logical.cols());
  for (int r = 0; r < logical.rows(); ++r) {
    for (int c = 0; c < logical.cols(); ++c) {
      out(p.row_of[static_cast<size_t>(r)], p.col_of[static_cast<size_t>(c)]) = logical(r, c);
    }
  }
  return out;
}

Eigen::MatrixXd unplace(const Eigen::MatrixXd& physical, const Placement& p) {
  Eigen::MatrixXd out(physical.rows(), physical.cols());
  for (int r = 0; r < physical.rows(); ++r) {
    for (int c = 0; c < physical.cols(); ++c) {
      out(r, c) = physical(p.row_of[static_cast<size_t>(r)], p.col_of[static_cast<size_t>(c)]);
    }
  }
  return out;
}

std::vector<Route> feedback_routes(int n_states, const Placement& p) {
  std::vector<Route> routes;
  for (int k = 0; k < n_states; ++k) {
    for (int comp = 0; comp < 4; ++comp) {
      routes.push_back({p.col_of[static_cast<size_t>(state_col(k, comp))],
                        p.row_of[static_cast<size_t>(state_row(k, comp))]});
    }
  }
  return routes;
}

}  // namespace xbar::kernel
