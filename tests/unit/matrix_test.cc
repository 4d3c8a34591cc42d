// The matrix library (compute/matrix, docs/matrices.md): quantization, the checks, tiling,
// placement around stuck devices, and multiplication on the in-process twin.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/matrix/deploy.h"
#include "xbar/matrix/multiply.h"

namespace xbar::matrix {
namespace {

Eigen::MatrixXd randn(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z;
  return Eigen::MatrixXd::NullaryExpr(rows, cols, [&] { return z(rng); });
}

TEST(MatrixQuantization, UniformIsEq3WithTheRange) {
  MatrixSpec s;
  s.w = Eigen::MatrixXd{{0.26, -0.74, 2.0}, {-3.0, 0.0, 0.49}};
  s.quant.bits = 3;  // n = 3 levels per sign
  s.quant.range = 1.5;
  const Eigen::MatrixXd q = quantize(s);
  EXPECT_DOUBLE_EQ(q(0, 0), 0.5);   // 0.26 * 3 / 1.5 = 0.52 -> 1
  EXPECT_DOUBLE_EQ(q(0, 1), -0.5);  // -1.48 -> -1
  EXPECT_DOUBLE_EQ(q(0, 2), 1.5);   // clipped at the range
  EXPECT_DOUBLE_EQ(q(1, 0), -1.5);
  EXPECT_DOUBLE_EQ(q(1, 2), 0.5);  // 0.98 -> 1
}

TEST(MatrixQuantization, LevelTablesPickTheNearestLevelPerColumn) {
  MatrixSpec s;
  s.w = Eigen::MatrixXd{{0.1, 0.1}, {-0.9, 0.62}};
  s.quant.levels = {{-1.0, 0.0, 0.3}, {-0.5, 0.5, 0.7}};
  const Eigen::MatrixXd q = quantize(s);
  EXPECT_DOUBLE_EQ(q(0, 0), 0.0);
  EXPECT_DOUBLE_EQ(q(1, 0), -1.0);
  EXPECT_DOUBLE_EQ(q(0, 1), 0.5);
  EXPECT_DOUBLE_EQ(q(1, 1), 0.7);
  EXPECT_DOUBLE_EQ(effective_range(s), 1.0);
}

TEST(MatrixValidate, NamesTheFieldAndTheAllowedRange) {
  MatrixSpec s;
  s.w = Eigen::MatrixXd::Ones(3, 2);
  EXPECT_TRUE(validate(s, 1, 250));
  auto bad = [&](MatrixSpec t, const std::string& field) {
    auto v = validate(t, 1, 250);
    ASSERT_FALSE(v) << field;
    EXPECT_NE(v.error().message.find(field), std::string::npos) << v.error().message;
  };
  MatrixSpec nan = s;
  nan.w(2, 1) = std::nan("");
  bad(nan, "w[2][1]");
  MatrixSpec empty = s;
  empty.w.resize(0, 2);
  bad(empty, "at least 1 row");
  MatrixSpec unsorted = s;
  unsorted.quant.levels = {{0.0, -1.0}};
  bad(unsorted, "quantization.tables[0].levels[1]");
  MatrixSpec dup = s;
  dup.quant.levels = {{0.0, 0.0}};
  bad(dup, "sorted ascending and distinct");
  MatrixSpec outside = s;
  outside.quant.range = 1;
  outside.quant.levels = {{-1.0, 2.0}};
  bad(outside, "outside the window");
  MatrixSpec count = s;
  count.quant.levels = {{0.0}, {1.0}, {2.0}};
  bad(count, "3 tables, allowed 1 (the whole matrix) or 2");
  MatrixSpec bits = s;
  bits.quant.bits = 1;
  bad(bits, "quantization.bits = 1");
  MatrixSpec window = s;
  window.window.g_max_uS = 300;
  bad(window, "g_max_uS = 300");
}

TEST(MatrixTiles, PicksTheOrientationAndRefusesWhatTheChipCannotHold) {
  auto a = plan_tiles(64, 32, 3, 64, 64);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->orientation, Orientation::kColumnPairs);
  EXPECT_EQ(a->tiles.size(), 1u);
  auto b = plan_tiles(32, 64, 3, 64, 64);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->orientation, Orientation::kRowPairs);
  auto c = plan_tiles(100, 40, 3, 64, 64);  // 2 x 2 column-pair tiles, or 4 x 1 row pairs
  EXPECT_FALSE(c);
  auto d = plan_tiles(150, 30, 3, 64, 64);  // 3 tiles of 50 x 30
  ASSERT_TRUE(d);
  ASSERT_EQ(d->tiles.size(), 3u);
  EXPECT_EQ(d->tiles[1].in_begin, 50);
  EXPECT_EQ(d->tiles[2].in_count, 50);
  auto e = plan_tiles(200, 200, 3, 64, 64);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("64 x 96 or 192 x 32"), std::string::npos) << e.error().message;
}

