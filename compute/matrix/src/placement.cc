#include "xbar/matrix/placement.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace xbar::matrix {

namespace {

// A tile's logical targets and which logical rows and columns it uses.
struct Layout {
  Eigen::MatrixXd target_uS;  // logical, rows x cols
  Orientation o;
  int used_rows = 0, used_cols = 0;

  bool used(int i, int j) const { return i < used_rows && j < used_cols; }
  // The other device of the differential pair of logical (i, j).
  std::pair<int, int> partner(int i, int j) const {
    return o == Orientation::kColumnPairs ? std::pair{i, j ^ 1} : std::pair{i ^ 1, j};
  }
};

// What a stuck device at logical (i, j) leaves as error (uS) once its partner, if it is free to,
// takes the rest of the difference up within the programmable range.
double residual_uS(const Layout& l, int i, int j, double g_uS, bool partner_free,
                   const PlaceOptions& opt) {
  if (!l.used(i, j)) return 0;
  const double e = g_uS - l.target_uS(i, j);
  if (opt.naive || !partner_free) return e;
  const auto [pi, pj] = l.partner(i, j);
  const double tp = l.target_uS(pi, pj);
  const double moved = std::clamp(tp + e, opt.prog_lo_uS, opt.prog_hi_uS) - tp;
  return e - moved;
}

std::vector<int> inverse(const std::vector<int>& of) {
  std::vector<int> inv(of.size());
  for (size_t k = 0; k < of.size(); ++k) inv[static_cast<size_t>(of[k])] = static_cast<int>(k);
  return inv;
}

// Rows (by_row) or columns (!by_row) assigned, the other side held fixed: the cost of logical
// line a on physical line p is the squared residual of the stuck devices p would carry.
std::vector<int> assign(const Layout& l, const std::vector<kernel::StuckDevice>& stuck,
                        const std::vector<int>& other_of, int n, bool by_row,
                        const PlaceOptions& opt) {
  const std::vector<int> other_inv = inverse(other_of);
  Eigen::MatrixXd cost = Eigen::MatrixXd::Zero(n, n);
  for (const kernel::StuckDevice& s : stuck) {
    const int p = by_row ? s.row : s.col;
    const int q = other_inv[static_cast<size_t>(by_row ? s.col : s.row)];
    for (int a = 0; a < n; ++a) {
      const double r = by_row ? residual_uS(l, a, q, s.g_uS, true, opt)
                              : residual_uS(l, q, a, s.g_uS, true, opt);
      cost(a, p) += r * r;
    }
  }
  return kernel::min_cost_assignment(cost);
}

// The placement's targets, compensation and accounting.
void evaluate(const Layout& l, const std::vector<kernel::StuckDevice>& stuck,
              const PlaceOptions& opt, TilePlacement& tp) {
  const auto rows = static_cast<int>(l.target_uS.rows());
  const auto cols = static_cast<int>(l.target_uS.cols());
  tp.target_uS.resize(rows, cols);
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) {
      tp.target_uS(tp.row_of[static_cast<size_t>(i)], tp.col_of[static_cast<size_t>(j)]) =
          l.target_uS(i, j);
    }
  }
  tp.skip.setConstant(rows, cols, false);
  for (const kernel::StuckDevice& s : stuck) tp.skip(s.row, s.col) = true;
  const std::vector<int> row_inv = inverse(tp.row_of), col_inv = inverse(tp.col_of);
  tp.faults = static_cast<int>(stuck.size());
  tp.avoided = tp.compensated = tp.residual = 0;
  for (const kernel::StuckDevice& s : stuck) {
    const int i = row_inv[static_cast<size_t>(s.row)], j = col_inv[static_cast<size_t>(s.col)];
    if (!l.used(i, j)) {
      ++tp.avoided;
      continue;
    }
    const auto [pi, pj] = l.partner(i, j);
    const int pr = tp.row_of[static_cast<size_t>(pi)], pc = tp.col_of[static_cast<size_t>(pj)];
    const bool free = !tp.skip(pr, pc);
    const double r = residual_uS(l, i, j, s.g_uS, free, opt);
    if (free && !opt.naive) tp.target_uS(pr, pc) += (s.g_uS - l.target_uS(i, j)) - r;
    (std::abs(r) <= 1.0 ? tp.compensated : tp.residual) += 1;
  }
  // Rounding may carry a target a hair past the window's edge (g_max = prog_hi).
  tp.target_uS = tp.target_uS.cwiseMax(opt.prog_lo_uS).cwiseMin(opt.prog_hi_uS);
}

// The tile's weights as the targets would give them with every stuck device at its recorded
// conductance, against the intended ones.
double predicted_error(const TilePlacement& tp, const Layout& l, const Tile& t, double scale_uS,
                       const std::vector<kernel::StuckDevice>& stuck) {
  Eigen::MatrixXd g = tp.target_uS;
  for (const kernel::StuckDevice& s : stuck) g(s.row, s.col) = s.g_uS;
  std::vector<int> id_r(static_cast<size_t>(l.target_uS.rows())),
      id_c(static_cast<size_t>(l.target_uS.cols()));
  std::iota(id_r.begin(), id_r.end(), 0);
  std::iota(id_c.begin(), id_c.end(), 0);
  const Eigen::MatrixXd intended = tile_weights(l.target_uS, t, l.o, id_r, id_c, scale_uS);
  return relative_error(tile_weights(g, t, l.o, tp.row_of, tp.col_of, scale_uS), intended);
}

}  // namespace

TilePlacement place_tile(const Eigen::MatrixXd& part, const Tile& t, Orientation o,
                         const Window& window, double scale_uS,
                         const std::vector<kernel::StuckDevice>& stuck, const PlaceOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto rows = static_cast<int>(part.rows()), cols = static_cast<int>(part.cols());
  Layout l{(window.g_min_uS + scale_uS * part.array()).matrix(), o, used_rows(o, t),
           used_cols(o, t)};
  TilePlacement tp;
  tp.row_of.resize(static_cast<size_t>(rows));
  tp.col_of.resize(static_cast<size_t>(cols));
  std::iota(tp.row_of.begin(), tp.row_of.end(), 0);
  std::iota(tp.col_of.begin(), tp.col_of.end(), 0);
  PlaceOptions naive = opt;
  naive.naive = true;
  evaluate(l, stuck, naive, tp);
  tp.naive_predicted_error = predicted_error(tp, l, t, scale_uS, stuck);
  if (!opt.naive && !stuck.empty()) {
    for (int pass = 0; pass < opt.passes; ++pass) {
      tp.row_of = assign(l, stuck, tp.col_of, rows, true, opt);
      tp.col_of = assign(l, stuck, tp.row_of, cols, false, opt);
    }
  }
  evaluate(l, stuck, opt, tp);
  tp.predicted_error = predicted_error(tp, l, t, scale_uS, stuck);
  tp.solve_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return tp;
}

}  // namespace xbar::matrix
