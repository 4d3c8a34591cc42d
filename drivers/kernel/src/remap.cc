#include "xbar/kernel/remap.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/maximum_weighted_matching.hpp>
#include <chrono>
#include <cmath>
#include <numeric>

#include "xbar/kernel/model.h"

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

// Exact cost (linear model) of a placement: per stuck device, the error of its differential
// pair, counting a pair with both devices stuck once.
double placement_cost(const Problem& pb, const Placement& p) {
  const Inverse inv(p);
  double cost = 0;
  for (const StuckDevice& f : pb.stuck) {
    const int lr = inv.lrow_of_prow[static_cast<size_t>(f.row)];
    const int lc = inv.lcol_of_pcol[static_cast<size_t>(f.col)];
    const double s = pb.sens(lr, lc);
    if (s == 0) continue;
    if (!pb.used_col(lc)) continue;
    const int lp = partner_col(lc);
    const int other = pb.stuck_at(f.row, p.col_of[static_cast<size_t>(lp)]);
    if (other >= 0) {
      if (lp < lc) continue;  // the pair is counted at its lower column
      const double d = pb.ck.target_uS(lr, lc) - pb.ck.target_uS(lr, lp);
      const double e = (f.g_uS - pb.stuck[static_cast<size_t>(other)].g_uS) - d;
      cost += s * (e * e + 2 * pb.opt.stuck_g_sigma_uS * pb.opt.stuck_g_sigma_uS);
    } else {
      cost += pb.single_cost(lr, lc, f.g_uS);
    }
  }
  return cost;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Alternating assignment: rows given the columns, columns given the rows, each a linear
// assignment over the single-device costs; then pairwise swaps under the exact cost.
Placement solve(const Problem& pb) {
  Placement best = Placement::identity();
  if (pb.stuck.empty()) return best;
  double best_cost = placement_cost(pb, best);
  Placement p = best;
  for (int pass = 0; pass < pb.opt.max_passes && best_cost > 0; ++pass) {
    // Rows: cost of logical row lr on physical row pr.
    {
      const Inverse inv(p);
      Eigen::MatrixXd c = Eigen::MatrixXd::Zero(kSide, kSide);
      for (const StuckDevice& f : pb.stuck) {
        const int lc = inv.lcol_of_pcol[static_cast<size_t>(f.col)];
        for (int lr = 0; lr < kSide; ++lr) c(lr, f.row) += pb.single_cost(lr, lc, f.g_uS);
      }
      const std::vector<int> a = min_cost_assignment(c);
      for (int lr = 0; lr < kSide; ++lr)
        p.row_of[static_cast<size_t>(lr)] = a[static_cast<size_t>(lr)];
    }
    {
      const Inverse inv(p);
      Eigen::MatrixXd c = Eigen::MatrixXd::Zero(kSide, kSide);
      for (const StuckDevice& f : pb.stuck) {
        const int lr = inv.lrow_of_prow[static_cast<size_t>(f.row)];
        for (int lc = 0; lc < kSide; ++lc) c(lc, f.col) += pb.single_cost(lr, lc, f.g_uS);
      }
      const std::vector<int> a = min_cost_assignment(c);
      for (int lc = 0; lc < kSide; ++lc)
        p.col_of[static_cast<size_t>(lc)] = a[static_cast<size_t>(lc)];
    }
    const double cost = placement_cost(pb, p);
    if (cost < best_cost - 1e-15) {
      best = p;
      best_cost = cost;
    } else {
      break;  // no progress
    }
  }
  // Local search: swap the logical rows (columns) of two physical rows (columns) when that
  // lowers the exact cost; only rows/columns holding a stuck device can gain.
  std::vector<int> fault_rows, fault_cols;
  for (const StuckDevice& f : pb.stuck) {
    fault_rows.push_back(f.row);
    fault_cols.push_back(f.col);
  }
  std::sort(fault_rows.begin(), fault_rows.end());
  fault_rows.erase(std::unique(fault_rows.begin(), fault_rows.end()), fault_rows.end());
  std::sort(fault_cols.begin(), fault_cols.end());
  fault_cols.erase(std::unique(fault_cols.begin(), fault_cols.end()), fault_cols.end());
  for (int pass = 0; pass < pb.opt.max_passes && best_cost > 0; ++pass) {
    bool improved = false;
    for (int axis = 0; axis < 2; ++axis) {
      std::vector<int>& map = axis == 0 ? best.row_of : best.col_of;
      const std::vector<int>& hot = axis == 0 ? fault_rows : fault_cols;
      for (int phys : hot) {
        const auto at = std::find(map.begin(), map.end(), phys) - map.begin();
        for (int other = 0; other < kSide; ++other) {
          if (other == at) continue;
          std::swap(map[static_cast<size_t>(at)], map[static_cast<size_t>(other)]);
          const double cost = placement_cost(pb, best);
          if (cost < best_cost - 1e-15) {
            best_cost = cost;
            improved = true;
            break;  // `at` now holds another physical index; move to the next hot one
          }
          std::swap(map[static_cast<size_t>(at)], map[static_cast<size_t>(other)]);
        }
      }
    }
    if (!improved) break;
  }
  return best;
}

}  // namespace

Eigen::MatrixXd device_tolerance(const Eigen::MatrixXd& target_uS, double tol_uS, double mid_lo_uS,
                                 double mid_hi_uS) {
  return target_uS.unaryExpr(
      [&](double t) { return t > mid_lo_uS && t < mid_hi_uS ? tol_uS : tol_uS / 2; });
}

std::vector<int> min_cost_assignment(const Eigen::MatrixXd& cost) {
  using Weight = boost::property<boost::edge_weight_t, long long>;
  using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS,
                                      boost::no_property, Weight>;
  const int n = static_cast<int>(cost.rows());
  // Integer weights keep the matching's equality tests exact: BIG - cost scaled to 2^48, so
  // a maximum-weight matching is perfect and of minimum cost.
  const double max_cost = cost.maxCoeff();
  const double unit = max_cost > 0 ? max_cost / 281474976710656.0 : 1.0;  // 2^48
  const long long big = 1LL << 50;
  Graph g(static_cast<size_t>(2 * n));
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const long long w = big - static_cast<long long>(std::llround(cost(i, j) / unit));
      boost::add_edge(static_cast<size_t>(i), static_cast<size_t>(n + j), Weight(w), g);
    }
  }
  std::vector<boost::graph_traits<Graph>::vertex_descriptor> mate(static_cast<size_t>(2 * n));
  boost::maximum_weighted_matching(g, mate.data());
  std::vector<int> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    out[static_cast<size_t>(i)] = static_cast<int>(mate[static_cast<size_t>(i)]) - n;
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
