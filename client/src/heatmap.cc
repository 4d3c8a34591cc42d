#include "heatmap.h"

#include <cairo.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <vector>

#include "heatmap_frame.h"

namespace xbar::client {

std::array<uint8_t, 3> viridis(double t) {
  // Nine anchors of matplotlib's viridis, linearly interpolated.
  static constexpr double kAnchors[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                            {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                            {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  if (!(t >= 0)) t = 0;  // NaN -> 0
  t = std::min(t, 1.0) * 8.0;
  const int i = std::min(static_cast<int>(t), 7);
  const double f = t - i;
  std::array<uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c) {
    rgb[static_cast<size_t>(c)] =
        static_cast<uint8_t>(std::lround(kAnchors[i][c] * (1 - f) + kAnchors[i + 1][c] * f));
  }
  return rgb;
}

namespace {

using Rgb = std::array<uint8_t, 3>;
using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

// A filled rectangle on whole pixels: every pixel of the map gets exactly its 8-bit colour
// (c / 255 comes back as c from cairo's 16-bit colours; no edge is anti-aliased).
void fill(cairo_t* cr, int x, int y, int w, int h, Rgb c) {
  if (w <= 0 || h <= 0) return;
  cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0);
  cairo_rectangle(cr, x, y, w, h);
  cairo_fill(cr);
}

// Colour bar: top = hi, bottom = lo.
void draw_colour_bar(cairo_t* cr, int x0, int y0, int w, int h) {
  for (int y = 0; y < h; ++y) {
    fill(cr, x0, y0 + y, w, 1, viridis(1.0 - static_cast<double>(y) / std::max(1, h - 1)));
  }
}

// Checks everything first: a wrong index is an error, not a silently wrong picture.
std::expected<void, std::string> check_panels(const std::vector<KernelPanel>& panels, int rows,
                                              int cols) {
  for (size_t p = 0; p < panels.size(); ++p) {
    const KernelPanel& k = panels[p];
    if (k.g_uS.rows() != rows || k.g_uS.cols() != cols) {
      return std::unexpected(fmt::format("kernel map: panel {} is {}x{}, panel 0 is {}x{}", p,
                                         k.g_uS.rows(), k.g_uS.cols(), rows, cols));
    }
    for (const auto* v : {&k.row_of_logical, &k.col_of_logical}) {
      const int n = v == &k.row_of_logical ? rows : cols;
      for (size_t i = 0; i < v->size(); ++i) {
        if ((*v)[i] < 0 || (*v)[i] >= n) {
          return std::unexpected(fmt::format(
              "kernel map: panel {}: {}[{}] = {}: allowed 0..{}", p,
              v == &k.row_of_logical ? "row_of_logical" : "col_of_logical", i, (*v)[i], n - 1));
        }
      }
    }
    if (k.states < 0 || 4 * k.states + 4 > std::min(rows, cols)) {
      return std::unexpected(
          fmt::format("kernel map: panel {}: {} states do not fit {}x{}", p, k.states, rows, cols));
    }
    for (const auto* s : {&k.stuck_high, &k.stuck_low}) {
      for (auto [r, c] : *s) {
        if (r < 0 || r >= rows || c < 0 || c >= cols) {
          return std::unexpected(fmt::format(
              "kernel map: panel {}: stuck device ({}, {}) outside the array", p, r, c));
        }
      }
    }
  }
  return {};
}

// One panel: the heat map, the logical regions' outlines, the input-row and output-column
// ticks in its margins, and the stuck devices' outlines on top.
void draw_panel(cairo_t* cr, const KernelMapLayout& l, int p, const KernelPanel& k, double lo,
                double hi) {
  const int rows = l.rows, cols = l.cols, cell = l.cell;
  const int x0 = l.panel_x(p), y0 = l.top();
  const int line = 1, outline = std::max(1, cell / 4);
  const int tick_len = std::max(1, l.gap * 3 / 4);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      fill(cr, x0 + c * cell, y0 + r * cell, cell, cell, viridis((k.g_uS(r, c) - lo) / (hi - lo)));
    }
  }
  auto prow = [&](int i) {
    return i < static_cast<int>(k.row_of_logical.size()) ? k.row_of_logical[i] : i;
  };
  auto pcol = [&](int j) {
    return j < static_cast<int>(k.col_of_logical.size()) ? k.col_of_logical[j] : j;
  };

  if (k.states > 0) {
    const int n4 = 4 * k.states;
    // Logical rectangles [row_lo, row_hi) x [col_lo, col_hi).
    const std::array<std::array<int, 4>, 3> regions = {{
        {0, 4, 0, n4 + 4},       // input rows x every used column
        {4, n4 + 4, 0, n4},      // state block
        {0, n4 + 4, n4, n4 + 4}  // output columns x every used row
    }};
    for (const auto& reg : regions) {
      Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> in =
          Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>::Constant(rows, cols, false);
      for (int i = reg[0]; i < reg[1]; ++i) {
        for (int j = reg[2]; j < reg[3]; ++j) in(prow(i), pcol(j)) = true;
      }
      auto inside = [&](int r, int c) {
        return r >= 0 && r < rows && c >= 0 && c < cols && in(r, c);
      };
      // The boundary of the physical cells the region occupies (not contiguous once
      // remapped), drawn just inside those cells.
      for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c) {
          if (!in(r, c)) continue;
          const int x = x0 + c * cell, y = y0 + r * cell;
          if (!inside(r - 1, c)) fill(cr, x, y, cell, line, kRegionRgb);
          if (!inside(r + 1, c)) fill(cr, x, y + cell - line, cell, line, kRegionRgb);
          if (!inside(r, c - 1)) fill(cr, x, y, line, cell, kRegionRgb);
          if (!inside(r, c + 1)) fill(cr, x + cell - line, y, line, cell, kRegionRgb);
        }
      }
    }
    // Ticks in the margins: physical rows carrying an input row (left), physical columns
    // carrying an output column (top).
    const int inset = cell > 3 ? 1 : 0;
    for (int i = 0; i < 4; ++i) {
      fill(cr, x0 - tick_len - 1, y0 + prow(i) * cell + inset, tick_len, cell - 2 * inset,
           kTickRgb);
      fill(cr, x0 + pcol(n4 + i) * cell + inset, y0 - tick_len - 1, cell - 2 * inset, tick_len,
           kTickRgb);
    }
  }

  // Stuck devices last, so that nothing hides them.
  for (const auto& [cells, rgb] :
       {std::pair{&k.stuck_high, kStuckHighRgb}, std::pair{&k.stuck_low, kStuckLowRgb}}) {
    for (auto [r, c] : *cells) {
      const int x = x0 + c * cell, y = y0 + r * cell;
      fill(cr, x, y, cell, outline, rgb);
      fill(cr, x, y + cell - outline, cell, outline, rgb);
      fill(cr, x, y, outline, cell, rgb);
      fill(cr, x + cell - outline, y, outline, cell, rgb);
    }
  }
}

