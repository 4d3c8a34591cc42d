// Heat-map PNGs of conductance maps (people look at maps, not tables), drawn with cairo: one
// square per device, viridis colours from g_min to g_max, a colour bar on the right, marked
// cells outlined. As figures (what xbarctl writes): a title, row and column axes, the colour
// bar's scale in µS and a legend of the marks around the map.
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
  int cell_px = 8;      // pixels per device, 2..64
  std::string title;    // the figure's title (UTF-8)
};

/// Writes `g_uS` (rows x cols) as a heat-map figure: title, row and column axes, colour bar in
/// µS. Returns an error message on I/O failure.
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
  std::string caption;  // above the panel in a framed map, e.g. "array 0: kernel 1, 14 states"
};

inline constexpr std::array<uint8_t, 3> kStuckHighRgb = {255, 0, 0};
inline constexpr std::array<uint8_t, 3> kStuckLowRgb = {0, 112, 255};
inline constexpr std::array<uint8_t, 3> kRegionRgb = {225, 225, 225};  // logical regions
inline constexpr std::array<uint8_t, 3> kTickRgb = {96, 96, 96};       // input rows, output cols

struct KernelMapOptions {
  double g_min_uS = 7;    // viridis from g_min (dark) ...
  double g_max_uS = 200;  // ... to g_max (yellow); values outside are clamped
  int cell_px = 8;        // pixels per device, 2..64
  // The figure around the map: title, the panels' captions, row and column axes, the colour
  // bar's scale in µS and the legend (xbarctl always draws it). Without it the PNG is the map
  // alone, no text, its geometry exactly KernelMapLayout's with no frame.
  bool framed = false;
  std::string title;  // framed: the title line (UTF-8)
};

/// Pixel geometry of a deployment map, shared by the writer and its tests. Panel p's device
/// (r, c) covers x in [panel_x(p) + c cell, +cell), y in [top + r cell, +cell). A framed map
/// has the frame's margins around that (text and legend only: the map's pixels are the same).
struct KernelMapLayout {
  int cell = 8, gap = 16, rows = 64, cols = 64, panels = 1;
  int bar_w = 24;  // colour bar after the last panel's gap: top = g_max, bottom = g_min
  int frame_left = 0, frame_top = 0, frame_right = 0, frame_bottom = 0;  // 0 unless framed
  int top() const { return frame_top + gap; }
  int panel_x(int p) const { return frame_left + gap + p * (cols * cell + gap); }
  int bar_x() const { return panel_x(panels); }
  int width() const {
    return frame_left + panels * cols * cell + (panels + 1) * gap + bar_w + frame_right;
  }
  int height() const { return frame_top + rows * cell + 2 * gap + frame_bottom; }
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
