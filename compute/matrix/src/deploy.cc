#include "xbar/matrix/deploy.h"

#include <algorithm>
#include <limits>
#include <map>

namespace xbar::matrix {

std::vector<TileAssignment> assign_tiles(const TilePlan& plan, const Eigen::MatrixXd& wq,
                                         const Window& window, double scale_uS, int rows, int cols,
                                         const std::vector<std::vector<kernel::StuckDevice>>& stuck,
                                         const std::vector<int>& free, const PlaceOptions& opt) {
  // Each (tile, array) placed once; the assignment picked from their predicted errors.
  std::map<std::pair<int, int>, TilePlacement> placed;
  for (size_t t = 0; t < plan.tiles.size(); ++t) {
    const Eigen::MatrixXd part = tile_parts(wq, plan.tiles[t], plan.orientation, rows, cols);
    for (int a : free) {
      placed[{static_cast<int>(t), a}] = place_tile(part, plan.tiles[t], plan.orientation, window,
                                                    scale_uS, stuck[static_cast<size_t>(a)], opt);
    }
  }
  std::vector<int> order = free;  // sorted, so that next_permutation visits every order
  std::sort(order.begin(), order.end());
  std::vector<int> best;
  double best_cost = std::numeric_limits<double>::infinity();
  do {
    double cost = 0;
    for (size_t t = 0; t < plan.tiles.size(); ++t) {
      const double e = placed[{static_cast<int>(t), order[t]}].predicted_error;
      cost += e * e;
    }
    if (cost < best_cost) {
      best_cost = cost;
      best.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(plan.tiles.size()));
    }
  } while (std::next_permutation(order.begin(), order.end()));
  std::vector<TileAssignment> out;
  out.reserve(plan.tiles.size());
  for (size_t t = 0; t < plan.tiles.size(); ++t) {
    out.push_back({static_cast<int>(t), best[t], placed[{static_cast<int>(t), best[t]}]});
  }
  return out;
}

Result<TileReadback> tile_readback(const BoardInfo& info, const Tile& t, Orientation o,
                                   const std::vector<int>& row_of, const std::vector<int>& col_of,
                                   const Eigen::MatrixXd& g_uS, const Eigen::MatrixXd& wq,
                                   double scale_uS, bool fix, double fix_threshold_uS) {
  TileReadback rb;
  // The fullest used column with every used row driven in one bit plane sets the TIA gain.
  double worst_uS = 0;
  for (int c = 0; c < used_cols(o, t); ++c) {
    double sum = 0;
    for (int r = 0; r < used_rows(o, t); ++r) {
      sum += g_uS(row_of[static_cast<size_t>(r)], col_of[static_cast<size_t>(c)]);
    }
    worst_uS = std::max(worst_uS, sum);
  }
  XBAR_TRY(gain, info.vmm_gain_for(worst_uS));
  rb.gain_index = *gain;
  rb.codes_per_uS = info.codes_per_uS(*gain);
  const Eigen::MatrixXd wq_tile = wq.block(t.in_begin, t.out_begin, t.in_count, t.out_count);
  rb.w_read = tile_weights(g_uS, t, o, row_of, col_of, scale_uS);
  rb.error_analog = relative_error(rb.w_read, wq_tile);
  if (fix) {
    rb.fixes = weight_fixes(rb.w_read, wq_tile, fix_threshold_uS, scale_uS, kMaxFixes);
    for (const WeightFix& f : rb.fixes) rb.w_read(f.i, f.j) -= f.err;
  }
  rb.error = relative_error(rb.w_read, wq_tile);
  return rb;
}

}  // namespace xbar::matrix
