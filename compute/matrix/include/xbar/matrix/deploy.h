// The matrix-specific steps of a deploy (docs/matrices.md): which array each tile goes to, and
// what a tile's read-back says once it is programmed (its TIA gain, the weights fixed
// digitally, its error).
#pragma once

#include <Eigen/Core>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/matrix/multiply.h"
#include "xbar/matrix/placement.h"

namespace xbar::matrix {

struct TileAssignment {
  int tile = 0;
  int array = 0;
  TilePlacement placement;
};

/// One array of `free` per tile (tiles <= free.size()), placed around `stuck[array]`: the
/// assignment with the smallest summed squared predicted error (every one is tried: at most
/// 3! for three arrays). Deterministic.
std::vector<TileAssignment> assign_tiles(const TilePlan& plan, const Eigen::MatrixXd& wq,
                                         const Window& window, double scale_uS, int rows, int cols,
                                         const std::vector<std::vector<kernel::StuckDevice>>& stuck,
                                         const std::vector<int>& free, const PlaceOptions& opt);

/// Digital fixes: weights whose read-back is more than this far off (in uS of the pair), at most
/// kMaxFixes per tile.
inline constexpr double kFixThreshold_uS = 5.0;
inline constexpr int kMaxFixes = 256;

struct TileReadback {
  int gain_index = 0;
  double codes_per_uS = 0;
  std::vector<WeightFix> fixes;  // empty when not fixing
  Eigen::MatrixXd w_read;        // the tile's weights as read back, fixes applied
  double error = 0;              // ||w_read - wq_tile|| / ||wq_tile||
  double error_analog = 0;       // the same without the fixes
};

/// What a programmed tile's read-back `g_uS` (physical) gives: its VMM gain, the fixes (with
/// `fix`: weights more than fix_threshold_uS off, at most kMaxFixes), its weights and errors
/// against the quantized matrix `wq`.
Result<TileReadback> tile_readback(const BoardInfo& info, const Tile& t, Orientation o,
                                   const std::vector<int>& row_of, const std::vector<int>& col_of,
                                   const Eigen::MatrixXd& g_uS, const Eigen::MatrixXd& wq,
                                   double scale_uS, bool fix,
                                   double fix_threshold_uS = kFixThreshold_uS);

}  // namespace xbar::matrix