KernelMapLayout bare_layout(const std::vector<KernelPanel>& panels, int cell_px) {
  KernelMapLayout l;
  l.cell = std::clamp(cell_px, 2, 64);
  l.gap = 2 * l.cell;
  l.bar_w = 3 * l.cell;
  l.panels = static_cast<int>(panels.size());
  if (!panels.empty()) {
    l.rows = static_cast<int>(panels[0].g_uS.rows());
    l.cols = static_cast<int>(panels[0].g_uS.cols());
  }
  return l;
}

KernelMapLayout with_frame(KernelMapLayout l, const frame::Spec& spec) {
  const frame::Margins m = frame::margins(l, spec);
  l.frame_left = m.left;
  l.frame_top = m.top;
  l.frame_right = m.right;
  l.frame_bottom = m.bottom;
  return l;
}

frame::Spec kernel_map_spec(const std::vector<KernelPanel>& panels, const KernelMapOptions& o) {
  frame::Spec s;
  s.title = o.title;
  s.lo_uS = o.g_min_uS;
  s.hi_uS = o.g_max_uS > o.g_min_uS ? o.g_max_uS : o.g_min_uS + 1e-9;
  s.legend = true;
  for (const KernelPanel& k : panels) {
    s.captions.push_back(k.caption);
    s.stuck_high += k.stuck_high.size();
    s.stuck_low += k.stuck_low.size();
  }
  return s;
}

