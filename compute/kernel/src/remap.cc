#include "xbar/kernel/remap.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "xbar/kernel/golden.h"

namespace xbar::kernel {

namespace {

// Everything the cost of one placement needs, in logical coordinates.
struct Problem {
  const CompiledKernel& ck;
  const Eigen::MatrixXd& sens;
  const std::vector<StuckDevice>& stuck;
  const RemapOptions& opt;
  // stuck_at(physical row, physical col) -> index into stuck, or -1
  Eigen::MatrixXi stuck_at = Eigen::MatrixXi::Constant(kSide, kSide, -1);

  Problem(const CompiledKernel& c, const Eigen::MatrixXd& s, const std::vector<StuckDevice>& st,
          const RemapOptions& o)
      : ck(c), sens(s), stuck(st), opt(o) {
    for (size_t i = 0; i < stuck.size(); ++i)
      stuck_at(stuck[i].row, stuck[i].col) = static_cast<int>(i);
  }

  bool used_col(int lc) const { return col_kind(ck.n, lc) != ColKind::kSpare; }

  // The differential error of a stuck device at logical (lr, lc) when its partner is healthy:
  // the partner is moved to keep g+ - g- (within what it can be programmed to) unless naive.
  double single_error(int lr, int lc, double g_uS) const {
    const double t = ck.target_uS(lr, lc);
    if (!used_col(lc)) return g_uS - t;
    const double d = t - ck.target_uS(lr, partner_col(lc));
    if (opt.naive) return g_uS - t;
    const double partner = std::clamp(g_uS - d, opt.prog_lo_uS, opt.prog_hi_uS);
    return (g_uS - partner) - d;
  }
  double single_cost(int lr, int lc, double g_uS) const {
    const double s = sens(lr, lc);
    if (s == 0) return 0;
    const double e = single_error(lr, lc, g_uS);
    // A stuck device's conductance is known to a few uS only: where it can hurt, it costs
    // that uncertainty even when compensated, so avoiding it wins over compensating it.
    return s * (e * e + opt.stuck_g_sigma_uS * opt.stuck_g_sigma_uS);
  }
};

struct Inverse {
  std::vector<int> lrow_of_prow, lcol_of_pcol;
  explicit Inverse(const Placement& p) : lrow_of_prow(kSide), lcol_of_pcol(kSide) {
    for (int i = 0; i < kSide; ++i) {
      lrow_of_prow[static_cast<size_t>(p.row_of[static_cast<size_t>(i)])] = i;
      lcol_of_pcol[static_cast<size_t>(p.col_of[static_cast<size_t>(i)])] = i;
    }
  }
};

// The cost (linear model) of stuck device i under a placement: the error of its differential
// pair, a pair with both devices stuck counted once (at its lower column).
double fault_cost(const Problem& pb, const Placement& p, const Inverse& inv, size_t i) {
  const StuckDevice& f = pb.stuck[i];
  const int lr = inv.lrow_of_prow[static_cast<size_t>(f.row)];
  const int lc = inv.lcol_of_pcol[static_cast<size_t>(f.col)];
  const double s = pb.sens(lr, lc);
  if (s == 0 || !pb.used_col(lc)) return 0;
  const int lp = partner_col(lc);
  const int other = pb.stuck_at(f.row, p.col_of[static_cast<size_t>(lp)]);
  if (other < 0) return pb.single_cost(lr, lc, f.g_uS);
  if (lp < lc) return 0;
  const double d = pb.ck.target_uS(lr, lc) - pb.ck.target_uS(lr, lp);
  const double e = (f.g_uS - pb.stuck[static_cast<size_t>(other)].g_uS) - d;
  return s * (e * e + 2 * pb.opt.stuck_g_sigma_uS * pb.opt.stuck_g_sigma_uS);
}

// Exact cost (linear model) of a placement.
double placement_cost(const Problem& pb, const Placement& p) {
  const Inverse inv(p);
  double cost = 0;
  for (size_t i = 0; i < pb.stuck.size(); ++i) cost += fault_cost(pb, p, inv, i);
  return cost;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Rows given the columns: the cost of logical row lr on physical row pr, assigned.
void assign_rows(const Problem& pb, Placement& p) {
  const Inverse inv(p);
  Eigen::MatrixXd c = Eigen::MatrixXd::Zero(kSide, kSide);
  for (const StuckDevice& f : pb.stuck) {
    const int lc = inv.lcol_of_pcol[static_cast<size_t>(f.col)];
    for (int lr = 0; lr < kSide; ++lr) c(lr, f.row) += pb.single_cost(lr, lc, f.g_uS);
  }
  const std::vector<int> a = min_cost_assignment(c);
  for (int lr = 0; lr < kSide; ++lr) p.row_of[static_cast<size_t>(lr)] = a[static_cast<size_t>(lr)];
}

// Columns given the rows: the cost of logical column lc on physical column pc, assigned.
void assign_cols(const Problem& pb, Placement& p) {
  const Inverse inv(p);
  Eigen::MatrixXd c = Eigen::MatrixXd::Zero(kSide, kSide);
  for (const StuckDevice& f : pb.stuck) {
    const int lr = inv.lrow_of_prow[static_cast<size_t>(f.row)];
    for (int lc = 0; lc < kSide; ++lc) c(lc, f.col) += pb.single_cost(lr, lc, f.g_uS);
  }
  const std::vector<int> a = min_cost_assignment(c);
  for (int lc = 0; lc < kSide; ++lc) p.col_of[static_cast<size_t>(lc)] = a[static_cast<size_t>(lc)];
}

// Alternating assignment from `best`: rows given the columns, columns given the rows, each a
// linear assignment over the single-device costs, for as long as the exact cost drops.
void alternate_assignments(const Problem& pb, Placement& best, double& best_cost) {
  Placement p = best;
  for (int pass = 0; pass < pb.opt.max_passes && best_cost > 0; ++pass) {
    assign_rows(pb, p);
    assign_cols(pb, p);
    const double cost = placement_cost(pb, p);
    if (cost < best_cost - 1e-15) {
      best = p;
      best_cost = cost;
    } else {
      break;  // no progress
    }
  }
}

// Local search: swap the logical rows (columns) of two physical rows (columns) when that
// lowers the exact cost; only rows/columns holding a stuck device can gain. A swap changes
// the cost of the faults in the two rows (columns), and for columns also of the faults whose
// differential partner sits in them, so only those are re-evaluated.
class SwapSearch {
 public:
  SwapSearch(const Problem& pb, Placement& best, double& best_cost)
      : pb_(pb), best_(best), best_cost_(best_cost), in_row_(kSide), in_col_(kSide), inv_(best) {
    for (size_t i = 0; i < pb.stuck.size(); ++i) {
      in_row_[static_cast<size_t>(pb.stuck[i].row)].push_back(i);
      in_col_[static_cast<size_t>(pb.stuck[i].col)].push_back(i);
    }
  }

  void run() {
    for (int pass = 0; pass < pb_.opt.max_passes && best_cost_ > 0; ++pass) {
      bool improved = false;
      for (int axis = 0; axis < 2; ++axis) improved = sweep(axis) || improved;
      if (!improved) break;
    }
  }

 private:
  // Every swap of a physical row (axis 0) or column (axis 1) holding a fault with any other,
  // kept where it gains; true if one did.
  bool sweep(int axis) {
    bool improved = false;
    const std::vector<int>& back = axis == 0 ? inv_.lrow_of_prow : inv_.lcol_of_pcol;
    for (int phys = 0; phys < kSide; ++phys) {
      if ((axis == 0 ? in_row_ : in_col_)[static_cast<size_t>(phys)].empty()) continue;
      for (int other = 0; other < kSide; ++other) {
        const int a = back[static_cast<size_t>(phys)];  // logical index on `phys`
        const int b = back[static_cast<size_t>(other)];
        if (a == b) continue;
        const double gain =
            axis == 0 ? row_swap_delta(phys, other, a, b) : col_swap_delta(phys, other, a, b);
        if (gain < -1e-15 * (1 + best_cost_)) {
          best_cost_ += gain;
          improved = true;
        } else {
          swap_at(axis, a, b);  // undo
        }
      }
    }
    return improved;
  }

  // Swaps logical rows a and b (on physical rows phys and other); returns the change of cost.
  double row_swap_delta(int phys, int other, int a, int b) {
    affected_.clear();
    for (size_t i : in_row_[static_cast<size_t>(phys)]) affected_.push_back(i);
    for (size_t i : in_row_[static_cast<size_t>(other)]) affected_.push_back(i);
    const double before = affected_cost();
    swap_at(0, a, b);
    return affected_cost() - before;
  }

  // Swaps logical columns a and b (on physical columns phys and other); returns the change of
  // cost.
  double col_swap_delta(int phys, int other, int a, int b) {
    affected_.clear();
    for (int pc : {phys, other, best_.col_of[static_cast<size_t>(partner_col(a))],
                   best_.col_of[static_cast<size_t>(partner_col(b))]}) {
      add_col(pc);
    }
    swap_at(1, a, b);
    // Partners may have moved: include their new columns too.
    add_col(best_.col_of[static_cast<size_t>(partner_col(a))]);
    add_col(best_.col_of[static_cast<size_t>(partner_col(b))]);
    std::sort(affected_.begin(), affected_.end());
    affected_.erase(std::unique(affected_.begin(), affected_.end()), affected_.end());
    const double after = affected_cost();
    // `before` must cover the same set.
    swap_at(1, a, b);
    const double before = affected_cost();
    swap_at(1, a, b);
    return after - before;
  }

  void add_col(int pc) {
    for (size_t i : in_col_[static_cast<size_t>(pc)]) affected_.push_back(i);
  }

  double affected_cost() const {
    double c = 0;
    for (size_t i : affected_) c += fault_cost(pb_, best_, inv_, i);
    return c;
  }

  void swap_at(int axis, int a, int b) {
    std::vector<int>& map = axis == 0 ? best_.row_of : best_.col_of;
    std::vector<int>& back = axis == 0 ? inv_.lrow_of_prow : inv_.lcol_of_pcol;
    std::swap(map[static_cast<size_t>(a)], map[static_cast<size_t>(b)]);
    back[static_cast<size_t>(map[static_cast<size_t>(a)])] = a;
    back[static_cast<size_t>(map[static_cast<size_t>(b)])] = b;
  }

  const Problem& pb_;
  Placement& best_;
  double& best_cost_;
  std::vector<std::vector<size_t>> in_row_, in_col_;  // faults by physical row, column
  Inverse inv_;
  std::vector<size_t> affected_;
};

// Alternating assignment, then pairwise swaps under the exact cost.
Placement solve(const Problem& pb) {
  Placement best = Placement::identity();
  if (pb.stuck.empty()) return best;
  double best_cost = placement_cost(pb, best);
  alternate_assignments(pb, best, best_cost);
  SwapSearch(pb, best, best_cost).run();
  return best;
}

}  // namespace

Eigen::MatrixXd device_tolerance(const Eigen::MatrixXd& target_uS, double tol_uS, double mid_lo_uS,
                                 double mid_hi_uS) {
  return target_uS.unaryExpr(
      [&](double t) { return t > mid_lo_uS && t < mid_hi_uS ? tol_uS : tol_uS / 2; });
}

std::vector<int> min_cost_assignment(const Eigen::MatrixXd& cost) {
  // Shortest augmenting paths with row/column potentials (Kuhn-Munkres in the O(n^3) form of
  // Jonker-Volgenant). Boost.Graph's maximum_weighted_matching (general graphs) gave the same
  // answers but took 12.5 ms per dense 64x64 problem; this takes ~0.1 ms, and the remapper
  // solves a dozen per kernel and array.
  const int n = static_cast<int>(cost.rows());
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(static_cast<size_t>(n + 1), 0), v(static_cast<size_t>(n + 1), 0);
  std::vector<int> match(static_cast<size_t>(n + 1), 0), way(static_cast<size_t>(n + 1), 0);
  for (int i = 1; i <= n; ++i) {
    match[0] = i;
    int j0 = 0;
    std::vector<double> minv(static_cast<size_t>(n + 1), inf);
    std::vector<char> used(static_cast<size_t>(n + 1), 0);
    do {
      used[static_cast<size_t>(j0)] = 1;
      const int i0 = match[static_cast<size_t>(j0)];
      double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= n; ++j) {
        if (used[static_cast<size_t>(j)]) continue;
        const double cur =
            cost(i0 - 1, j - 1) - u[static_cast<size_t>(i0)] - v[static_cast<size_t>(j)];
        if (cur < minv[static_cast<size_t>(j)]) {
          minv[static_cast<size_t>(j)] = cur;
          way[static_cast<size_t>(j)] = j0;
        }
        if (minv[static_cast<size_t>(j)] < delta) {
          delta = minv[static_cast<size_t>(j)];
          j1 = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used[static_cast<size_t>(j)]) {
          u[static_cast<size_t>(match[static_cast<size_t>(j)])] += delta;
          v[static_cast<size_t>(j)] -= delta;
        } else {
          minv[static_cast<size_t>(j)] -= delta;
        }
      }
      j0 = j1;
    } while (match[static_cast<size_t>(j0)] != 0);
    do {
      const int j1 = way[static_cast<size_t>(j0)];
      match[static_cast<size_t>(j0)] = match[static_cast<size_t>(j1)];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int> out(static_cast<size_t>(n));
  for (int j = 1; j <= n; ++j) out[static_cast<size_t>(match[static_cast<size_t>(j)] - 1)] = j - 1;
  return out;
}

ArrayPlan evaluate_placement(const CompiledKernel& ck, const Eigen::MatrixXd& sensitivity,
                             const std::vector<StuckDevice>& stuck, const Placement& p,
                             const RemapOptions& options) {
  const Problem pb(ck, sensitivity, stuck, options);
  const Inverse inv(p);
  ArrayPlan plan;
  plan.placement = p;
  plan.target_uS = place(ck.target_uS, p);
  plan.skip.setConstant(kSide, kSide, false);
  plan.faults = static_cast<int>(stuck.size());
  for (const StuckDevice& f : stuck) plan.skip(f.row, f.col) = true;
  for (const StuckDevice& f : stuck) {
    const int lr = inv.lrow_of_prow[static_cast<size_t>(f.row)];
    const int lc = inv.lcol_of_pcol[static_cast<size_t>(f.col)];
    const double s = sensitivity(lr, lc);
    double e = f.g_uS - ck.target_uS(lr, lc);
    bool moved_partner = false;
    if (pb.used_col(lc)) {
      const int pc = p.col_of[static_cast<size_t>(partner_col(lc))];
      const double d = ck.target_uS(lr, lc) - ck.target_uS(lr, partner_col(lc));
      if (plan.skip(f.row, pc)) {
        e = (f.g_uS - stuck[static_cast<size_t>(pb.stuck_at(f.row, pc))].g_uS) - d;
      } else if (!options.naive) {
        const double partner = std::clamp(f.g_uS - d, options.prog_lo_uS, options.prog_hi_uS);
        plan.target_uS(f.row, pc) = partner;
        e = (f.g_uS - partner) - d;
        moved_partner = true;
      }
    }
    // Negligible: it adds less than 1e-6 to the NRMSE (to first order).
    const bool negligible = s * e * e <= 1e-12;
    if (moved_partner && std::abs(f.g_uS - ck.target_uS(lr, lc)) * std::sqrt(s) > 1e-6 &&
        (negligible || std::abs(e) < 0.5)) {
      ++plan.compensated;  // it would have hurt; the partner cancels it
    } else if (negligible) {
      ++plan.avoided;
    } else {
      ++plan.residual;
    }
  }
  plan.predicted_uS = plan.target_uS;
  for (const StuckDevice& f : stuck) plan.predicted_uS(f.row, f.col) = f.g_uS;
  plan.cost = placement_cost(pb, p);
  return plan;
}

Result<std::vector<ArrayPlan>> remap(const std::vector<CompiledKernel>& kernels,
                                     const std::vector<std::vector<StuckDevice>>& stuck,
                                     const std::vector<int>& allowed, const RemapOptions& options) {
  const int nk = static_cast<int>(kernels.size());
  if (nk == 0) return make_error(ErrorCode::kInvalidArgument, "kernels: none given");
  if (static_cast<int>(allowed.size()) < nk) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("arrays: {} allowed for {} kernels: need one array per kernel",
                                  allowed.size(), nk));
  }
  for (int a : allowed) {
    if (a < 0 || a >= static_cast<int>(stuck.size())) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("arrays: {} is not an array: allowed 0..{}", a,
                                    static_cast<int>(stuck.size()) - 1));
    }
  }
  const auto inputs = fidelity_inputs(options.inputs_length);
  std::vector<Eigen::MatrixXd> sens;
  std::vector<double> sens_ms;
  for (const CompiledKernel& ck : kernels) {
    const auto t0 = std::chrono::steady_clock::now();
    sens.push_back(error_sensitivity(ck, inputs));
    sens_ms.push_back(ms_since(t0));
  }
  // Every (kernel, allowed array) pair solved independently; then the injective assignment of
  // kernels to arrays with the least total cost (at most 3! candidates).
  const int na = static_cast<int>(allowed.size());
  std::vector<std::vector<ArrayPlan>> plans(static_cast<size_t>(nk));
  for (int k = 0; k < nk; ++k) {
    for (int ai = 0; ai < na; ++ai) {
      const int a = allowed[static_cast<size_t>(ai)];
      const auto t0 = std::chrono::steady_clock::now();
      const auto& st = stuck[static_cast<size_t>(a)];
      const Problem pb(kernels[static_cast<size_t>(k)], sens[static_cast<size_t>(k)], st, options);
      const Placement p = options.naive ? Placement::identity() : solve(pb);
      ArrayPlan plan = evaluate_placement(kernels[static_cast<size_t>(k)],
                                          sens[static_cast<size_t>(k)], st, p, options);
      plan.kernel = k;
      plan.array = a;
      plan.solve_ms = ms_since(t0) + sens_ms[static_cast<size_t>(k)];
      plans[static_cast<size_t>(k)].push_back(std::move(plan));
    }
  }
  std::vector<int> order(static_cast<size_t>(na));
  std::iota(order.begin(), order.end(), 0);
  std::vector<int> best_order;
  double best_total = 0;
  if (options.naive) {
    best_order = order;
  } else {
    do {
      double total = 0;
      for (int k = 0; k < nk; ++k) {
        total +=
            plans[static_cast<size_t>(k)][static_cast<size_t>(order[static_cast<size_t>(k)])].cost;
      }
      if (best_order.empty() || total < best_total - 1e-15) {
        best_total = total;
        best_order = order;
      }
    } while (std::next_permutation(order.begin(), order.end()));
  }
  std::vector<ArrayPlan> out;
  for (int k = 0; k < nk; ++k) {
    ArrayPlan plan = std::move(
        plans[static_cast<size_t>(k)][static_cast<size_t>(best_order[static_cast<size_t>(k)])]);
    const CompiledKernel& ck = kernels[static_cast<size_t>(k)];
    plan.predicted_nrmse = fidelity_nrmse(ck, plan.placement, plan.predicted_uS, inputs);
    RemapOptions naive = options;
    naive.naive = true;
    const ArrayPlan np =
        evaluate_placement(ck, sens[static_cast<size_t>(k)], stuck[static_cast<size_t>(plan.array)],
                           Placement::identity(), naive);
    plan.naive_predicted_nrmse = fidelity_nrmse(ck, np.placement, np.predicted_uS, inputs);
    out.push_back(std::move(plan));
  }
  return out;
}

}  // namespace xbar::kernel
