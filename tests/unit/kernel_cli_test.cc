// xbarctl's kernel commands without a daemon: the kernel files (the KernelSet JSON mapping),
// the example kernel sets in configs/kernels, and the deployment map PNG (Fig. 3).
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <complex>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "deploy_cmds.h"
#include "heatmap.h"
#include "process.h"

namespace xbar::client {
namespace {

using testing::TempDir;

const std::filesystem::path kKernels = std::filesystem::path(XBAR_SOURCE_DIR) / "configs/kernels";

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

// The daemon's quantizer (kernels.proto): clamp(round(x n / f), -n, n) f / n, n = 2^(bits-1) - 1.
double quantize(double x, int bits, double f) {
  if (bits <= 0) return x;
  const double n = std::ldexp(1.0, bits - 1) - 1;
  return std::clamp(std::round(x * n / f), -n, n) * f / n;
}

TEST(KernelFile, ProtobufJsonNamesAreTheOnesTheExamplesUse) {
  const auto* w = v1::ConductanceWindow::descriptor();
  EXPECT_EQ(w->FindFieldByName("g_min_uS")->json_name(), "gMinUS");
  EXPECT_EQ(w->FindFieldByName("g_max_uS")->json_name(), "gMaxUS");
  EXPECT_EQ(v1::ContinuousKernel::descriptor()->FindFieldByName("log_dt")->json_name(), "logDt");
  EXPECT_EQ(v1::Quantization::descriptor()->FindFieldByName("f_scale_a")->json_name(), "fScaleA");
}

TEST(KernelFile, ExampleLoadsWithThreeKernelsOf14States) {
  for (const char* name : {"example.json", "example-2bit.json"}) {
    SCOPED_TRACE(name);
    auto ks = load_kernel_set((kKernels / name).string());
    ASSERT_TRUE(ks.has_value()) << ks.error();
    ASSERT_EQ(ks->kernels_size(), 3);
    EXPECT_DOUBLE_EQ(ks->window().g_min_us(), 7);
    EXPECT_DOUBLE_EQ(ks->window().g_max_us(), 200);
    const double log_dts[3] = {std::log(0.1), std::log(0.2), std::log(0.5)};
    for (int k = 0; k < 3; ++k) {
      const auto& kernel = ks->kernels(k);
      ASSERT_TRUE(kernel.has_continuous());
      const auto& c = kernel.continuous();
      EXPECT_EQ(c.a_size(), 14);
      EXPECT_EQ(c.c_size(), 14);
      EXPECT_NEAR(c.log_dt(), log_dts[k], 1e-5);
      for (int n = 0; n < c.a_size(); ++n) {
        EXPECT_DOUBLE_EQ(c.a(n).re(), -0.5);
        EXPECT_NEAR(c.a(n).im(), M_PI * n, 1e-4);
      }
      EXPECT_FALSE(kernel.name().empty());
      EXPECT_LE(kernel.name().size(), 64u);
    }
  }
}

TEST(KernelFile, BothExamplesShareCAndOnlyTheSecondIsQuantized) {
  auto full = load_kernel_set((kKernels / "example.json").string());
  auto q2 = load_kernel_set((kKernels / "example-2bit.json").string());
  ASSERT_TRUE(full && q2);
  for (int k = 0; k < 3; ++k) {
    EXPECT_FALSE(full->kernels(k).has_quantization());
    const auto& q = q2->kernels(k).quantization();
    EXPECT_EQ(q.bits(), 2u);
    EXPECT_DOUBLE_EQ(q.f_scale_a(), 1.0);
    EXPECT_DOUBLE_EQ(q.f_scale_c(), 1.0);
    for (int n = 0; n < 14; ++n) {
      EXPECT_EQ(full->kernels(k).continuous().c(n).re(), q2->kernels(k).continuous().c(n).re());
      EXPECT_EQ(full->kernels(k).continuous().c(n).im(), q2->kernels(k).continuous().c(n).im());
    }
    // The daemon rejects |A_bar| >= 1 after quantization: Re(q(a)) must stay negative.
    const double dt = std::exp(q2->kernels(k).continuous().log_dt());
    for (const auto& a : q2->kernels(k).continuous().a()) {
      const std::complex<double> qa(quantize(a.re(), 2, 1.0), quantize(a.im(), 2, 1.0));
      EXPECT_DOUBLE_EQ(qa.real(), -1.0);
      EXPECT_LT(std::abs(std::exp(dt * qa)), 1.0);
    }
  }
  // The three kernels draw different C.
  EXPECT_NE(full->kernels(0).continuous().c(0).re(), full->kernels(1).continuous().c(0).re());
}

TEST(KernelFile, MisspelledFieldIsAnErrorNamingItAndThePath) {
  TempDir dir;
  const auto path = dir.path() / "typo.json";
  write_text(path, R"({"kernels": [{"name": "k", "continuous": {"a": [{"re": -0.5, "im": 0}],
                       "lgoDt": -3, "c": [{"re": 1, "im": 0}]}}]})");
  auto ks = load_kernel_set(path.string());
  ASSERT_FALSE(ks.has_value());
  EXPECT_TRUE(ks.error().starts_with(path.string() + ": ")) << ks.error();
  EXPECT_NE(ks.error().find("lgoDt"), std::string::npos) << ks.error();
}

