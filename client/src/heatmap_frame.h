// The frame of a heat-map figure (heatmap.cc draws the map itself): the title, the panels'
// captions, row and column axes, the colour bar's scale in µS and the legend of the marks.
#pragma once

#include <cairo.h>

#include <cstddef>
#include <string>
#include <vector>

#include "heatmap.h"

namespace xbar::client::frame {

/// What the frame says.
struct Spec {
  std::string title;
  std::vector<std::string> captions;  // one per panel; all empty: no caption line
  double lo_uS = 0, hi_uS = 1;        // the colour bar's bottom and top
  bool legend = false;                // the deployment map's marks (outlines, regions, ticks)
  size_t stuck_high = 0, stuck_low = 0;
};

struct Margins {
  int left = 0, top = 0, right = 0, bottom = 0;
};

/// The margins the frame needs around the map of `bare` (a layout without frame).
Margins margins(const KernelMapLayout& bare, const Spec& spec);

/// Draws the frame on `cr`, whose surface is `layout` (with the margins of margins()) in size.
void draw(cairo_t* cr, const KernelMapLayout& layout, const Spec& spec);

}  // namespace xbar::client::frame
