// Multiplying vectors by a deployed matrix on the board (docs/matrices.md, "Multiply"): each
// input vector becomes 8-bit row magnitudes (its positive and negative parts in separate
// passes), each tile runs bit-serial VMMs on its array, and the host turns the differential
// column codes back into numbers, takes out the devices it fixes digitally, adds the tiles'
// partial sums and applies each output's calibration.
#pragma once

#include <Eigen/Core>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/board.h"
#include "xbar/matrix/tiles.h"

namespace xbar::matrix {

/// A weight the host corrects digitally: the tile's weight (input i, output j, tile-local) is
/// off its quantized value by err (weight units) as read back.
struct WeightFix {
  int i = 0, j = 0;
  double err = 0;
};

/// One programmed tile, as Multiply needs it.
struct TileRun {
  Tile tile;
  int array = 0;
  std::vector<int> row_of, col_of;  // logical -> physical
  int gain_index = 0;               // TIA gain for its VMMs
  double codes_per_uS = 0;          // differential accumulator codes per uS per row magnitude
  std::vector<WeightFix> fixes;
};

/// A deployed matrix as Multiply needs it.
struct MatrixRun {
  int k = 0, n = 0;
  Orientation orientation = Orientation::kColumnPairs;
  double scale_uS = 0;  // conductance per unit weight
  std::vector<TileRun> tiles;
  /// Per output: y = (raw - offset) / gain, raw in weight units at unit input range
  /// (calibration; gain 1 and offset 0 before it).
  Eigen::VectorXd gain, offset;
};

/// The weights whose read-back (tile_weights of `g_uS`) is more than threshold_uS / scale_uS
/// off the quantized `wq_tile`, largest first, at most max_fixes.
std::vector<WeightFix> weight_fixes(const Eigen::MatrixXd& read_w, const Eigen::MatrixXd& wq_tile,
                                    double threshold_uS, double scale_uS, int max_fixes);

struct MultiplyOptions {
  /// The |x| that maps to row magnitude 255 (larger inputs are clipped there); 0: each vector's
  /// own largest |x|, which gives every vector all 8 bits (the analog product is linear, so the
  /// host scales each result back).
  double input_range = 0;
  /// VMMs per pass averaged (reduces read noise by sqrt(repeats)); 1..16.
  int repeats = 1;
  bool calibrated = true;  // apply MatrixRun::gain / offset
};

/// Per row of `x`: input_range if > 0, else the row's largest |x| (1 for an all-zero row).
Eigen::VectorXd input_ranges(const Eigen::MatrixXd& x, double input_range);

/// y = x W for each row of `x` (B x k) on the board: B x n. Holds nothing itself: the caller
/// owns the board's turn and the arrays for the call.
Result<Eigen::MatrixXd> multiply(Board& board, const MatrixRun& run, const Eigen::MatrixXd& x,
                                 const MultiplyOptions& opt);

/// Fits run.gain and run.offset per output from `x` multiplied on the board (uncalibrated, each
/// vector at its own range) against x W_q: least squares u_board = gain * u_ref + offset, u the
/// results at unit input range.
Result<void> calibrate(Board& board, MatrixRun& run, const Eigen::MatrixXd& wq,
                       const Eigen::MatrixXd& x);

}  // namespace xbar::matrix