TEST(KernelFile, ProtoFieldNamesAreAcceptedToo) {
  TempDir dir;
  const auto path = dir.path() / "snake.json";
  write_text(path, R"({"kernels": [{"continuous": {"a": [{"re": -0.5}], "log_dt": -3,
                       "c": [{"re": 1}]}}], "window": {"g_min_uS": 10, "g_max_uS": 150}})");
  auto ks = load_kernel_set(path.string());
  ASSERT_TRUE(ks.has_value()) << ks.error();
  EXPECT_DOUBLE_EQ(ks->kernels(0).continuous().log_dt(), -3);
  EXPECT_DOUBLE_EQ(ks->window().g_min_us(), 10);
  EXPECT_EQ(window_uS(*ks), std::make_pair(10.0, 150.0));
  EXPECT_EQ(window_uS(v1::KernelSet{}), std::make_pair(7.0, 200.0));
}

TEST(KernelFile, MissingFileAndBrokenJsonAreErrorsNamingThePath) {
  TempDir dir;
  const auto missing = dir.path() / "nope.json";
  auto ks = load_kernel_set(missing.string());
  ASSERT_FALSE(ks.has_value());
  EXPECT_TRUE(ks.error().starts_with(missing.string() + ": cannot open")) << ks.error();

  const auto broken = dir.path() / "broken.json";
  write_text(broken, R"({"kernels": [)");
  ks = load_kernel_set(broken.string());
  ASSERT_FALSE(ks.has_value());
  EXPECT_TRUE(ks.error().starts_with(broken.string() + ": ")) << ks.error();

  ks = load_kernel_set(dir.path().string());
  ASSERT_FALSE(ks.has_value());
  EXPECT_NE(ks.error().find("is a directory"), std::string::npos) << ks.error();
}

// ---- the deployment map ----

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  std::array<uint8_t, 3> at(int x, int y) const {
    const size_t i = (static_cast<size_t>(y) * width + x) * 3;
    return {rgb[i], rgb[i + 1], rgb[i + 2]};
  }
};

Image read_png(const std::filesystem::path& path) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  Image out;
  if (!png_image_begin_read_from_file(&img, path.c_str())) return out;
  img.format = PNG_FORMAT_RGB;
  out.rgb.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.rgb.data(), 0, nullptr)) return {};
  out.width = static_cast<int>(img.width);
  out.height = static_cast<int>(img.height);
  return out;
}

// Width and height from the IHDR chunk (bytes 16..23, big-endian).
std::pair<uint32_t, uint32_t> ihdr_size(const std::filesystem::path& path) {
  const std::string bytes = testing::read_file(path);
  if (bytes.size() < 24) return {0, 0};
  auto be32 = [&](size_t o) {
    return (uint32_t{static_cast<uint8_t>(bytes[o])} << 24) |
           (uint32_t{static_cast<uint8_t>(bytes[o + 1])} << 16) |
           (uint32_t{static_cast<uint8_t>(bytes[o + 2])} << 8) |
           uint32_t{static_cast<uint8_t>(bytes[o + 3])};
  };
  return {be32(16), be32(20)};
}

