// Heat-map PNGs of conductance maps (people look at maps, not tables): one square per device,
// viridis colours from g_min to g_max, a colour bar on the right, marked cells outlined red.
#pragma once

#include <Eigen/Core>
#include <expected>
#include <string>

namespace xbar::client {

struct HeatmapOptions {
  double g_min_uS = 0;  // colour of the lowest value
  double g_max_uS = 0;  // colour of the highest; 0 = the map's maximum
  int cell_px = 8;      // pixels per device
};

/// Writes `g_uS` (rows x cols) as a PNG. Returns an error message on I/O failure.
std::expected<void, std::string> write_heatmap_png(const std::string& path,
                                                   const Eigen::MatrixXd& g_uS,
                                                   const HeatmapOptions& options = {});

/// The viridis colour map at t in [0, 1] (clamped), as 8-bit RGB.
std::array<uint8_t, 3> viridis(double t);

}  // namespace xbar::client
