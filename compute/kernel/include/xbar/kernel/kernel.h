// The kernel compiler (DESIGN.md §4, paper §II.D and §III.B): an S4D kernel in continuous or
// discrete form -> ZOH discretization -> quantization with a fixed dynamic range (eq. 3) ->
// complex and differential expansion into 4x4 conductance blocks (eq. 4-6) -> the logical
// 64x64 layout of Fig. 3 (eq. 7). docs/kernels.md is the reference for every formula here.
#pragma once

#include <Eigen/Core>
#include <complex>
#include <string>
#include <vector>

#include "xbar/base/error.h"

namespace xbar::kernel {

using cd = std::complex<double>;

inline constexpr int kMaxStates = 15;
inline constexpr int kMaxKernels = 3;
inline constexpr int kMaxBits = 16;

// Quantization with a fixed dynamic range: q(x) = clamp(round(x n / f), -n, n) f / n with
// n = 2^(bits-1) - 1, one f for real and imaginary parts. bits = 0: full precision.
struct Quantization {
  int bits = 0;
  double f_scale_a = 1.0;
  double f_scale_c = 0.0;  // 0: the largest |Re| or |Im| of C
  /// Level tables (non-uniform, e.g. learned): when one is non-empty, each value of its part
  /// becomes the nearest level (the lower on a tie) and `bits` does not apply to that part.
  /// Sorted ascending and distinct (validate checks).
  std::vector<double> levels_a_re, levels_a_im, levels_c;
};

inline constexpr int kMaxLevels = 256;

/// The level of the sorted table `t` nearest to x (the lower one on a tie).
double nearest_level(const std::vector<double>& t, double x);

struct KernelSpec {
  std::string name;
  bool continuous = true;
  std::vector<cd> a;  // continuous: diagonal of A; discrete: A_bar
  double log_dt = 0;  // continuous only
  std::vector<cd> c;  // continuous: C (B = 1 folded in); discrete: C_bar
  double d = 0;       // skip term, applied digitally
  Quantization quant;
  /// Per state: the largest |Re| or |Im| the mode's state x_k meets on the data it will run on
  /// (a model's calibration measures it; only the ratios matter). The array holds beta_k x_k
  /// with beta_k = min_j range_j / range_k, so that every mode spans the same 8-bit codes on
  /// real inputs. Empty: the worst case for a unit input, 1 / (1 - |A_bar_k|).
  std::vector<double> mode_range;
};

/// KernelSpec::mode_range: the largest range may be at most this many times the smallest.
inline constexpr double kMaxModeRangeRatio = 1000;

struct Window {
  double g_min_uS = 7.0;
  double g_max_uS = 200.0;
};

struct KernelSetSpec {
  std::vector<KernelSpec> kernels;
  Window window;
};

/// Checks a kernel set before anything is compiled or pulsed. Errors name the field
/// ("kernels[1].a[3]") and the allowed range. `chip_lo_uS`..`chip_hi_uS` is what the chip can
/// be programmed to (the program-verify target window).
Result<void> validate(const KernelSetSpec& set, double chip_lo_uS, double chip_hi_uS);

/// The discrete kernel that is programmed: x_t = a_bar x_{t-1} + u_t, y_t = 2 Re(c_bar x_t) + d
/// u_t.
struct DiscreteKernel {
  std::vector<cd> a_bar, c_bar;
  double d = 0;
  int states() const { return static_cast<int>(a_bar.size()); }
};

double quantize(double x, int bits, double f_scale);
cd quantize(cd x, int bits, double f_scale);

/// ZOH (continuous) or pass-through (discrete), with the spec's quantization applied to A, C
/// (continuous, before the ZOH, as in quantization-aware training) or A_bar, C_bar (discrete).
DiscreteKernel discretize(const KernelSpec& spec, bool apply_quantization = true);

// ------------------------------------------------------------------------------------------------
// Layout (Fig. 3). Logical rows: 0..3 input (u_r+, u_r-, u_i+, u_i-), 4+4k..7+4k state k
// (x_r+, x_r-, x_i+, x_i-), then spares. Logical columns: 4k..3+4k state k (i_r+, i_r-, i_i+,
// i_i-), then 4 output columns (y_r+, y_r-, y_i+, y_i-), then spares. N = 14 uses 60 x 60.

inline constexpr int kSide = 64;  // logical layout side (the chip's arrays are 64 x 64)
inline int input_row(int comp) { return comp; }
inline int state_row(int k, int comp) { return 4 + 4 * k + comp; }
inline int state_col(int k, int comp) { return 4 * k + comp; }
inline int output_col(int n_states, int comp) { return 4 * n_states + comp; }
/// The differential partner of a used column (the other device of the pair, same row).
inline int partner_col(int col) { return col ^ 1; }

enum class RowKind : uint8_t { kInput, kState, kSpare };
enum class ColKind : uint8_t { kState, kOutput, kSpare };
RowKind row_kind(int n_states, int logical_row);
ColKind col_kind(int n_states, int logical_col);

/// The 4x4 block of eq. 6 for a complex weight m, in crossbar orientation: part(k, j) is the
/// weight magnitude (>= 0) the device on input row k of the block and output column j carries,
/// from (m_r+, m_r-, m_i+, m_i-) = (max(Re m, 0), max(-Re m, 0), max(Im m, 0), max(-Im m, 0)).
/// Differences of the column pairs (0,1) and (2,3) give Re and Im of m * v exactly.
Eigen::Matrix4d expand(cd m);

/// A compiled kernel: the logical 64x64 conductance targets and what they mean.
struct CompiledKernel {
  DiscreteKernel kernel;       // as programmed (quantized)
  DiscreteKernel unquantized;  // for the quantization error
  int n = 0;                   // states
  Window window;
  double b_weight = 0;         // weight of B (= 1) in the state columns, = max |component| of A_bar
  double state_scale_uS = 0;   // s for rows x state columns
  double output_scale_uS = 0;  // s for rows x output columns
  double input_gain = 0;       // u is applied as u * input_gain (= 1 / b_weight)
  // The array's state is beta_k x_k (beta_k in (0, 1], the largest for the mode with the
  // smallest gain): B_k = b_weight beta_k, the output block holds C_bar_k / beta_k.
  std::vector<double> mode_gain;
  Eigen::MatrixXd part;       // 64x64 logical weight magnitudes (>= 0), eq. 6 blocks
  Eigen::MatrixXd target_uS;  // 64x64 logical targets: g_min + scale(column) * part
  /// Conductance per unit weight of a logical column (state or output scale; spares: state).
  double scale_uS(int logical_col) const;
};

/// Compiles one kernel into the logical layout with the window's conductances.
CompiledKernel compile(const KernelSpec& spec, const Window& window);

/// Physical placement: logical row i sits on physical row row_of[i], logical column j on
/// physical column col_of[j] (permutations of 0..63).
struct Placement {
  std::vector<int> row_of, col_of;
  static Placement identity();
};

/// Logical targets -> physical targets.
Eigen::MatrixXd place(const Eigen::MatrixXd& logical, const Placement& p);
/// Physical -> logical (inverse of place).
Eigen::MatrixXd unplace(const Eigen::MatrixXd& physical, const Placement& p);

/// The board's feedback routing: the differential output of physical column `col` drives
/// physical row `row` at the next step, one route per state column.
struct Route {
  int col = 0, row = 0;
};
std::vector<Route> feedback_routes(int n_states, const Placement& p);

}  // namespace xbar::kernel