TEST(MatrixTiles, WeightsRoundTripThroughTheDifferentialLayout) {
  const Eigen::MatrixXd w = randn(20, 10, 3);
  for (Orientation o : {Orientation::kColumnPairs, Orientation::kRowPairs}) {
    const Tile t{0, 20, 0, 10};
    const Eigen::MatrixXd g = 2.0 + 30.0 * tile_parts(w, t, o, 64, 64).array();
    std::vector<int> id(64);
    std::iota(id.begin(), id.end(), 0);
    EXPECT_LT(relative_error(tile_weights(g, t, o, id, id, 30.0), w), 1e-12);
  }
}

TEST(MatrixPlacement, MovesAStuckDeviceOntoASpareAndCompensatesWhereItCannot) {
  const Eigen::MatrixXd w = randn(40, 16, 5);  // 40 rows, 32 columns used: spares on both
  const Tile t{0, 40, 0, 16};
  const Window win;
  const Eigen::MatrixXd part = tile_parts(w, t, Orientation::kColumnPairs, 64, 64);
  const double scale = (win.g_max_uS - win.g_min_uS) / w.cwiseAbs().maxCoeff();
  const std::vector<kernel::StuckDevice> stuck = {{3, 4, true, 450.0}, {10, 7, false, 0.5}};
  const TilePlacement naive =
      place_tile(part, t, Orientation::kColumnPairs, win, scale, stuck, {.naive = true});
  const TilePlacement tp = place_tile(part, t, Orientation::kColumnPairs, win, scale, stuck, {});
  EXPECT_GT(naive.predicted_error, 0.05);
  EXPECT_LT(tp.predicted_error, 1e-9);
  // The stuck-high device can only be avoided (no partner reaches 450 uS); the stuck-low one is
  // avoided or compensated by its partner, both cost nothing.
  EXPECT_GE(tp.avoided, 1);
  EXPECT_EQ(tp.avoided + tp.compensated, 2);
  EXPECT_EQ(tp.residual, 0);
  EXPECT_TRUE(tp.skip(3, 4));
}

TEST(MatrixMultiply, OnTheIdealTwinWithinTwoPercentOfTheQuantizedProduct) {
  auto board = Board::open("sim:profile=ideal,seed=2");
  ASSERT_TRUE(board) << board.error().message;
  Board& b = **board;
  MatrixSpec spec;
  spec.w = randn(48, 24, 7);
  spec.quant.bits = 4;
  const Eigen::MatrixXd wq = quantize(spec);
  const double scale = (spec.window.g_max_uS - spec.window.g_min_uS) / effective_range(spec);
  auto plan = plan_tiles(48, 24, 3, 64, 64);
  ASSERT_TRUE(plan);
  const auto tiles =
      assign_tiles(*plan, wq, spec.window, scale, 64, 64, {{}, {}, {}}, {0, 1, 2}, {});
  MatrixRun run{48, 24, plan->orientation, scale, {}, {}, {}};
  for (const TileAssignment& a : tiles) {
    auto res = program_verify(b, a.array, a.placement.target_uS, ProgramVerifyConfig{});
    ASSERT_TRUE(res) << res.error().message;
    const Tile& t = plan->tiles[static_cast<size_t>(a.tile)];
    auto rb = tile_readback(b.info(), t, plan->orientation, a.placement.row_of, a.placement.col_of,
                            res->final_uS, wq, scale, true);
    ASSERT_TRUE(rb);
    run.tiles.push_back({t, a.array, a.placement.row_of, a.placement.col_of, rb->gain_index,
                         rb->codes_per_uS, rb->fixes});
  }
  ASSERT_TRUE(calibrate(b, run, wq, randn(64, 48, 9)));
  const Eigen::MatrixXd x = randn(100, 48, 11);
  auto y = multiply(b, run, x, {});
  ASSERT_TRUE(y) << y.error().message;
  EXPECT_LT(relative_error(*y, x * wq), 0.02);  // 0.7 % measured
  // Signed inputs and a fixed input range clip what lies beyond it.
  auto clipped = multiply(b, run, x, {.input_range = 0.5});
  ASSERT_TRUE(clipped);
  EXPECT_GT(relative_error(*clipped, x * wq), 0.2);
}

}  // namespace
}  // namespace xbar::matrix
