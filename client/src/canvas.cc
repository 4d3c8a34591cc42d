#include "canvas.h"

#include <png.h>

#include <algorithm>
#include <cstdio>
#include <memory>

namespace xbar::client {

std::expected<void, std::string> write_png(const std::string& path, const Canvas& img,
                                           std::string_view what) {
  const std::string w(what);
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return std::unexpected(w + ": cannot write " + path);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    return std::unexpected(w + ": libpng init failed");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return std::unexpected(w + ": libpng failed writing " + path);
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.width), static_cast<png_uint_32>(img.height),
               8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img.height; ++y) {
    png_write_row(png, const_cast<png_bytep>(&img.px[static_cast<size_t>(y) * img.width * 3]));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(f.get()) != 0) return std::unexpected(w + ": cannot write " + path);
  return {};
}

namespace {

struct Glyph {
  char32_t code_point;
  std::array<uint8_t, kGlyphHeight> rows;  // top to bottom; bit 4 is the leftmost column
};

// Drawn for this file; sorted by code point.
constexpr Glyph kFont[] = {
    {0x0020, {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000}},  // ' '
    {0x0025, {0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011, 0b00000}},  // '%'
    {0x0028, {0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0b00000}},  // '('
    {0x0029, {0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0b00000}},  // ')'
    {0x002b, {0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b00000}},  // '+'
    {0x002c, {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000}},  // ','
    {0x002d, {0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000, 0b00000}},  // '-'
    {0x002e, {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000}},  // '.'
    {0x002f, {0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000, 0b00000}},  // '/'
    {0x0030, {0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0b00000}},  // '0'
    {0x0031, {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000}},  // '1'
    {0x0032, {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000}},  // '2'
    {0x0033, {0b01110, 0b10001, 0b00001, 0b00110, 0b00001, 0b10001, 0b01110, 0b00000}},  // '3'
    {0x0034, {0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0b00000}},  // '4'
    {0x0035, {0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0b00000}},  // '5'
    {0x0036, {0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0b00000}},  // '6'
    {0x0037, {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00000}},  // '7'
    {0x0038, {0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0b00000}},  // '8'
    {0x0039, {0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0b00000}},  // '9'
    {0x003a, {0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000}},  // ':'
    {0x003d, {0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000}},  // '='
    {0x003f, {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100, 0b00000}},  // '?'
    {0x0041, {0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000}},  // 'A'
    {0x0042, {0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110, 0b00000}},  // 'B'
    {0x0043, {0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000}},  // 'C'
    {0x0044, {0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100, 0b00000}},  // 'D'
    {0x0045, {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111, 0b00000}},  // 'E'
    {0x0046, {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000}},  // 'F'
    {0x0047, {0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111, 0b00000}},  // 'G'
    {0x0048, {0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000}},  // 'H'
    {0x0049, {0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000}},  // 'I'
    {0x004a, {0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100, 0b00000}},  // 'J'
    {0x004b, {0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001, 0b00000}},  // 'K'
    {0x004c, {0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111, 0b00000}},  // 'L'
    {0x004d, {0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001, 0b00000}},  // 'M'
    {0x004e, {0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b00000}},  // 'N'
    {0x004f, {0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000}},  // 'O'
    {0x0050, {0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000}},  // 'P'
    {0x0051, {0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101, 0b00000}},  // 'Q'
    {0x0052, {0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001, 0b00000}},  // 'R'
    {0x0053, {0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110, 0b00000}},  // 'S'
    {0x0054, {0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000}},  // 'T'
    {0x0055, {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000}},  // 'U'
    {0x0056, {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000}},  // 'V'
    {0x0057, {0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010, 0b00000}},  // 'W'
    {0x0058, {0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001, 0b00000}},  // 'X'
    {0x0059, {0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000}},  // 'Y'
    {0x005a, {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111, 0b00000}},  // 'Z'
    {0x0061, {0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0b00000}},  // 'a'
    {0x0062, {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0b00000}},  // 'b'
    {0x0063, {0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000}},  // 'c'
    {0x0064, {0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0b00000}},  // 'd'
    {0x0065, {0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0b00000}},  // 'e'
    {0x0066, {0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0b00000}},  // 'f'
    {0x0067, {0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110}},  // 'g'
    {0x0068, {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000}},  // 'h'
    {0x0069, {0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000}},  // 'i'
    {0x006a, {0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100}},  // 'j'
    {0x006b, {0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b00000}},  // 'k'
    {0x006c, {0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000}},  // 'l'
    {0x006d, {0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10101, 0b10101, 0b00000}},  // 'm'
    {0x006e, {0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000}},  // 'n'
    {0x006f, {0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000}},  // 'o'
    {0x0070, {0b00000, 0b00000, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000}},  // 'p'
    {0x0071, {0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001}},  // 'q'
    {0x0072, {0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0b00000}},  // 'r'
    {0x0073, {0b00000, 0b00000, 0b01111, 0b10000, 0b01110, 0b00001, 0b11110, 0b00000}},  // 's'
    {0x0074, {0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0b00000}},  // 't'
    {0x0075, {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0b00000}},  // 'u'
    {0x0076, {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000}},  // 'v'
    {0x0077, {0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0b00000}},  // 'w'
    {0x0078, {0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000}},  // 'x'
    {0x0079, {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110}},  // 'y'
    {0x007a, {0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000}},  // 'z'
    {0x00b1, {0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b11111, 0b00000}},  // +-
    {0x00b5, {0b00000, 0b00000, 0b10010, 0b10010, 0b10010, 0b11101, 0b10000, 0b10000}},  // micro
    {0x03c3, {0b00000, 0b00000, 0b01111, 0b10010, 0b10001, 0b10001, 0b01110, 0b00000}},  // sigma
};

constexpr std::array<uint8_t, kGlyphHeight> kMissing = {0b11111, 0b10001, 0b10001, 0b10001,
                                                        0b10001, 0b10001, 0b11111, 0b00000};

const std::array<uint8_t, kGlyphHeight>& glyph(char32_t cp) {
  const auto* it = std::lower_bound(std::begin(kFont), std::end(kFont), cp,
                                    [](const Glyph& g, char32_t c) { return g.code_point < c; });
  return it != std::end(kFont) && it->code_point == cp ? it->rows : kMissing;
}

// UTF-8 -> code points; a malformed byte is one U+FFFD (drawn as the box).
std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const int n = b < 0x80           ? 1
                  : (b >> 5) == 0x6  ? 2
                  : (b >> 4) == 0xE  ? 3
                  : (b >> 3) == 0x1E ? 4
                                     : 0;
    char32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = n > 0 && i + static_cast<size_t>(n) <= s.size();
    for (int k = 1; ok && k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      ok = (c >> 6) == 0x2;
      cp = (cp << 6) | (c & 0x3F);
    }
    out.push_back(ok ? cp : U'\uFFFD');
    i += ok ? static_cast<size_t>(n) : 1;
  }
  return out;
}