KernelPanel panel(double fill_uS, int states = 14) {
  KernelPanel k;
  k.g_uS = Eigen::MatrixXd::Constant(64, 64, fill_uS);
  k.states = states;
  return k;
}

TEST(KernelMap, SizeIsPanelsTimesArrayPlusGapsAndStuckDevicesAreOutlined) {
  TempDir dir;
  std::vector<KernelPanel> panels = {panel(7), panel(100), panel(200)};
  panels[1].stuck_high = {{10, 20}};
  panels[2].stuck_low = {{50, 3}};
  const auto path = dir.path() / "map.png";
  const KernelMapOptions o{.g_min_uS = 7, .g_max_uS = 200, .cell_px = 8};
  auto w = write_kernel_map_png(path.string(), panels, o);
  ASSERT_TRUE(w.has_value()) << w.error();

  const KernelMapLayout l = kernel_map_layout(panels, o);
  const int cell = 8, gap = 2 * cell, bar = 3 * cell;
  EXPECT_EQ(l.gap, gap);
  EXPECT_EQ(l.width(), 3 * 64 * cell + 4 * gap + bar);  // margin + panels + gaps + colour bar
  EXPECT_EQ(l.height(), 64 * cell + 2 * gap);
  const auto [png_w, png_h] = ihdr_size(path);
  EXPECT_EQ(png_w, static_cast<uint32_t>(3 * 64 * cell + 4 * gap + bar));
  EXPECT_EQ(png_h, static_cast<uint32_t>(64 * cell + 2 * gap));

  const Image img = read_png(path);
  ASSERT_EQ(img.width, static_cast<int>(png_w));
  ASSERT_EQ(img.height, static_cast<int>(png_h));
  // Stuck-high at (10, 20) of panel 1: its outline is red, its centre the heat-map colour.
  const int x1 = l.panel_x(1) + 20 * cell, y1 = l.top() + 10 * cell;
  EXPECT_EQ(img.at(x1, y1), kStuckHighRgb);
  EXPECT_EQ(img.at(x1 + cell - 1, y1 + cell / 2), kStuckHighRgb);
  EXPECT_EQ(img.at(x1 + cell / 2, y1 + cell / 2), viridis((100.0 - 7) / 193));
  // Stuck-low at (50, 3) of panel 2: blue.
  EXPECT_EQ(img.at(l.panel_x(2) + 3 * cell, l.top() + 50 * cell + cell / 2), kStuckLowRgb);
  // No outline where nothing is stuck: (10, 20) of panel 0 (away from region lines).
  EXPECT_EQ(img.at(l.panel_x(0) + 20 * cell, l.top() + 10 * cell + cell / 2), viridis(0));
  // The gap between panels is white; the colour bar's top is viridis(1).
  EXPECT_EQ(img.at(l.panel_x(1) - 1, l.top() + 30 * cell), (std::array<uint8_t, 3>{255, 255, 255}));
  EXPECT_EQ(img.at(l.panel_x(3) + 2, l.top()), viridis(1));
}

TEST(KernelMap, AFramedMapAddsTitleAxesAndLegendAroundTheSamePixels) {
  TempDir dir;
  std::vector<KernelPanel> panels = {panel(7), panel(100)};
  panels[1].stuck_high = {{10, 20}};
  panels[0].caption = "array 0: kernel 0, 14 states";
  KernelMapOptions bare{.g_min_uS = 7, .g_max_uS = 200, .cell_px = 8};
  KernelMapOptions framed = bare;
  framed.framed = true;
  framed.title = "dep-0123456789ab: read-back, uS";
  const auto bare_path = dir.path() / "bare.png", framed_path = dir.path() / "framed.png";
  ASSERT_TRUE(write_kernel_map_png(bare_path.string(), panels, bare).has_value());
  auto w = write_kernel_map_png(framed_path.string(), panels, framed);
  ASSERT_TRUE(w.has_value()) << w.error();
  const KernelMapLayout lb = kernel_map_layout(panels, bare);
  const KernelMapLayout lf = kernel_map_layout(panels, framed);
  // The frame's margins hold the title, the axes, the colour bar's scale and the legend.
  EXPECT_GT(lf.frame_left, 0);
  EXPECT_GT(lf.frame_top, 0);
  EXPECT_GT(lf.frame_bottom, 0);
  const Image b = read_png(bare_path), f = read_png(framed_path);
  ASSERT_EQ(f.width, lf.width());
  ASSERT_EQ(f.height, lf.height());
  EXPECT_GT(f.width, b.width);
  EXPECT_GT(f.height, b.height);
  // Every device pixel of both panels is the same, shifted by the frame.
  int differ = 0;
  for (int p = 0; p < 2; ++p) {
    for (int y = 0; y < 64 * lb.cell; ++y) {
      for (int x = 0; x < 64 * lb.cell; ++x) {
        differ += b.at(lb.panel_x(p) + x, lb.top() + y) != f.at(lf.panel_x(p) + x, lf.top() + y);
      }
    }
  }
  EXPECT_EQ(differ, 0);
  // Something is drawn in the title margin (text is not white everywhere).
  int inked = 0;
  for (int y = 0; y < lf.frame_top; ++y) {
    for (int x = 0; x < f.width; ++x) {
      inked += f.at(x, y) != std::array<uint8_t, 3>{255, 255, 255};
    }
  }
  EXPECT_GT(inked, 20);
}

