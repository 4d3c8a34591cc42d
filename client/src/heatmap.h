// Heat-map PNGs of conductance maps (people look at maps, not tables): one square per device,
// viridis colours from g_min to g_max, a colour bar on the right, marked cells outlined red.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <expected>
#include <string>
#include <utility>
#include <vector>

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

/// One kernel as placed on one array, for the deployment map (plain data, no protobuf types).
struct KernelPanel {
  Eigen::MatrixXd g_uS;                             // physical rows x cols, uS
  std::vector<std::pair<int, int>> stuck_high;      // (row, col) recorded stuck-high: red
  std::vector<std::pair<int, int>> stuck_low;       // (row, col) recorded stuck-low: blue
  std::vector<int> row_of_logical, col_of_logical;  // physical row/col of logical i; empty: i
  int states = 0;                                   // N: logical layout of kernels.proto
};

inline constexpr std::array<uint8_t, 3> kStuckHighRgb = {255, 0, 0};
inline constexpr std::array<uint8_t, 3> kStuckLowRgb = {0, 112, 255};
inline constexpr std::array<uint8_t, 3> kRegionRgb = {225, 225, 225};  // logical regions
inline constexpr std::array<uint8_t, 3> kTickRgb = {96, 96, 96};       // input rows, output cols

struct KernelMapOptions {
  double g_min_uS = 7;    // viridis from g_min (dark) ...
  double g_max_uS = 200;  // ... to g_max (yellow); values outside are clamped
  int cell_px = 8;        // pixels per device, 2..64
};

/// Pixel geometry of a deployment map, shared by the writer and its tests. Panel p's device
/// (r, c) covers x in [panel_x(p) + c cell, +cell), y in [top + r cell, +cell).
struct KernelMapLayout {
  int cell = 8, gap = 16, rows = 64, cols = 64, panels = 1;
  int bar_w = 24;  // colour bar after the last panel's gap: top = g_max, bottom = g_min
  int top() const { return gap; }
  int panel_x(int p) const { return gap + p * (cols * cell + gap); }
  int width() const { return panels * cols * cell + (panels + 1) * gap + bar_w; }
  int height() const { return rows * cell + 2 * gap; }
};
KernelMapLayout kernel_map_layout(const std::vector<KernelPanel>& panels,
                                  const KernelMapOptions& options = {});

/// The deployment map (the paper's Fig. 3): the panels side by side with a `gap` of white
/// between them (and around them), each a heat map of its array; recorded stuck devices outlined
/// red (stuck-high) or blue (stuck-low); the logical regions outlined by thin light lines around
/// the cells they occupy physically (input rows 0..3 x used columns, the state block rows
/// 4..4N+3 x cols 0..4N-1, the output columns 4N..4N+3 x used rows), and a tick in the left
/// margin for every physical row carrying an input row and in the top margin for every
/// physical column carrying an output column. All panels must have the same size.
std::expected<void, std::string> write_kernel_map_png(const std::string& path,
                                                      const std::vector<KernelPanel>& panels,
                                                      const KernelMapOptions& options = {});

/// The viridis colour map at t in [0, 1] (clamped), as 8-bit RGB.
std::array<uint8_t, 3> viridis(double t);

}  // namespace xbar::client
