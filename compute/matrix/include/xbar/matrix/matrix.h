// A general signed matrix on the arrays (docs/matrices.md): what a caller asks for, how its
// values are quantized (uniform with a fixed range, eq. 3 of the paper, or a level table the
// caller gives), and the checks made before anything is held or pulsed.
//
// Orientation of the math: W is K x N (K inputs, N outputs) and the board computes y = x W for
// a row vector x of length K, as a crossbar does (inputs drive rows, outputs are columns) and as
// numpy's `x @ W` reads. A PyTorch nn.Linear weight (out x in) is deployed transposed.
#pragma once

#include <Eigen/Core>
#include <string>
#include <vector>

#include "xbar/base/error.h"

namespace xbar::matrix {

/// Largest matrix side a request may name (the chip's capacity is checked separately, by the
/// tiling); keeps a request's allocations bounded before the capacity check.
inline constexpr int kMaxSide = 4096;
inline constexpr int kMaxBits = 8;
inline constexpr int kMaxLevels = 256;

/// How the matrix's values become the values that are programmed.
struct Quantization {
  /// Uniform: q(w) = clamp(round(w n / f), -n, n) f / n, n = 2^(bits-1) - 1 (eq. 3), f = range.
  /// 0: no quantization (each device gets its exact target).
  int bits = 0;
  /// f: the weight programmed at the window's top (g_max). 0: the largest |w| (uniform, none)
  /// or the largest |level| (tables).
  double range = 0;
  /// Explicit level tables, sorted ascending, distinct, each within +-range: one table for the
  /// whole matrix, or one per output column (N tables). Each weight becomes the nearest level of
  /// its table. Non-empty tables override `bits`.
  std::vector<std::vector<double>> levels;
};

/// The conductance window the weights are mapped into: g = g_min + |w| (g_max - g_min) / range
/// on one device of the differential pair, g_min on the other. The defaults are the widest the
/// program-verify window allows with margin: read noise grows with g only up to ~50 uS, so a
/// higher g_max is more signal for the same noise, and a low g_min puts the many zero-weight
/// devices where they are quiet (bench/RESULTS.md, "Matrices": 7..200 uS gave 6.6-7.6 % median
/// error on imssa, 2..250 uS 4.7-5.4 %).
struct Window {
  double g_min_uS = 2.0;
  double g_max_uS = 250.0;
};

struct MatrixSpec {
  Eigen::MatrixXd w;  // K x N, finite
  Quantization quant;
  Window window;
};

/// Checks a matrix request: non-empty, at most kMaxSide a side, finite entries, bits 0 or
/// 2..kMaxBits, a finite range >= 0, tables sorted, distinct, finite, within +-range and one or
/// N of them, a window inside the chip's lo_uS..hi_uS. Errors name the field as the API does
/// ("w[3][5]", "quantization.tables[1].levels[4]", "g_min_uS") and the allowed range.
Result<void> validate(const MatrixSpec& spec, double chip_lo_uS, double chip_hi_uS);

/// The range f the spec maps to g_max (the given one, else the largest |w| or |level|; 1 for
/// an all-zero matrix).
double effective_range(const MatrixSpec& spec);

/// The matrix as it is programmed: every entry quantized by the spec.
Eigen::MatrixXd quantize(const MatrixSpec& spec);

/// ||a - b||_F / ||b||_F (0 when both are zero).
double relative_error(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b);

}  // namespace xbar::matrix
