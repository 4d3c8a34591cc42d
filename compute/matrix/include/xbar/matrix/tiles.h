// How a K x N matrix is laid out on 64 x 64 arrays (docs/matrices.md, "Layout"): each weight
// is a differential pair g+ - g-, the pair's two devices side by side in a row (column pairs:
// up to rows inputs x cols/2 outputs per array) or one above the other in a column (row pairs:
// rows/2 x cols). A matrix larger than one array is cut into tiles, one per array, whose partial
// sums the host adds.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "xbar/base/error.h"

namespace xbar::matrix {

enum class Orientation : uint8_t {
  kColumnPairs = 0,  // input i on logical row i; output j on logical columns 2j (+), 2j+1 (-)
  kRowPairs = 1,     // input i on logical rows 2i (+), 2i+1 (-); output j on logical column j
};

/// The most inputs x outputs one array holds in an orientation.
struct TileShape {
  int inputs = 0;
  int outputs = 0;
};
TileShape tile_shape(Orientation o, int rows, int cols);

/// One tile: the inputs in_begin..in_begin+in_count-1 (rows of W) and the outputs
/// out_begin..out_begin+out_count-1 (columns of W), on one array.
struct Tile {
  int in_begin = 0, in_count = 0;
  int out_begin = 0, out_count = 0;
};

struct TilePlan {
  Orientation orientation = Orientation::kColumnPairs;
  std::vector<Tile> tiles;
};

/// The fewest tiles that hold a K x N matrix on `arrays` arrays of rows x cols, in the
/// orientation that needs fewer (on a tie, the one that leaves more spare rows and columns for
/// remapping; then column pairs). Tiles of one plan are of near-equal size. INVALID_ARGUMENT
/// naming `w` and the chip's capacity in both orientations when neither fits.
Result<TilePlan> plan_tiles(int k, int n, int arrays, int rows, int cols);

/// "up to 64 x 96 or 192 x 32 (column pairs), 32 x 192 or 96 x 64 (row pairs)": the largest
/// matrices `arrays` arrays hold, inputs x outputs.
std::string capacity_text(int arrays, int rows, int cols);

/// The tile's logical weight magnitudes (rows x cols, >= 0) from the quantized matrix `wq`:
/// max(w, 0) on the + device and max(-w, 0) on the - device of each pair; unused positions 0.
Eigen::MatrixXd tile_parts(const Eigen::MatrixXd& wq, const Tile& t, Orientation o, int rows,
                           int cols);

/// Logical position of the + and - devices of weight (input i, output j) of a tile (i, j
/// counted within the tile).
struct PairPosition {
  int plus_row, plus_col, minus_row, minus_col;
};
PairPosition pair_position(Orientation o, int i, int j);

/// Logical rows and columns a tile uses (the rest are spares).
int used_rows(Orientation o, const Tile& t);
int used_cols(Orientation o, const Tile& t);

/// The tile's weights as the conductances `g_uS` (physical, rows x cols) hold them: in_count x
/// out_count, (g+ - g-) / scale_uS, through the placement row_of / col_of (logical -> physical).
Eigen::MatrixXd tile_weights(const Eigen::MatrixXd& g_uS, const Tile& t, Orientation o,
                             const std::vector<int>& row_of, const std::vector<int>& col_of,
                             double scale_uS);

}  // namespace xbar::matrix
