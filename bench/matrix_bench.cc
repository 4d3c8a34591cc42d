// General matrices on the twin, at the driver level (docs/matrices.md; results in
// bench/RESULTS.md): a random N(0,1) matrix quantized, placed around the stuck devices (remap
// on or off), programmed, calibrated, and multiplied by random inputs. Reports the median
// relative error ||y_board - x W_q|| / ||x W_q|| (the chip's error) and against x W (with the
// quantization), and the multiply throughput.
//
//   matrix_bench [--rows 64] [--cols 32] [--bits 4] [--inputs 1000] [--seeds 1]
//                [--profiles ideal,imssa,typical] [--repeats 1] [--tol 4] [--fix 5]
//                [--gmin 2] [--gmax 250] [--quant uniform|kmeans]
//
// --quant kmeans: a level table of 2^bits - 1 levels (as many as uniform has) learned from the
// matrix's own values by 1-D k-means (Lloyd's algorithm from the uniform grid), the way a
// learned non-uniform quantizer (Q-MambaIR) places levels where the weights are.
//
// The stuck devices come from the twin's fault map (what a fault scan records; the deploy
// through xbard takes them from the chip record).
#include <fmt/format.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "twin_faults.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/remap.h"
#include "xbar/matrix/deploy.h"
#include "xbar/matrix/multiply.h"

using namespace xbar;
using namespace xbar::matrix;