// Draws the panels (and the frame, given its spec) on an image of `l` and writes it as PNG.
std::expected<void, std::string> write_figure(const std::string& path, const KernelMapLayout& l,
                                              const std::vector<KernelPanel>& panels, double lo,
                                              double hi, const frame::Spec* spec) {
  // RGB24: an opaque PNG without alpha channel, the map's colours exactly as drawn.
  const Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, l.width(), l.height()),
                        &cairo_surface_destroy);
  const Context context(cairo_create(surface.get()), &cairo_destroy);
  cairo_t* cr = context.get();
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  for (size_t p = 0; p < panels.size(); ++p)
    draw_panel(cr, l, static_cast<int>(p), panels[p], lo, hi);
  draw_colour_bar(cr, l.bar_x(), l.top(), l.bar_w, l.rows * l.cell);
  if (spec != nullptr) frame::draw(cr, l, *spec);
  if (const cairo_status_t s = cairo_status(cr); s != CAIRO_STATUS_SUCCESS) {
    return std::unexpected(fmt::format("heat map: drawing failed: {}", cairo_status_to_string(s)));
  }
  cairo_surface_flush(surface.get());
  if (const cairo_status_t s = cairo_surface_write_to_png(surface.get(), path.c_str());
      s != CAIRO_STATUS_SUCCESS) {
    return std::unexpected(
        fmt::format("heat map: cannot write {} ({})", path, cairo_status_to_string(s)));
  }
  return {};
}

}  // namespace

std::expected<void, std::string> write_heatmap_png(const std::string& path,
                                                   const Eigen::MatrixXd& g_uS,
                                                   const HeatmapOptions& o) {
  if (g_uS.rows() == 0 || g_uS.cols() == 0) return std::unexpected("heat map: empty matrix");
  const double lo = o.g_min_uS;
  const double hi = o.g_max_uS > lo ? o.g_max_uS : std::max(g_uS.maxCoeff(), lo + 1e-9);
  const std::vector<KernelPanel> panels = {KernelPanel{.g_uS = g_uS}};
  frame::Spec spec;
  spec.title = o.title;
  spec.lo_uS = lo;
  spec.hi_uS = hi;
  const KernelMapLayout l = with_frame(bare_layout(panels, o.cell_px), spec);
  return write_figure(path, l, panels, lo, hi, &spec);
}

KernelMapLayout kernel_map_layout(const std::vector<KernelPanel>& panels,
                                  const KernelMapOptions& o) {
  const KernelMapLayout l = bare_layout(panels, o.cell_px);
  return o.framed ? with_frame(l, kernel_map_spec(panels, o)) : l;
}

std::expected<void, std::string> write_kernel_map_png(const std::string& path,
                                                      const std::vector<KernelPanel>& panels,
                                                      const KernelMapOptions& o) {
  if (panels.empty()) return std::unexpected("kernel map: no panels");
  const KernelMapLayout l = kernel_map_layout(panels, o);
  if (l.rows == 0 || l.cols == 0) return std::unexpected("kernel map: empty matrix");
  if (auto ok = check_panels(panels, l.rows, l.cols); !ok) return ok;
  const frame::Spec spec = kernel_map_spec(panels, o);
  return write_figure(path, l, panels, spec.lo_uS, spec.hi_uS, o.framed ? &spec : nullptr);
}

}  // namespace xbar::client