TEST(KernelMap, RegionLinesAndTicksFollowTheRemappedRowsAndColumns) {
  TempDir dir;
  KernelPanel k = panel(7, 2);  // N = 2: logical rows 0..11 used, output columns 8..11
  k.row_of_logical.resize(64);
  k.col_of_logical.resize(64);
  for (int i = 0; i < 64; ++i) k.row_of_logical[i] = k.col_of_logical[i] = i;
  std::swap(k.row_of_logical[0], k.row_of_logical[40]);  // input row 0 on physical row 40
  std::swap(k.col_of_logical[9], k.col_of_logical[60]);  // output column 9 on physical column 60
  const auto path = dir.path() / "remapped.png";
  const KernelMapOptions o{.cell_px = 8};
  ASSERT_TRUE(write_kernel_map_png(path.string(), {k}, o).has_value());
  const Image img = read_png(path);
  ASSERT_GT(img.width, 0);
  const KernelMapLayout l = kernel_map_layout({k}, o);
  const int cell = l.cell, x0 = l.panel_x(0), y0 = l.top();
  const std::array<uint8_t, 3> white{255, 255, 255};
  auto left_tick = [&](int row) { return img.at(x0 - 4, y0 + row * cell + cell / 2); };
  auto top_tick = [&](int col) { return img.at(x0 + col * cell + cell / 2, y0 - 4); };
  EXPECT_EQ(left_tick(40), kTickRgb);
  EXPECT_EQ(left_tick(1), kTickRgb);
  EXPECT_EQ(left_tick(0), white);  // logical row 40 (a spare) is there now
  EXPECT_EQ(left_tick(5), white);  // a state row
  EXPECT_EQ(top_tick(60), kTickRgb);
  EXPECT_EQ(top_tick(8), kTickRgb);
  EXPECT_EQ(top_tick(9), white);
  EXPECT_EQ(top_tick(3), white);  // a state column
  // Physical row 40 carries an input row: the input region's line runs along its top edge.
  EXPECT_EQ(img.at(x0 + 2 * cell + cell / 2, y0 + 40 * cell), kRegionRgb);
  // Physical column 60 carries an output column: the output region's line on its left edge.
  EXPECT_EQ(img.at(x0 + 60 * cell, y0 + 5 * cell + cell / 2), kRegionRgb);
  // A spare cell far from every region keeps the heat-map colour.
  EXPECT_EQ(img.at(x0 + 30 * cell + cell / 2, y0 + 30 * cell + cell / 2), viridis(0));
}

TEST(KernelMap, BadIndicesAndMismatchedPanelsAreErrors) {
  TempDir dir;
  const auto path = (dir.path() / "bad.png").string();
  KernelPanel k = panel(7);
  k.row_of_logical = {0, 1, 64};
  auto w = write_kernel_map_png(path, {k});
  ASSERT_FALSE(w.has_value());
  EXPECT_NE(w.error().find("row_of_logical[2] = 64"), std::string::npos) << w.error();

  KernelPanel small = panel(7, 2);
  small.g_uS.resize(32, 32);
  EXPECT_FALSE(write_kernel_map_png(path, {panel(7), small}).has_value());
  EXPECT_FALSE(write_kernel_map_png(path, {panel(7, 16)}).has_value());  // 4*16+4 > 64
  KernelPanel stuck = panel(7);
  stuck.stuck_high = {{64, 0}};
  EXPECT_FALSE(write_kernel_map_png(path, {stuck}).has_value());
  EXPECT_FALSE(write_kernel_map_png(path, {}).has_value());
  EXPECT_FALSE(write_kernel_map_png((dir.path() / "no/such/dir.png").string(), {panel(7)}));
}