namespace {

struct Args {
  int rows = 64, cols = 32, bits = 4, inputs = 1000, seeds = 1, repeats = 1;
  double tol_uS = 2.0, fix_uS = kFixThreshold_uS, g_min_uS = 2, g_max_uS = 250;
  std::string quant = "uniform";  // or kmeans: learned levels (1-D k-means on the weights)
  std::vector<std::string> profiles = {"ideal", "imssa", "typical"};
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t comma = s.find(',', at);
    out.push_back(s.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--rows")
      a.rows = std::stoi(v);
    else if (k == "--cols")
      a.cols = std::stoi(v);
    else if (k == "--bits")
      a.bits = std::stoi(v);
    else if (k == "--inputs")
      a.inputs = std::stoi(v);
    else if (k == "--seeds")
      a.seeds = std::stoi(v);
    else if (k == "--repeats")
      a.repeats = std::stoi(v);
    else if (k == "--profiles")
      a.profiles = split(v);
    else if (k == "--tol")
      a.tol_uS = std::stod(v);
    else if (k == "--fix")
      a.fix_uS = std::stod(v);
    else if (k == "--gmin")
      a.g_min_uS = std::stod(v);
    else if (k == "--gmax")
      a.g_max_uS = std::stod(v);
    else if (k == "--quant")
      a.quant = v;
  }
  return a;
}

// 1-D k-means of the matrix's values: k levels, sorted, from the uniform grid over +-max|w|.
std::vector<double> kmeans_levels(const Eigen::MatrixXd& w, int k) {
  const double f = w.cwiseAbs().maxCoeff();
  std::vector<double> c(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) c[static_cast<size_t>(i)] = -f + 2 * f * i / (k - 1);
  for (int iter = 0; iter < 100; ++iter) {
    std::vector<double> sum(c.size(), 0), n(c.size(), 0);
    for (Eigen::Index i = 0; i < w.size(); ++i) {
      const double x = w.data()[i];
      size_t best = 0;
      for (size_t j = 1; j < c.size(); ++j)
        if (std::abs(x - c[j]) < std::abs(x - c[best])) best = j;
      sum[best] += x;
      n[best] += 1;
    }
    for (size_t j = 0; j < c.size(); ++j)
      if (n[j] > 0) c[j] = sum[j] / n[j];
  }
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Outcome {
  double err_q = 0, err_f = 0, readback = 0, vectors_per_s = 0;
  int fixes = 0;
};

// One deploy and its multiplies.
Outcome run_one(const Args& a, const std::string& profile, int seed, bool remap) {
  auto board =
      Board::open(fmt::format("sim:profile={},seed={},noise_seed={}", profile, seed, seed));
  if (!board) throw std::runtime_error(board.error().message);
  Board& b = **board;
  std::mt19937 rng(static_cast<uint32_t>(1000 + seed));
  std::normal_distribution<double> z;
  MatrixSpec spec;
  spec.w = Eigen::MatrixXd::NullaryExpr(a.rows, a.cols, [&] { return z(rng); });
  spec.quant.bits = a.bits;
  if (a.quant == "kmeans") spec.quant.levels = {kmeans_levels(spec.w, (1 << a.bits) - 1)};
  spec.window = {a.g_min_uS, a.g_max_uS};
  const Eigen::MatrixXd wq = quantize(spec);
  const double scale = (spec.window.g_max_uS - spec.window.g_min_uS) / effective_range(spec);
  auto plan = plan_tiles(a.rows, a.cols, b.info().arrays, b.info().rows, b.info().cols);
  if (!plan) throw std::runtime_error(plan.error().message);
  PlaceOptions popt;
  popt.naive = !remap;
  std::vector<int> free;
  for (int i = 0; i < b.info().arrays; ++i) free.push_back(i);
  const auto tiles = assign_tiles(*plan, wq, spec.window, scale, b.info().rows, b.info().cols,
                                  bench::twin_stuck_devices(b), free, popt);
  MatrixRun run{a.rows, a.cols, plan->orientation, scale, {}, {}, {}};
  Outcome o;
  for (const TileAssignment& t : tiles) {
    ProgramVerifyConfig cfg;
    cfg.tol_uS = a.tol_uS;
    cfg.device_tol_uS = kernel::device_tolerance(t.placement.target_uS, cfg.tol_uS,
                                                 cfg.relax_mid_lo_uS, cfg.relax_mid_hi_uS);
    auto res = program_verify(b, t.array, t.placement.target_uS, cfg, {}, &t.placement.skip);
    if (!res) throw std::runtime_error(res.error().message);
    const Tile& tile = plan->tiles[static_cast<size_t>(t.tile)];
    auto rb = tile_readback(b.info(), tile, plan->orientation, t.placement.row_of,
                            t.placement.col_of, res->final_uS, wq, scale, remap, a.fix_uS);
    if (!rb) throw std::runtime_error(rb.error().message);
    o.readback = std::max(o.readback, rb->error);
    o.fixes += static_cast<int>(rb->fixes.size());
    run.tiles.push_back({tile, t.array, t.placement.row_of, t.placement.col_of, rb->gain_index,
                         rb->codes_per_uS, rb->fixes});
  }
  const Eigen::MatrixXd xcal = Eigen::MatrixXd::NullaryExpr(64, a.rows, [&] { return z(rng); });
  if (auto c = calibrate(b, run, wq, xcal); !c) throw std::runtime_error(c.error().message);
  const Eigen::MatrixXd x = Eigen::MatrixXd::NullaryExpr(a.inputs, a.rows, [&] { return z(rng); });
  const auto t0 = std::chrono::steady_clock::now();
  auto y = multiply(b, run, x, {.input_range = 0, .repeats = a.repeats, .calibrated = true});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!y) throw std::runtime_error(y.error().message);
  o.vectors_per_s = a.inputs / s;
  std::vector<double> eq, ef;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    const Eigen::RowVectorXd yq = x.row(i) * wq, yf = x.row(i) * spec.w;
    eq.push_back((y->row(i) - yq).norm() / yq.norm());
    ef.push_back((y->row(i) - yf).norm() / yf.norm());
  }
  o.err_q = median(eq);
  o.err_f = median(ef);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  fmt::print(
      "# {} x {} N(0,1), {}-bit {}, {} inputs N(0,1), repeats {}, window {}..{} uS, tol "
      "{} uS\n",
      a.rows, a.cols, a.bits, a.quant, a.inputs, a.repeats, a.g_min_uS, a.g_max_uS, a.tol_uS);
  fmt::print("{:<8} {:>5} {:>6} {:>11} {:>11} {:>10} {:>6} {:>10}\n", "profile", "seed", "remap",
             "median e_q", "median e_f", "readback", "fixes", "vectors/s");
  for (const std::string& p : a.profiles) {
    for (int seed = 1; seed <= a.seeds; ++seed) {
      for (bool remap : {true, false}) {
        const Outcome o = run_one(a, p, seed, remap);
        fmt::print("{:<8} {:>5} {:>6} {:>10.2f}% {:>10.2f}% {:>9.2f}% {:>6} {:>10.0f}\n", p, seed,
                   remap ? "on" : "off", 100 * o.err_q, 100 * o.err_f, 100 * o.readback, o.fixes,
                   o.vectors_per_s);
      }
    }
  }
}
