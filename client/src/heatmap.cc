#include "heatmap.h"

#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

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

std::expected<void, std::string> write_heatmap_png(const std::string& path,
                                                   const Eigen::MatrixXd& g_uS,
                                                   const HeatmapOptions& o) {
  const int rows = static_cast<int>(g_uS.rows()), cols = static_cast<int>(g_uS.cols());
  if (rows == 0 || cols == 0) return std::unexpected("heat map: empty matrix");
  const int cell = std::clamp(o.cell_px, 1, 64);
  const int bar_w = 3 * cell, gap = 2 * cell;
  const int width = cols * cell + gap + bar_w, height = rows * cell;
  const double lo = o.g_min_uS;
  const double hi = o.g_max_uS > lo ? o.g_max_uS : std::max(g_uS.maxCoeff(), lo + 1e-9);

  std::vector<uint8_t> img(static_cast<size_t>(width) * height * 3, 255);
  auto put = [&](int x, int y, std::array<uint8_t, 3> c) {
    uint8_t* p = &img[(static_cast<size_t>(y) * width + x) * 3];
    p[0] = c[0];
    p[1] = c[1];
    p[2] = c[2];
  };
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const auto rgb = viridis((g_uS(r, c) - lo) / (hi - lo));
      for (int y = 0; y < cell; ++y) {
        for (int x = 0; x < cell; ++x) put(c * cell + x, r * cell + y, rgb);
      }
    }
  }
  for (int y = 0; y < height; ++y) {  // colour bar: top = hi, bottom = lo
    const auto rgb = viridis(1.0 - static_cast<double>(y) / std::max(1, height - 1));
    for (int x = 0; x < bar_w; ++x) put(cols * cell + gap + x, y, rgb);
  }

  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return std::unexpected("heat map: cannot write " + path);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    return std::unexpected("heat map: libpng init failed");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return std::unexpected("heat map: libpng failed writing " + path);
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, &img[static_cast<size_t>(y) * width * 3]);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return {};
}

}  // namespace xbar::client
