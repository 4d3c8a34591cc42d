// From a placed kernel to the board's closed-loop program (docs/firmware.md §6): the feedback
// routes of the placement, the fixed-point scaling that turns the differential column codes
// back into 8-bit row magnitudes, the input taps and the output pair, and the conversions
// between floats and codes on the host.
#pragma once

#include <Eigen/Core>
#include <span>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/kernel/kernel.h"
#include "xbar/wire/loop_program.h"

namespace xbar::kernel {

struct LoopPlanOptions {
  double u_max = 4.0;      // the largest |u| the plan represents (inputs are clipped there)
  uint8_t clamp = 255;     // largest row magnitude (8-bit)
  double headroom = 1.25;  // state range over the largest |x| seen on the fidelity inputs
  // The state range measured on real data (a model's calibration, xbar.v1.KernelRange
  // state_max): when > 0 the plan represents state_max x calibrated_headroom instead of the
  // synthetic estimate above, which real clips (a sustained encoder bias, slow modes) exceed.
  double state_max = 0;
  double calibrated_headroom = 1.1;
  // The range a calibration chose (xbar.v1.KernelRange state_range): represented exactly (no
  // headroom); wins over state_max.
  double state_range = 0;
  // The largest |u| real inputs reach (a calibration's input_max; 0: u_max). Whatever the
  // state range above, the plan represents at least input_max / b_weight: the input tap's row
  // magnitude is u / (b_weight x_scale), clamped at `clamp` like the state's, so a smaller range
  // clips the input itself on its loudest steps (a fast kernel has b_weight = max |A_bar| well
  // below 1).
  double input_max = 0;
  // Trim each feedback route's gain to the conductances `g_uS` holds (route_trims): the
  // least-squares gain that brings the programmed row of [A | B] closest to the compiled one.
  bool trim_routes = true;
  // Carry each route's rounding residual into the next step (wire::kLoopErrorFeedback), so
  // slow modes do not stall in the 8-bit state's dead band (docs/firmware.md §7).
  bool error_feedback = true;
  // Device fixes (wire::LoopFix): every used device whose conductance in `g_uS` is more than
  // fix_threshold_uS off its compiled target (a stuck device, one program-verify abandoned, a
  // partner that compensates one) has its excess charge taken out digitally each step, the
  // largest max_fixes of them. Stuck-high devices (300-600 uS) no partner within 1..250 uS can
  // cancel are what makes kernels unstable on a `typical` chip (docs/firmware.md §7).
  bool fix_devices = true;
  double fix_threshold_uS = 5.0;
  int max_fixes = 256;
};

struct LoopPlan {
  wire::LoopProgram program;
  double input_lsb = 0;     // u per input code
  double x_scale = 0;       // x (Re or Im) per state code
  double y_scale = 0;       // y per output code (the real output pair)
  double d = 0;             // skip term, applied on the host
  double codes_per_uS = 0;  // k: differential accumulator codes per uS per unit row magnitude
  std::vector<double> route_gain;  // per feedback route (program order): the trim applied (1: none)
  int fixes = 0;                   // devices fixed digitally (program.fixes)
  int fix_candidates = 0;          // devices over the threshold (more than max_fixes: the largest)
};

/// A device the loop takes out digitally (wire::LoopFix): its physical position and how far
/// its conductance was off its compiled target.
struct DeviceFix {
  int row = 0, col = 0;
  double err_uS = 0;
};

/// The used devices of `ck` placed by `p` (input and state rows x state and real output
/// columns) more than options.fix_threshold_uS off their compiled targets in `g_uS`, largest
/// first, at most options.max_fixes; `candidates` (if given) gets how many were over. Empty
/// unless options.fix_devices.
std::vector<DeviceFix> device_fixes(const CompiledKernel& ck, const Placement& p,
                                    const Eigen::MatrixXd& g_uS, const LoopPlanOptions& options,
                                    int* candidates = nullptr);

/// What the loop computes with when it runs on conductances `g_uS` with `fixes`: each fixed
/// device's err_uS taken off (on the conductances the fixes were made from: its target).
Eigen::MatrixXd apply_device_fixes(Eigen::MatrixXd g_uS, std::span<const DeviceFix> fixes);

/// The feedback routes' trims for kernel `ck` placed by `p` on conductances `g_uS`: for state
/// component f (route 2 s + part), with m_f the row of [A | B] the conductances realise
/// (effective_state_matrix and the input rows likewise) and t_f the compiled row,
/// c_f = <m_f, t_f> / <m_f, m_f>, clamped to [0.5, 1.5]; 1 where m_f is all but zero.
/// Scaling the route's fixed-point multiplier by c_f scales that whole row, so programming
/// error that is common to a row (one mode's devices pulled one way) is taken out digitally.
std::vector<double> route_trims(const CompiledKernel& ck, const Placement& p,
                                const Eigen::MatrixXd& g_uS);

/// The least state range under which the input's own 8-bit codes, u / (b_weight x_scale), do
/// not clip for |u| up to input_max: input_max / b_weight (LoopPlanOptions::input_max).
/// plan_loop never represents less; calibration chooses among ranges above it.
inline double input_state_range(const CompiledKernel& ck, double input_max) {
  return input_max / ck.b_weight;
}

/// Builds the loop program of kernel `ck` placed by `p` on `array`. `g_uS` (physical 64x64,
/// e.g. the read-back) picks the TIA gain: the highest whose ADC range holds the largest column
/// current. Errors when the scaling does not fit the program's integer fields.
Result<LoopPlan> plan_loop(const CompiledKernel& ck, const Placement& p,
                           const Eigen::MatrixXd& g_uS, int array, const BoardInfo& info,
                           const LoopPlanOptions& options = {});

/// u -> input codes (rounded, clipped to +-u_max).
std::vector<int16_t> input_codes(const LoopPlan& plan, const Eigen::VectorXd& u);

/// Output codes of this plan's program (every `stride`-th value from `offset`) -> y, with the
/// skip term d u added.
Eigen::VectorXd outputs_to_y(const LoopPlan& plan, std::span<const int32_t> outputs, size_t stride,
                             size_t offset, const Eigen::VectorXd& u);

/// The software model of the hardware path: the loop's arithmetic in floating point with the
/// board's quantization (8-bit input and state magnitudes rounded half away from zero and
/// clamped, with the plan's error feedback carrying each rounding residual, at most half a
/// code, into the next step) and ideal conductances and converters. The board matches it up to the
/// ADC's and the fixed-point scales' rounding; it differs from run_ideal by the 8-bit state.
Eigen::VectorXd run_quantized(const CompiledKernel& ck, const LoopPlan& plan,
                              const Eigen::VectorXd& u);

}  // namespace xbar::kernel
