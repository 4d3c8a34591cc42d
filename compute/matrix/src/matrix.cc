#include "xbar/matrix/matrix.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace xbar::matrix {

namespace {

std::unexpected<Error> bad(std::string message) {
  return make_error(ErrorCode::kInvalidArgument, std::move(message));
}

Result<void> check_shape_and_values(const Eigen::MatrixXd& w) {
  if (w.rows() == 0 || w.cols() == 0) {
    return bad(
        fmt::format("w: {} x {}: a matrix needs at least 1 row and 1 column", w.rows(), w.cols()));
  }
  if (w.rows() > kMaxSide || w.cols() > kMaxSide) {
    return bad(fmt::format("w: {} x {}: allowed up to {} a side", w.rows(), w.cols(), kMaxSide));
  }
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    for (Eigen::Index c = 0; c < w.cols(); ++c) {
      if (!std::isfinite(w(r, c))) {
        return bad(fmt::format("w[{}][{}] = {}: allowed finite numbers", r, c, w(r, c)));
      }
    }
  }
  return {};
}

Result<void> check_table(const std::vector<double>& t, size_t i, double range) {
  if (t.empty() || t.size() > static_cast<size_t>(kMaxLevels)) {
    return bad(
        fmt::format("quantization.tables[{}]: {} levels, allowed 1..{}", i, t.size(), kMaxLevels));
  }
  for (size_t j = 0; j < t.size(); ++j) {
    if (!std::isfinite(t[j])) {
      return bad(fmt::format("quantization.tables[{}].levels[{}] = {}: allowed finite numbers", i,
                             j, t[j]));
    }
    if (j > 0 && !(t[j] > t[j - 1])) {
      return bad(fmt::format(
          "quantization.tables[{}].levels[{}] = {} after {}: levels must be sorted ascending "
          "and distinct",
          i, j, t[j], t[j - 1]));
    }
    if (range > 0 && std::abs(t[j]) > range) {
      return bad(
          fmt::format("quantization.tables[{}].levels[{}] = {}: outside the window -{}..{} "
                      "(quantization.range)",
                      i, j, t[j], range, range));
    }
  }
  return {};
}

Result<void> check_quantization(const Quantization& q, Eigen::Index n_cols) {
  if (q.bits != 0 && (q.bits < 2 || q.bits > kMaxBits)) {
    return bad(fmt::format("quantization.bits = {}: allowed 0 (none) or 2..{}", q.bits, kMaxBits));
  }
  if (!std::isfinite(q.range) || q.range < 0) {
    return bad(fmt::format(
        "quantization.range = {}: allowed a finite number >= 0 (0: the largest |w|)", q.range));
  }
  if (!q.levels.empty() && q.levels.size() != 1 && q.levels.size() != static_cast<size_t>(n_cols)) {
    return bad(
        fmt::format("quantization.tables: {} tables, allowed 1 (the whole matrix) or {} (one per "
                    "column)",
                    q.levels.size(), n_cols));
  }
  for (size_t i = 0; i < q.levels.size(); ++i)
    XBAR_RETURN_IF_ERROR(check_table(q.levels[i], i, q.range));
  return {};
}

double nearest_level(const std::vector<double>& t, double x) {
  auto it = std::lower_bound(t.begin(), t.end(), x);
  if (it == t.end()) return t.back();
  if (it == t.begin()) return *it;
  const double hi = *it, lo = *(it - 1);
  return (x - lo) <= (hi - x) ? lo : hi;
}

}  // namespace

Result<void> validate(const MatrixSpec& spec, double chip_lo_uS, double chip_hi_uS) {
  XBAR_RETURN_IF_ERROR(check_shape_and_values(spec.w));
  XBAR_RETURN_IF_ERROR(check_quantization(spec.quant, spec.w.cols()));
  const Window& win = spec.window;
  if (!(std::isfinite(win.g_min_uS) && std::isfinite(win.g_max_uS) && win.g_min_uS >= chip_lo_uS &&
        win.g_max_uS <= chip_hi_uS && win.g_max_uS - win.g_min_uS >= 10.0)) {
    return bad(
        fmt::format("g_min_uS = {}, g_max_uS = {}: allowed {}..{} uS with g_max at "
                    "least 10 uS above g_min",
                    win.g_min_uS, win.g_max_uS, chip_lo_uS, chip_hi_uS));
  }
  return {};
}

double effective_range(const MatrixSpec& spec) {
  if (spec.quant.range > 0) return spec.quant.range;
  double m = 0;
  if (!spec.quant.levels.empty()) {
    for (const auto& t : spec.quant.levels) {
      for (double v : t) m = std::max(m, std::abs(v));
    }
  } else {
    m = spec.w.cwiseAbs().maxCoeff();
  }
  return m > 0 ? m : 1.0;
}

Eigen::MatrixXd quantize(const MatrixSpec& spec) {
  const Quantization& q = spec.quant;
  const double f = effective_range(spec);
  Eigen::MatrixXd out(spec.w.rows(), spec.w.cols());
  const double n = q.bits > 0 ? std::ldexp(1.0, q.bits - 1) - 1 : 0;
  for (Eigen::Index c = 0; c < spec.w.cols(); ++c) {
    const std::vector<double>* table =
        q.levels.empty() ? nullptr : &q.levels[q.levels.size() == 1 ? 0 : static_cast<size_t>(c)];
    for (Eigen::Index r = 0; r < spec.w.rows(); ++r) {
      const double x = std::clamp(spec.w(r, c), -f, f);
      if (table != nullptr) {
        out(r, c) = nearest_level(*table, x);
      } else if (q.bits > 0) {
        out(r, c) = std::clamp(std::round(x * n / f), -n, n) * f / n;
      } else {
        out(r, c) = x;
      }
    }
  }
  return out;
}

double relative_error(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  const double nb = b.norm();
  const double nd = (a - b).norm();
  if (nb == 0) return nd == 0 ? 0.0 : INFINITY;
  return nd / nb;
}

}  // namespace xbar::matrix