TEST(KernelMap, PanelFromPlacementTakesItsArraysStuckDevices) {
  v1::Placement p;
  p.set_kernel(1);
  p.set_array(2);
  p.set_states(14);
  for (int i = 0; i < 64 * 64; ++i) {
    p.add_target_us(static_cast<float>(7 + i % 64));
    p.add_readback_us(static_cast<float>(8 + i / 64));
  }
  for (int i = 0; i < 64; ++i) {
    p.add_row_of_logical(63 - i);
    p.add_col_of_logical(i);
  }
  v1::FaultMap faults;
  auto add = [&](uint32_t array, uint32_t row, uint32_t col, const char* kind) {
    auto* f = faults.add_faults();
    f->set_array(array);
    f->set_row(row);
    f->set_col(col);
    f->set_kind(kind);
  };
  add(2, 1, 2, "stuck_high");
  add(2, 3, 4, "stuck_low");
  add(2, 5, 6, "slow");
  add(0, 7, 8, "stuck_high");

  auto k = kernel_panel(p, faults, false);
  ASSERT_TRUE(k.has_value()) << k.error();
  EXPECT_DOUBLE_EQ(k->g_uS(5, 0), 13);  // read-back, row-major
  EXPECT_EQ(k->stuck_high, (std::vector<std::pair<int, int>>{{1, 2}}));
  EXPECT_EQ(k->stuck_low, (std::vector<std::pair<int, int>>{{3, 4}}));
  EXPECT_EQ(k->row_of_logical.front(), 63);
  EXPECT_EQ(k->states, 14);
  auto t = kernel_panel(p, faults, true);
  ASSERT_TRUE(t.has_value());
  EXPECT_DOUBLE_EQ(t->g_uS(5, 3), 10);  // targets

  p.clear_readback_us();
  auto none = kernel_panel(p, faults, false);
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().find("--targets"), std::string::npos) << none.error();
}

TEST(DeploymentReport, NamesKernelArrayFidelityAndFaults) {
  v1::Deployment d;
  d.set_id("dep-0123456789ab");
  d.set_name("example");
  d.set_state("degraded");
  d.set_message("kernel 0: nrmse 0.2 > 0.1");
  d.mutable_kernel_set()->add_kernels()->set_name("fast");
  auto* p = d.add_placements();
  p->set_kernel(0);
  p->set_array(2);
  p->set_states(14);
  p->set_nrmse(0.2);
  p->set_nrmse_naive_predicted(4.797e15);  // a diverging kernel: significant digits
  p->set_faults(3);
  p->set_faults_avoided(2);
  p->set_faults_compensated(1);
  p->mutable_programming()->set_within_tol_pct(99.5);
  p->mutable_programming()->set_rounds(29);
  const std::string r = format_deployment(d);
  EXPECT_NE(r.find("deployment dep-0123456789ab \"example\": degraded"), std::string::npos) << r;
  EXPECT_NE(r.find("why: kernel 0: nrmse 0.2 > 0.1"), std::string::npos) << r;
  EXPECT_NE(r.find("kernel 0 \"fast\" -> array 2: 14 states"), std::string::npos) << r;
  EXPECT_NE(r.find("0.2000 read-back, 0.0000 predicted, 4.797e+15 naive"), std::string::npos) << r;
  EXPECT_NE(r.find("3 recorded: 2 avoided, 1 compensated, 0 residual"), std::string::npos) << r;
  EXPECT_NE(r.find("99.50 % within tol in 29 rounds"), std::string::npos) << r;
  EXPECT_NE(r.find("window 7..200 uS"), std::string::npos) << r;
}

}  // namespace
}  // namespace xbar::client
