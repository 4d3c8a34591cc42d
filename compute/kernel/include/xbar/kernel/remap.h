// Remapping around stuck devices (DESIGN.md §4): choose the physical row of every logical row,
// the physical column of every logical column (injective, spares included), the kernel -> array
// assignment and the differential-pair compensation, minimising the kernel output error the
// known stuck devices cause. docs/kernels.md describes the cost model and the search.
#pragma once

#include <Eigen/Core>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/kernel/kernel.h"

namespace xbar::kernel {

/// A stuck device at a physical position, at a (recorded or assumed) conductance.
struct StuckDevice {
  int row = 0, col = 0;
  bool high = true;
  double g_uS = 0;
};

struct RemapOptions {
  bool naive = false;  // identity placement, kernel i on the i-th allowed array, no compensation
  double prog_lo_uS = 1.0;  // what a compensating partner may be programmed to
  double prog_hi_uS = 250.0;
  double stuck_g_sigma_uS = 2.0;  // how well a stuck device's conductance is known
  int max_passes = 6;             // alternating assignment passes
  int inputs_length = 871;        // steps of each fidelity input sequence
};

/// One kernel placed on one array.
struct ArrayPlan {
  int kernel = 0, array = 0;
  Placement placement;
  Eigen::MatrixXd target_uS;                                 // physical, compensation included
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> skip;  // stuck devices: not programmed
  Eigen::MatrixXd predicted_uS;  // targets with the stuck devices at their conductance
  double cost = 0;               // linearised cost (squared NRMSE, first order)
  double predicted_nrmse = 0;    // crossbar model with predicted_uS
  double naive_predicted_nrmse = 0;
  int faults = 0, avoided = 0, compensated = 0, residual = 0;
  double solve_ms = 0;
};

/// Places `kernels` (one array each) on the arrays in `allowed` given each array's stuck
/// devices (`stuck[a]` for array a). Deterministic.
Result<std::vector<ArrayPlan>> remap(const std::vector<CompiledKernel>& kernels,
                                     const std::vector<std::vector<StuckDevice>>& stuck,
                                     const std::vector<int>& allowed, const RemapOptions& options);

/// Exact (within the linear model) cost of a placement, with compensation unless `naive`, and
/// the fault accounting; fills plan.target_uS/skip/predicted_uS/cost/faults... for `p`.
ArrayPlan evaluate_placement(const CompiledKernel& ck, const Eigen::MatrixXd& sensitivity,
                             const std::vector<StuckDevice>& stuck, const Placement& p,
                             const RemapOptions& options);

/// The program-verify tolerance a deploy holds each device to: `tol_uS` where the target is in
/// the relaxation window (mid_lo_uS, mid_hi_uS), where a device lands in +-4 uS on ~15 % of its
/// attempts, and tol_uS / 2 elsewhere, where it lands easily: every device's error feeds the
/// recurrence, and zero weights (both devices at g_min) are most of the array.
Eigen::MatrixXd device_tolerance(const Eigen::MatrixXd& target_uS, double tol_uS, double mid_lo_uS,
                                 double mid_hi_uS);

/// Minimum-cost perfect assignment of rows to columns of a square cost matrix (Hungarian
/// method): result[i] = column of row i.
std::vector<int> min_cost_assignment(const Eigen::MatrixXd& cost);

}  // namespace xbar::kernel
