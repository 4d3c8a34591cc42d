#include "heatmap_frame.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numbers>

namespace xbar::client::frame {
namespace {

using Rgb = std::array<uint8_t, 3>;
constexpr Rgb kInk = {0, 0, 0};
constexpr Rgb kAxisInk = {70, 70, 70};

void set_colour(cairo_t* cr, Rgb c) {
  cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0);
}

void fill(cairo_t* cr, double x, double y, double w, double h, Rgb c) {
  if (w <= 0 || h <= 0) return;
  set_colour(cr, c);
  cairo_rectangle(cr, x, y, w, h);
  cairo_fill(cr);
}

// A rectangle's outline `t` pixels wide, inside it.
void outline(cairo_t* cr, double x, double y, double w, double h, double t, Rgb c) {
  fill(cr, x, y, w, t, c);
  fill(cr, x, y + h - t, w, t, c);
  fill(cr, x, y, t, h, c);
  fill(cr, x + w - t, y, t, h, c);
}

// Sizes from the cell size: text that stays legible next to 2-pixel cells and in proportion to
// 64-pixel ones.
struct Metrics {
  double font_px, title_px, pad, tick, line;  // line: the tick marks' thickness
};

Metrics metrics(int cell) {
  const double font = std::round(std::clamp(1.75 * cell, 13.0, 32.0));
  return {font, std::round(font * 1.25), std::round(font * 0.5), std::round(font * 0.3),
          std::max(1.0, std::round(font / 14))};
}

enum class Align { kLeft, kCentre, kRight };

// cairo's toy text API at one size. The face comes from fontconfig ("sans-serif": DejaVu Sans
// with fonts-dejavu-core); on a system without any font cairo draws with its built-in one
// (ASCII only: µ shows as a box), so a figure is written either way.
class Font {
 public:
  Font(cairo_t* cr, double px, bool bold = false) : cr_(cr), px_(px), bold_(bold) {
    select();
    cairo_font_extents(cr_, &extents_);
  }
  // The same face, made smaller (down to 70 %) where needed for `text` to fit in `max_w`
  // pixels.
  Font fitted(const std::string& text, double max_w) const {
    const double w = width(text);
    return w <= max_w || w <= 0 ? *this : Font(cr_, std::max(0.7 * px_, px_ * max_w / w), bold_);
  }
  // `text`, cut short with an ellipsis where it is wider than `max_w` (at a character
  // boundary: the text is UTF-8).
  std::string elided(const std::string& text, double max_w) const {
    if (width(text) <= max_w) return text;
    std::string cut = text;
    while (!cut.empty()) {
      do {
        cut.pop_back();
      } while (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0xc0) == 0x80);
      if (cut.empty() || width(cut + "…") <= max_w) break;
    }
    return cut + "…";
  }
  double ascent() const { return extents_.ascent; }
  double descent() const { return extents_.descent; }
  double line() const { return extents_.ascent + extents_.descent; }
  double width(const std::string& s) const {
    select();
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    return e.x_advance;
  }
  // `s` with its baseline at y; x is its left end, centre or right end.
  void show(double x, double y, const std::string& s, Rgb c, Align a = Align::kLeft) const {
    const double w = a == Align::kLeft ? 0 : width(s);
    select();
    set_colour(cr_, c);
    cairo_move_to(cr_, a == Align::kLeft ? x : a == Align::kCentre ? x - w / 2 : x - w, y);
    cairo_show_text(cr_, s.c_str());
  }
  // `s` reading bottom to top, centred on y, its baseline the vertical line at x (the glyphs
  // reach ascent() to the left of it).
  void show_up(double x, double y, const std::string& s, Rgb c) const {
    const double w = width(s);
    cairo_save(cr_);
    cairo_translate(cr_, x, y + w / 2);
    cairo_rotate(cr_, -std::numbers::pi / 2);
    show(0, 0, s, c);
    cairo_restore(cr_);
  }

 private:
  void select() const {
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold_ ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, px_);
  }
  cairo_t* cr_;
  double px_;
  bool bold_;
  cairo_font_extents_t extents_{};
};

// Row and column numbers: every step-th index from 0 (step a power of two, so 0, 8, 16, ...
// on a 64-wide array) and the last index unless it would crowd the one before, or the next
// panel's 0 `next_panel_px` further on (0: no next panel).
std::vector<int> index_ticks(int n, int cell, const Font& font, double next_panel_px = 0) {
  const std::string last = std::to_string(n - 1);
  const double spacing = std::max(2.5 * font.line(), 2.5 * font.width(last));
  int step = 1;
  while (step * cell < spacing && step < n) step *= 2;
  std::vector<int> ticks;
  for (int i = 0; i < n; i += step) ticks.push_back(i);
  const bool room_after =
      next_panel_px == 0 || next_panel_px >= (font.width(last) + font.width("0")) / 2 + 4;
  if (n - 1 - ticks.back() >= std::max(1, step / 2) && room_after) ticks.push_back(n - 1);
  return ticks;
}

std::string value_label(double v) { return fmt::format("{:.4g}", std::abs(v) < 1e-12 ? 0.0 : v); }

