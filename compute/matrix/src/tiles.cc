#include "xbar/matrix/tiles.h"

#include <fmt/format.h>

#include <algorithm>

namespace xbar::matrix {

namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// `count` items cut into `parts` near-equal runs: (begin, count) each.
std::vector<std::pair<int, int>> cut(int count, int parts) {
  std::vector<std::pair<int, int>> runs;
  int at = 0;
  for (int p = 0; p < parts; ++p) {
    const int len = count / parts + (p < count % parts ? 1 : 0);
    runs.emplace_back(at, len);
    at += len;
  }
  return runs;
}

struct Candidate {
  Orientation o;
  int in_parts = 0, out_parts = 0;
  int spare = 0;  // spare rows + columns of the fullest tile
};

Candidate candidate(Orientation o, int k, int n, int rows, int cols) {
  const TileShape s = tile_shape(o, rows, cols);
  Candidate c{o, ceil_div(k, s.inputs), ceil_div(n, s.outputs), 0};
  Tile t{0, ceil_div(k, c.in_parts), 0, ceil_div(n, c.out_parts)};
  c.spare = (rows - used_rows(o, t)) + (cols - used_cols(o, t));
  return c;
}

}  // namespace

TileShape tile_shape(Orientation o, int rows, int cols) {
  return o == Orientation::kColumnPairs ? TileShape{rows, cols / 2} : TileShape{rows / 2, cols};
}

int used_rows(Orientation o, const Tile& t) {
  return o == Orientation::kColumnPairs ? t.in_count : 2 * t.in_count;
}
int used_cols(Orientation o, const Tile& t) {
  return o == Orientation::kColumnPairs ? 2 * t.out_count : t.out_count;
}

std::string capacity_text(int arrays, int rows, int cols) {
  std::string text = "up to ";
  for (Orientation o : {Orientation::kColumnPairs, Orientation::kRowPairs}) {
    const TileShape s = tile_shape(o, rows, cols);
    text += fmt::format("{}{} x {} or {} x {} ({})", o == Orientation::kRowPairs ? ", " : "",
                        s.inputs, s.outputs * arrays, s.inputs * arrays, s.outputs,
                        o == Orientation::kColumnPairs ? "column pairs" : "row pairs");
  }
  return text + " inputs x outputs";
}

Result<TilePlan> plan_tiles(int k, int n, int arrays, int rows, int cols) {
  const Candidate a = candidate(Orientation::kColumnPairs, k, n, rows, cols);
  const Candidate b = candidate(Orientation::kRowPairs, k, n, rows, cols);
  const int ta = a.in_parts * a.out_parts, tb = b.in_parts * b.out_parts;
  const Candidate& best = (tb < ta || (tb == ta && b.spare > a.spare)) ? b : a;
  if (best.in_parts * best.out_parts > arrays) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("w: {} x {} needs {} tiles of {} x {} (column pairs) or {} of {} x {} (row "
                    "pairs), the chip has {} arrays: it holds {}",
                    k, n, ta, tile_shape(Orientation::kColumnPairs, rows, cols).inputs,
                    tile_shape(Orientation::kColumnPairs, rows, cols).outputs, tb,
                    tile_shape(Orientation::kRowPairs, rows, cols).inputs,
                    tile_shape(Orientation::kRowPairs, rows, cols).outputs, arrays,
                    capacity_text(arrays, rows, cols)));
  }
  TilePlan plan;
  plan.orientation = best.o;
  for (auto [ib, ic] : cut(k, best.in_parts)) {
    for (auto [ob, oc] : cut(n, best.out_parts)) plan.tiles.push_back({ib, ic, ob, oc});
  }
  return plan;
}

PairPosition pair_position(Orientation o, int i, int j) {
  if (o == Orientation::kColumnPairs) return {i, 2 * j, i, 2 * j + 1};
  return {2 * i, j, 2 * i + 1, j};
}

Eigen::MatrixXd tile_parts(const Eigen::MatrixXd& wq, const Tile& t, Orientation o, int rows,
                           int cols) {
  Eigen::MatrixXd part = Eigen::MatrixXd::Zero(rows, cols);
  for (int i = 0; i < t.in_count; ++i) {
    for (int j = 0; j < t.out_count; ++j) {
      const double w = wq(t.in_begin + i, t.out_begin + j);
      const PairPosition p = pair_position(o, i, j);
      part(p.plus_row, p.plus_col) = std::max(w, 0.0);
      part(p.minus_row, p.minus_col) = std::max(-w, 0.0);
    }
  }
  return part;
}

Eigen::MatrixXd tile_weights(const Eigen::MatrixXd& g_uS, const Tile& t, Orientation o,
                             const std::vector<int>& row_of, const std::vector<int>& col_of,
                             double scale_uS) {
  Eigen::MatrixXd w(t.in_count, t.out_count);
  for (int i = 0; i < t.in_count; ++i) {
    for (int j = 0; j < t.out_count; ++j) {
      const PairPosition p = pair_position(o, i, j);
      const double plus =
          g_uS(row_of[static_cast<size_t>(p.plus_row)], col_of[static_cast<size_t>(p.plus_col)]);
      const double minus =
          g_uS(row_of[static_cast<size_t>(p.minus_row)], col_of[static_cast<size_t>(p.minus_col)]);
      w(i, j) = (plus - minus) / scale_uS;
    }
  }
  return w;
}

}  // namespace xbar::matrix
