// Placing one tile on one array around its stuck devices (docs/matrices.md, "Remapping"): the
// physical row of every logical row and the physical column of every logical column (spares
// included), chosen so that stuck devices fall where no input drives or no output reads, and
// the differential partner of a stuck device that does matter compensating it.
#pragma once

#include <Eigen/Core>
#include <vector>

#include "xbar/kernel/remap.h"
#include "xbar/matrix/matrix.h"
#include "xbar/matrix/tiles.h"

namespace xbar::matrix {

struct PlaceOptions {
  bool naive = false;       // identity placement, no compensation
  double prog_lo_uS = 1.0;  // what a compensating partner may be programmed to
  double prog_hi_uS = 250.0;
  int passes = 4;  // alternating row / column assignment passes
};

struct TilePlacement {
  std::vector<int> row_of, col_of;  // logical -> physical, permutations of 0..rows-1 / cols-1
  Eigen::MatrixXd target_uS;        // physical targets, compensation included
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> skip;  // stuck devices: not programmed
  /// The tile's weights with the stuck devices at their recorded conductance and every other
  /// device on its target, against the quantized weights: ||W_pred - W_q|| / ||W_q||.
  double predicted_error = 0;
  double naive_predicted_error = 0;  // the same for the identity placement
  int faults = 0, avoided = 0, compensated = 0, residual = 0;
  double solve_ms = 0;
};

/// Places a tile whose logical weight magnitudes are `part` (tile_parts) at scale_uS per unit
/// weight above window.g_min_uS, on an array with the stuck devices `stuck`.
TilePlacement place_tile(const Eigen::MatrixXd& part, const Tile& t, Orientation o,
                         const Window& window, double scale_uS,
                         const std::vector<kernel::StuckDevice>& stuck, const PlaceOptions& opt);

}  // namespace xbar::matrix