// Calls on(tx, ty) for every lit font pixel of `text`, in text coordinates (x along the text).
template <typename F>
void for_each_pixel(std::string_view text, int scale, F&& on) {
  int pen = 0;
  for (char32_t cp : code_points(text)) {
    const auto& rows = glyph(cp);
    for (int gy = 0; gy < kGlyphHeight; ++gy) {
      for (int gx = 0; gx < 5; ++gx) {
        if (!(rows[static_cast<size_t>(gy)] & (0x10 >> gx))) continue;
        for (int sy = 0; sy < scale; ++sy) {
          for (int sx = 0; sx < scale; ++sx) on(pen + gx * scale + sx, gy * scale + sy);
        }
      }
    }
    pen += kGlyphAdvance * scale;
  }
}

}  // namespace

int text_width(std::string_view text, int scale) {
  const int n = static_cast<int>(code_points(text).size());
  return n == 0 ? 0 : (n * kGlyphAdvance - 1) * scale;
}

void draw_text(Canvas& img, int x, int y, std::string_view text, Rgb colour, int scale) {
  for_each_pixel(text, scale, [&](int tx, int ty) { img.put(x + tx, y + ty, colour); });
}

void draw_text_up(Canvas& img, int x, int y, std::string_view text, Rgb colour, int scale) {
  const int w = text_width(text, scale);
  for_each_pixel(text, scale, [&](int tx, int ty) { img.put(x + ty, y + w - 1 - tx, colour); });
}

}  // namespace xbar::client
