// The stuck devices of a twin chip as its fault map knows them (what a fault scan records; the
// benchmarks take them from the twin to leave the scan's time out of their figures).
#pragma once

#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/kernel/remap.h"

namespace xbar::bench {

/// Per array, the stuck-high and stuck-low devices at their true conductance.
inline std::vector<std::vector<kernel::StuckDevice>> twin_stuck_devices(Board& b) {
  std::vector<std::vector<kernel::StuckDevice>> out(static_cast<size_t>(b.info().arrays));
  for (int a = 0; a < b.info().arrays; ++a) {
    const auto kinds = *b.sim_fault_map(a);
    const Eigen::MatrixXd g = *b.sim_ground_truth(a);
    for (int i = 0; i < static_cast<int>(kinds.size()); ++i) {
      const auto k = kinds[static_cast<size_t>(i)];
      if (k != wire::FaultKind::kStuckHigh && k != wire::FaultKind::kStuckLow) continue;
      const int r = i / b.info().cols, c = i % b.info().cols;
      out[static_cast<size_t>(a)].push_back({r, c, k == wire::FaultKind::kStuckHigh, g(r, c)});
    }
  }
  return out;
}

}  // namespace xbar::bench
