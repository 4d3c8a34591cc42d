// What the PNG figures draw with (the heat maps here, the plots of bench/): an RGB canvas, a
// PNG writer (libpng) and a tiny 5x7 bitmap font. No anti-aliasing, no layout: callers place
// every pixel.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace xbar::client {

using Rgb = std::array<uint8_t, 3>;

/// An RGB image, white to begin with; drawing outside it is ignored.
struct Canvas {
  int width, height;
  std::vector<uint8_t> px;  // rows top to bottom, 3 bytes per pixel
  Canvas(int w, int h) : width(w), height(h), px(static_cast<size_t>(w) * h * 3, 255) {}
  void put(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    uint8_t* p = &px[(static_cast<size_t>(y) * width + x) * 3];
    p[0] = c[0];
    p[1] = c[1];
    p[2] = c[2];
  }
  void fill(int x0, int y0, int w, int h, Rgb c) {
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) put(x, y, c);
    }
  }
};

/// Writes `img` as an 8-bit RGB PNG. Errors start with `what` ("heat map: cannot write P").
std::expected<void, std::string> write_png(const std::string& path, const Canvas& img,
                                           std::string_view what);

// The font: every glyph is 5 x 8 pixels (7 above the baseline, 1 for descenders) and advances
// 6; at `scale` s each font pixel is an s x s square. Text is UTF-8 with these characters:
// A-Z a-z 0-9, space and % ( ) + , - . / : = ?, the Greek small sigma, the micro sign and
// plus-minus; any other character is drawn as a hollow box.
inline constexpr int kGlyphAdvance = 6;
inline constexpr int kGlyphHeight = 8;

/// The width of `text` in pixels (no trailing gap after the last glyph).
int text_width(std::string_view text, int scale = 1);
inline int text_height(int scale = 1) { return kGlyphHeight * scale; }

/// Draws `text` left to right with its top-left corner at (x, y).
void draw_text(Canvas& img, int x, int y, std::string_view text, Rgb colour, int scale = 1);

/// Draws `text` turned 90 degrees counter-clockwise (reading bottom to top, as a y-axis label);
/// (x, y) is the top-left corner of its box, text_height wide and text_width high.
void draw_text_up(Canvas& img, int x, int y, std::string_view text, Rgb colour, int scale = 1);

}  // namespace xbar::client
