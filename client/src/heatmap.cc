#include "heatmap.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "canvas.h"

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

// Colour bar: top = hi, bottom = lo.
void draw_colour_bar(Canvas& img, int x0, int y0, int w, int h) {
  for (int y = 0; y < h; ++y) {
    img.fill(x0, y0 + y, w, 1, viridis(1.0 - static_cast<double>(y) / std::max(1, h - 1)));
  }
}

}  // namespace

std::expected<void, std::string> write_heatmap_png(const std::string& path,
                                                   const Eigen::MatrixXd& g_uS,
                                                   const HeatmapOptions& o) {
  const int rows = static_cast<int>(g_uS.rows()), cols = static_cast<int>(g_uS.cols());
  if (rows == 0 || cols == 0) return std::unexpected("heat map: empty matrix");
  const int cell = std::clamp(o.cell_px, 1, 64);
  const int bar_w = 3 * cell, gap = 2 * cell;
  const double lo = o.g_min_uS;
  const double hi = o.g_max_uS > lo ? o.g_max_uS : std::max(g_uS.maxCoeff(), lo + 1e-9);

  Canvas img(cols * cell + gap + bar_w, rows * cell);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      img.fill(c * cell, r * cell, cell, cell, viridis((g_uS(r, c) - lo) / (hi - lo)));
    }
  }
  draw_colour_bar(img, cols * cell + gap, 0, bar_w, img.height);
  return write_png(path, img, "heat map");
}

KernelMapLayout kernel_map_layout(const std::vector<KernelPanel>& panels,
                                  const KernelMapOptions& o) {
  KernelMapLayout l;
  l.cell = std::clamp(o.cell_px, 2, 64);
  l.gap = 2 * l.cell;
  l.bar_w = 3 * l.cell;
  l.panels = static_cast<int>(panels.size());
  if (!panels.empty()) {
    l.rows = static_cast<int>(panels[0].g_uS.rows());
    l.cols = static_cast<int>(panels[0].g_uS.cols());
  }
  return l;
}

std::expected<void, std::string> write_kernel_map_png(const std::string& path,
                                                      const std::vector<KernelPanel>& panels,
                                                      const KernelMapOptions& o) {
  if (panels.empty()) return std::unexpected("kernel map: no panels");
  const KernelMapLayout l = kernel_map_layout(panels, o);
  const int rows = l.rows, cols = l.cols, cell = l.cell;
  if (rows == 0 || cols == 0) return std::unexpected("kernel map: empty matrix");
  const double lo = o.g_min_uS, hi = o.g_max_uS > lo ? o.g_max_uS : lo + 1e-9;

  // Checks everything first: a wrong index is an error, not a silently wrong picture.
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

  Canvas img(l.width(), l.height());
  const int y0 = l.top();
  const int line = 1, outline = std::max(1, cell / 4);
  const int tick_len = std::max(1, l.gap * 3 / 4);
  for (size_t p = 0; p < panels.size(); ++p) {
    const KernelPanel& k = panels[p];
    const int x0 = l.panel_x(static_cast<int>(p));
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        img.fill(x0 + c * cell, y0 + r * cell, cell, cell,
                 viridis((k.g_uS(r, c) - lo) / (hi - lo)));
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
            if (!inside(r - 1, c)) img.fill(x, y, cell, line, kRegionRgb);
            if (!inside(r + 1, c)) img.fill(x, y + cell - line, cell, line, kRegionRgb);
            if (!inside(r, c - 1)) img.fill(x, y, line, cell, kRegionRgb);
            if (!inside(r, c + 1)) img.fill(x + cell - line, y, line, cell, kRegionRgb);
          }
        }
      }
      // Ticks in the margins: physical rows carrying an input row (left), physical columns
      // carrying an output column (top).
      const int inset = cell > 3 ? 1 : 0;
      for (int i = 0; i < 4; ++i) {
        img.fill(x0 - tick_len - 1, y0 + prow(i) * cell + inset, tick_len, cell - 2 * inset,
                 kTickRgb);
        img.fill(x0 + pcol(n4 + i) * cell + inset, y0 - tick_len - 1, cell - 2 * inset, tick_len,
                 kTickRgb);
      }
    }

    // Stuck devices last, so that nothing hides them.
    for (const auto& [cells, rgb] :
         {std::pair{&k.stuck_high, kStuckHighRgb}, std::pair{&k.stuck_low, kStuckLowRgb}}) {
      for (auto [r, c] : *cells) {
        const int x = x0 + c * cell, y = y0 + r * cell;
        img.fill(x, y, cell, outline, rgb);
        img.fill(x, y + cell - outline, cell, outline, rgb);
        img.fill(x, y, outline, cell, rgb);
        img.fill(x + cell - outline, y, outline, cell, rgb);
      }
    }
  }
  draw_colour_bar(img, l.panel_x(l.panels), y0, l.bar_w, rows * cell);
  return write_png(path, img, "heat map");
}

}  // namespace xbar::client