// The colour bar's scale, bottom (lo) to top (hi): round values 1, 2 or 5 x 10^k apart, at most
// about `max_count`, and both ends (the scale is clamped there), the round values too close to
// an end left out.
std::vector<double> value_ticks(double lo, double hi, int max_count, double min_gap) {
  std::vector<double> ticks = {lo};
  if (!(hi > lo)) return ticks;
  const double raw = (hi - lo) / std::max(1, max_count);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * magnitude;
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  }
  for (auto k = static_cast<int64_t>(std::ceil(lo / step)); k * step < hi; ++k) {
    const double v = static_cast<double>(k) * step;
    if (v - lo >= min_gap && hi - v >= min_gap) ticks.push_back(v);
  }
  ticks.push_back(hi);
  return ticks;
}

// The legend of a deployment map: a swatch as the mark looks on the map, and what it means.
enum class Mark { kStuckHigh, kStuckLow, kRegion, kTick };

struct LegendEntry {
  Mark mark;
  std::string text;
  double x = 0, y = 0;  // top-left of the swatch, relative to the legend's
};

struct Legend {
  std::vector<LegendEntry> entries;
  double swatch = 0, height = 0;
};

// Entries left to right, wrapped at `width`.
Legend legend(const Spec& spec, const Font& font, const Metrics& m, double width) {
  Legend l;
  if (!spec.legend) return l;
  l.swatch = std::round(0.8 * font.line());
  l.entries = {
      {Mark::kStuckHigh, fmt::format("stuck-high device (recorded): {}", spec.stuck_high)},
      {Mark::kStuckLow, fmt::format("stuck-low device (recorded): {}", spec.stuck_low)},
      {Mark::kRegion, "logical regions: input rows, state block, output columns"},
      {Mark::kTick, "rows fed by the input (left ticks), columns read as outputs (top ticks)"},
  };
  const double row_h = std::max(l.swatch, font.line()) + m.pad / 2;
  double x = 0, y = 0;
  for (auto& e : l.entries) {
    const double w = l.swatch + m.pad / 2 + font.width(e.text);
    if (x > 0 && x + w > width) {
      x = 0;
      y += row_h;
    }
    e.x = x;
    e.y = y;
    x += w + 2 * m.pad;
  }
  l.height = y + row_h;
  return l;
}

void draw_swatch(cairo_t* cr, Mark mark, double x, double y, double s) {
  const Rgb cell = viridis(0.15);
  switch (mark) {
    case Mark::kStuckHigh:
    case Mark::kStuckLow:
      fill(cr, x, y, s, s, cell);
      outline(cr, x, y, s, s, std::max(1.0, std::round(s / 5)),
              mark == Mark::kStuckHigh ? kStuckHighRgb : kStuckLowRgb);
      break;
    case Mark::kRegion:
      fill(cr, x, y, s, s, cell);
      outline(cr, x, y, s, s, 1, kRegionRgb);
      break;
    case Mark::kTick:
      fill(cr, x, y + std::round(s / 3), s, std::max(2.0, std::round(s / 3)), kTickRgb);
      break;
  }
}

bool any_caption(const Spec& spec) {
  return std::ranges::any_of(spec.captions, [](const std::string& c) { return !c.empty(); });
}

// Everything margins() and draw() both need, measured with the same fonts.
struct Plan {
  Metrics m;
  Font font, title;
  std::vector<int> row_ticks, col_ticks;
  std::vector<double> bar_ticks;
  double row_label_w = 0, bar_label_w = 0, col_tick = 0;
};

Plan plan(cairo_t* cr, const KernelMapLayout& l, const Spec& spec) {
  const Metrics m = metrics(l.cell);
  Plan p{m, Font(cr, m.font_px), Font(cr, m.title_px, true), {}, {}, {}};
  p.row_ticks = index_ticks(l.rows, l.cell, p.font);
  p.col_ticks = index_ticks(l.cols, l.cell, p.font, l.panels > 1 ? l.cell + l.gap : 0);
  for (int r : p.row_ticks)
    p.row_label_w = std::max(p.row_label_w, p.font.width(std::to_string(r)));
  const double bar_h = static_cast<double>(l.rows) * l.cell;
  const double min_gap_uS = 1.2 * p.font.line() / bar_h * (spec.hi_uS - spec.lo_uS);
  p.bar_ticks =
      value_ticks(spec.lo_uS, spec.hi_uS,
                  std::max(2, static_cast<int>(bar_h / (2.5 * p.font.line()))), min_gap_uS);
  for (double v : p.bar_ticks)
    p.bar_label_w = std::max(p.bar_label_w, p.font.width(value_label(v)));
  p.col_tick = std::min<double>(m.tick, l.gap);  // in the bottom gap, under the panels
  return p;
}

const char* const kBarTitle = "conductance (µS)";

// The bottom margin's lines, from the top of the bottom gap: column numbers, axis title, legend.
struct Bottom {
  double numbers_baseline, title_baseline, legend_top, end;
};

