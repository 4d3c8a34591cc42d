// Program-verify against the twin: convergence, abandonment of stuck devices, cancellation,
// and validation that leaves the array untouched.
#include "xbar/drivers/program_verify.h"

#include <gtest/gtest.h>

#include <random>

#include "random_targets.h"
#include "xbar/drivers/board.h"

namespace xbar {
namespace {

using testing::random_targets;

std::unique_ptr<Board> open(const std::string& uri) {
  auto b = Board::open(uri);
  EXPECT_TRUE(b.has_value()) << b.error().message;
  return std::move(*b);
}

TEST(ProgramVerify, IdealChipConvergesEverywhereAndMatchesGroundTruth) {
  auto b = open("sim:profile=ideal,seed=2");
  const Eigen::MatrixXd target = random_targets(1);
  std::vector<ProgramVerifyProgress> seen;
  auto r = program_verify(*b, 1, target, {}, [&](const ProgramVerifyProgress& p) {
    seen.push_back(p);
    return true;
  });
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->within_tolerance(4.0), 100.0);
  EXPECT_LE(r->rounds, 10);
  // The first read, then per round a PULSE_BATCH and a READ (a round in which every pending
  // device only waits for another read is a READ alone).
  EXPECT_LE(r->transactions, 1 + 2 * r->rounds);
  EXPECT_GE(r->transactions, 1 + r->rounds);
  const Eigen::MatrixXd truth = *b->sim_ground_truth(1);
  EXPECT_LE((truth - target).cwiseAbs().maxCoeff(), 4.0);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().round, 0);
  EXPECT_EQ(seen.front().pending, 4096);
  EXPECT_EQ(seen.back().pending, 0);
  // Other arrays were not touched.
  EXPECT_EQ(b->status()->pulses_applied, uint64_t(r->set_pulses.sum() + r->reset_pulses.sum()));
}

TEST(ProgramVerify, TypicalChipReachesMostDevicesAndAbandonsStuckOnes) {
  auto b = open("sim:profile=typical,seed=3,noise_seed=4");
  const Eigen::MatrixXd target = random_targets(2);
  auto r = program_verify(*b, 0, target, {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_LE(r->rounds, 29);
  EXPECT_LE(r->transactions, 60);  // the budget: <= 30 rounds, <= 60 transactions
  const auto faults = *b->sim_fault_map(0);
  (void)b->sim_clock(10'000'000'000ull);
  const Eigen::MatrixXd truth = *b->sim_ground_truth(0);
  int healthy = 0, ok = 0, ok_est = 0, stuck = 0, stuck_abandoned = 0;
  for (int i = 0; i < 4096; ++i) {
    const int row = i / 64, col = i % 64;
    const auto f = faults[static_cast<size_t>(i)];
    if (f == wire::FaultKind::kStuckHigh || f == wire::FaultKind::kStuckLow) {
      ++stuck;
      stuck_abandoned += r->outcome(row, col) == static_cast<uint8_t>(DeviceOutcome::kAbandoned);
      continue;
    }
    ++healthy;
    ok += std::abs(truth(row, col) - target(row, col)) <= 4.0;
    ok_est += std::abs(r->final_uS(row, col) - target(row, col)) <= 4.0;
  }
  // Measured 99.4-99.7 % over chip seeds 1-8 and 20-29 (bench/RESULTS.md); the issue asks
  // 99.5 % on average. One seed here, so the floor leaves room for the seed's luck.
  EXPECT_GE(100.0 * ok / healthy, 99.0);
  // The host's own estimate (mean of the reads since the last pulse) agrees with the truth.
  EXPECT_NEAR(100.0 * ok_est / healthy, 100.0 * ok / healthy, 0.5);
  ASSERT_GT(stuck, 10);
  // Stuck devices whose target differs from their stuck value are given up on, not pulsed forever.
  EXPECT_GE(stuck_abandoned, stuck * 8 / 10);
}

TEST(ProgramVerify, CancellationStopsAfterTheRoundAndReportsState) {
  auto b = open("sim:profile=typical,seed=5");
  auto r = program_verify(*b, 2, random_targets(3), {},
                          [](const ProgramVerifyProgress& p) { return p.round < 2; });
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->cancelled);
  EXPECT_EQ(r->rounds, 2);
  EXPECT_EQ(r->transactions, 5);  // first READ + 2 x (PULSE_BATCH + READ)
  // The reported pulses are exactly those the board applied.
  EXPECT_EQ(b->status()->pulses_applied, uint64_t(r->set_pulses.sum() + r->reset_pulses.sum()));
}

TEST(ProgramVerify, BadInputNamesTheFieldAndLeavesTheArrayUntouched) {
  auto b = open("sim:profile=typical,seed=6");
  Eigen::MatrixXd t = random_targets(4);
  auto expect_rejected = [&](const Eigen::MatrixXd& target, const ProgramVerifyConfig& cfg,
                             int array, const std::string& text) {
    auto r = program_verify(*b, array, target, cfg);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
  };
  Eigen::MatrixXd high = t;
  high(5, 7) = 900;
  expect_rejected(high, {}, 0, "target[5][7] = 900 uS: allowed 1..250 uS");
  Eigen::MatrixXd nan = t;
  nan(0, 0) = std::nan("");
  expect_rejected(nan, {}, 0, "target[0][0] = nan");
  expect_rejected(Eigen::MatrixXd::Constant(64, 63, 50), {}, 0,
                  "target: 64x63 matrix, the array is 64x64");
  ProgramVerifyConfig neg;
  neg.tol_uS = -1;
  expect_rejected(t, neg, 0, "tol_uS = -1: allowed (0, 100]");
  expect_rejected(t, {}, 3, "array = 3: allowed 0..2");
  EXPECT_EQ(b->status()->pulses_applied, 0u);
}

}  // namespace
}  // namespace xbar