Bottom bottom(const Plan& p, const Legend& legend) {
  Bottom b{};
  b.numbers_baseline = p.col_tick + 2 + p.font.ascent();
  b.title_baseline = b.numbers_baseline + p.font.descent() + p.m.pad / 2 + p.font.ascent();
  b.legend_top = b.title_baseline + p.font.descent() + p.m.pad;
  b.end = (legend.entries.empty() ? b.title_baseline + p.font.descent()
                                  : b.legend_top + legend.height) +
          p.m.pad;
  return b;
}

using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

}  // namespace

Margins margins(const KernelMapLayout& bare, const Spec& spec) {
  // Measured on a scratch surface: text extents need a context, not the figure's.
  const Surface scratch(cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1),
                        &cairo_surface_destroy);
  const Context cr(cairo_create(scratch.get()), &cairo_destroy);
  const Plan p = plan(cr.get(), bare, spec);
  Margins g;
  g.top = static_cast<int>(std::ceil(p.m.pad + p.title.line() + p.m.pad));
  if (any_caption(spec)) g.top += static_cast<int>(std::ceil(p.font.line() + p.m.pad / 2));
  g.left =
      static_cast<int>(std::ceil(p.m.pad + p.font.line() + p.m.pad + p.row_label_w + 3 + p.m.tick));
  g.right =
      static_cast<int>(std::ceil(p.m.tick + 3 + p.bar_label_w + p.m.pad + p.font.line() + p.m.pad));
  const double width = bare.width() + g.left + g.right;
  const Legend l = legend(spec, p.font, p.m, width - 2 * p.m.pad);
  g.bottom = std::max(0, static_cast<int>(std::ceil(bottom(p, l).end)) - bare.gap);
  return g;
}

void draw(cairo_t* cr, const KernelMapLayout& l, const Spec& spec) {
  const Plan p = plan(cr, l, spec);
  const double pad = p.m.pad, tick = p.m.tick;
  const double map_h = static_cast<double>(l.rows) * l.cell;
  const double map_bottom = l.top() + map_h;
  const double width = l.width();

  // Title and captions.
  const Font title = p.title.fitted(spec.title, width - 2 * pad);
  title.show(pad, pad + p.title.ascent(), title.elided(spec.title, width - 2 * pad), kInk);
  for (size_t i = 0; i < spec.captions.size() && i < static_cast<size_t>(l.panels); ++i) {
    const double room = l.cols * l.cell + l.gap - pad / 2;
    const Font f = p.font.fitted(spec.captions[i], room);
    f.show(l.panel_x(static_cast<int>(i)), l.frame_top - pad / 2 - p.font.descent(),
           f.elided(spec.captions[i], room), kInk);
  }

  // Row axis, left of the first panel's margin (which carries the input-row ticks).
  const double centre_shift = (p.font.ascent() - p.font.descent()) / 2;
  for (int r : p.row_ticks) {
    const int y = l.top() + r * l.cell + l.cell / 2;
    fill(cr, l.frame_left - tick, y, tick, p.m.line, kAxisInk);
    p.font.show(l.frame_left - tick - 3, y + p.m.line / 2 + centre_shift, std::to_string(r), kInk,
                Align::kRight);
  }
  p.font.show_up(pad + p.font.ascent(), l.top() + map_h / 2, "row", kInk);

  // Column axis under every panel, in the bottom gap and below it.
  const Legend legend_plan = legend(spec, p.font, p.m, width - 2 * pad);
  const Bottom b = bottom(p, legend_plan);
  for (int panel = 0; panel < l.panels; ++panel) {
    const int x0 = l.panel_x(panel);
    for (int c : p.col_ticks) {
      const int x = x0 + c * l.cell + l.cell / 2;
      fill(cr, x, map_bottom, p.m.line, p.col_tick, kAxisInk);
      p.font.show(x + p.m.line / 2, map_bottom + b.numbers_baseline, std::to_string(c), kInk,
                  Align::kCentre);
    }
    p.font.show(x0 + l.cols * l.cell / 2.0, map_bottom + b.title_baseline, "column", kInk,
                Align::kCentre);
  }

  // The colour bar's scale: value ticks to its right, its title turned.
  const double bar_right = l.bar_x() + l.bar_w;
  for (double v : p.bar_ticks) {
    const double t = spec.hi_uS > spec.lo_uS ? (spec.hi_uS - v) / (spec.hi_uS - spec.lo_uS) : 0;
    const double y = std::floor(l.top() + t * (map_h - 1));
    fill(cr, bar_right, y, tick, p.m.line, kAxisInk);
    p.font.show(bar_right + tick + 3, y + p.m.line / 2 + centre_shift, value_label(v), kInk);
  }
  p.font.show_up(width - pad - p.font.descent(), l.top() + map_h / 2, kBarTitle, kInk);

  // The legend.
  for (const LegendEntry& e : legend_plan.entries) {
    const double x = pad + e.x, y = map_bottom + b.legend_top + e.y;
    draw_swatch(cr, e.mark, x, y, legend_plan.swatch);
    p.font.show(x + legend_plan.swatch + pad / 2, y + legend_plan.swatch / 2 + centre_shift, e.text,
                kInk);
  }
}

}  // namespace xbar::client::frame
