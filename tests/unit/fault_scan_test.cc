// Fault scan against the twin's ground truth (SIM_FAULT_MAP / SIM_GROUND_TRUTH): detection on
// imssa / typical / harsh chips, the restore, the confirm pass, the read-only quick check,
// findings from program-verify, and validation that leaves the array untouched.
#include "xbar/drivers/fault_scan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <tuple>

#include "random_targets.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"

namespace xbar {
namespace {

using wire::FaultKind;

std::unique_ptr<Board> open(const std::string& uri) {
  auto b = Board::open(uri);
  EXPECT_TRUE(b.has_value()) << b.error().message;
  return b ? std::move(*b) : nullptr;
}

using testing::random_targets;

bool is_stuck(FaultKind k) { return k == FaultKind::kStuckHigh || k == FaultKind::kStuckLow; }

uint64_t pulses_applied(Board& b) { return b.status()->pulses_applied; }

// ---- detection against ground truth, 2 chip seeds per profile ----

class Detection : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Detection, FindsEveryStuckDeviceAndFlagsAlmostNoHealthyOne) {
  const auto& [profile, seed] = GetParam();
  auto b = open("sim:profile=" + profile + ",seed=" + std::to_string(seed) +
                ",noise_seed=" + std::to_string(seed + 7));
  ASSERT_TRUE(b);
  const int array = seed % 3;
  const auto truth = *b->sim_fault_map(array);
  FaultScanConfig cfg;
  cfg.restore = false;  // the restore is tested below; detection is what is measured here
  auto r = scan_faults(*b, array, cfg);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r->destructive);
  EXPECT_TRUE(r->disturbed);
  EXPECT_FALSE(r->restore.has_value());

  int stuck = 0, found = 0, healthy = 0, false_pos = 0, slow = 0, slow_flagged = 0;
  double slow_min_set = 1e9, slow_max_reset = 0;
  for (int i = 0; i < 4096; ++i) {
    const int row = i / 64, col = i % 64;
    const FaultKind f = truth[static_cast<size_t>(i)];
    const auto got = static_cast<FaultKind>(r->fault(row, col));
    if (is_stuck(f)) {
      ++stuck;
      found += got == f;  // the right kind, not just "something"
      EXPECT_EQ(got, f) << "device (" << row << ", " << col << ")";
    } else {
      ++healthy;  // slow devices are healthy here: they move with long pulses
      false_pos += got != FaultKind::kNone;
      if (f == FaultKind::kSlow) {
        ++slow;
        slow_flagged += got != FaultKind::kNone;
        slow_min_set = std::min(slow_min_set, r->after_set_uS(row, col));
        slow_max_reset = std::max(slow_max_reset, r->after_reset_uS(row, col));
      }
    }
  }
  // The profiles promise faults; a chip without any would make this test vacuous.
  EXPECT_GE(stuck, profile == "imssa" ? 1 : profile == "typical" ? 15 : 120);
  EXPECT_EQ(found, stuck);
  EXPECT_LE(false_pos, healthy / 1000) << "false positives among " << healthy << " healthy";
  EXPECT_EQ(r->stuck_high + r->stuck_low, static_cast<int>(r->findings.size()));
  EXPECT_EQ(r->stuck_high + r->stuck_low, stuck + false_pos);
  // Slow devices move all the way with hard pulses: none is flagged, and the reads after the
  // hard pulses keep clear of both thresholds (a hard pulse's cycle-to-cycle spread, 15-25 % of
  // a ~250 uS step, is what brings any healthy device near one).
  EXPECT_EQ(slow_flagged, 0);
  if (slow > 0) {
    EXPECT_GT(slow_min_set, 2 * cfg.stuck_low_uS);
    EXPECT_LT(slow_max_reset, cfg.stuck_high_uS);
  }
  // SET batch + READ + RESET batch + READ (+ confirm batch + READ), remember READs, 2 STATUS.
  const int confirm = r->findings.empty() && r->rejected_candidates == 0 ? 0 : 2;
  EXPECT_EQ(r->transactions, 2 + cfg.remember_passes + 4 + confirm);
  EXPECT_EQ(pulses_applied(*b), static_cast<uint64_t>(r->pulses));
  EXPECT_EQ(r->pulses,
            2 * 4096 + (confirm ? r->stuck_high + r->stuck_low + r->rejected_candidates : 0));
  EXPECT_GT(r->board_time_us, 0);
  // Destructive: the healthy devices are left hard-RESET, most of them near the floor (one hard
  // pulse's cycle-to-cycle spread leaves the rest anywhere up to ~100 uS: measured 64 % below
  // 20 uS on harsh, > 70 % on typical; 0 % if the scan ended with its SET).
  (void)b->sim_clock(10'000'000'000ull);
  const Eigen::MatrixXd g = *b->sim_ground_truth(array);
  int low = 0;
  for (int i = 0; i < 4096; ++i) {
    if (!is_stuck(truth[static_cast<size_t>(i)])) low += g(i / 64, i % 64) < 20.0;
  }
  EXPECT_GE(low, healthy * 55 / 100);
}

INSTANTIATE_TEST_SUITE_P(Profiles, Detection,
                         ::testing::Combine(::testing::Values("imssa", "typical", "harsh"),
                                            ::testing::Values(11, 12)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_seed" +
                                  std::to_string(std::get<1>(info.param));
                         });

// ---- the restore ----

TEST(FaultScan, RestoresAnIdealArrayToWithinAFewMicrosiemens) {
  auto b = open("sim:profile=ideal,seed=3");
  ASSERT_TRUE(b);
  ASSERT_TRUE(program_verify(*b, 1, random_targets(5), {}).has_value());
  const Eigen::MatrixXd before = *b->sim_ground_truth(1);
  std::vector<ScanPhase> phases;
  auto r = scan_faults(*b, 1, {}, [&](const ScanProgress& p) {
    if (phases.empty() || phases.back() != p.phase) phases.push_back(p.phase);
    return true;
  });
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r->findings.empty());  // the ideal chip has no faults
  EXPECT_FALSE(r->destructive);
  EXPECT_FALSE(r->disturbed);
  ASSERT_TRUE(r->restore.has_value());
  EXPECT_EQ(r->restore_report.devices, 4096);
  EXPECT_EQ(r->restore_report.within_tol_pct, 100.0);
  const Eigen::MatrixXd after = *b->sim_ground_truth(1);
  EXPECT_LE((after - before).cwiseAbs().maxCoeff(), 4.0);
  // The scan really moved the array: it saw both ends.
  EXPECT_GT(r->after_set_uS.minCoeff(), 200.0);
  EXPECT_LT(r->after_reset_uS.maxCoeff(), 2.0);
  const std::vector<ScanPhase> want{ScanPhase::kRemember, ScanPhase::kSet, ScanPhase::kReset,
                                    ScanPhase::kRestore, ScanPhase::kDone};
  EXPECT_EQ(phases, want);  // no candidates: no confirm pass
  EXPECT_GT(r->board_time_us, r->scan_board_time_us);
}

TEST(FaultScan, RestoresMostOfATypicalArrayAndSkipsTheStuckDevices) {
  auto b = open("sim:profile=typical,seed=21,noise_seed=3");
  ASSERT_TRUE(b);
  ASSERT_TRUE(program_verify(*b, 0, random_targets(6), {}).has_value());
  (void)b->sim_clock(10'000'000'000ull);
  const Eigen::MatrixXd before = *b->sim_ground_truth(0);
  const auto truth = *b->sim_fault_map(0);
  auto r = scan_faults(*b, 0, {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_TRUE(r->restore.has_value());
  (void)b->sim_clock(10'000'000'000ull);
  const Eigen::MatrixXd after = *b->sim_ground_truth(0);
  int healthy = 0, ok = 0;
  for (int i = 0; i < 4096; ++i) {
    const int row = i / 64, col = i % 64;
    const bool stuck = is_stuck(truth[static_cast<size_t>(i)]);
    const bool skipped =
        r->restore->outcome(row, col) == static_cast<uint8_t>(DeviceOutcome::kSkipped);
    EXPECT_EQ(skipped, stuck);  // recall 100 % and no false positive on this chip
    if (stuck) {
      EXPECT_EQ(r->restore->set_pulses(row, col) + r->restore->reset_pulses(row, col), 0);
      continue;
    }
    ++healthy;
    ok += std::abs(after(row, col) - before(row, col)) <= 4.0;
  }
  EXPECT_EQ(r->restore_report.devices, healthy);
  // Measured 98.6-98.8 % (bench/RESULTS.md); program-verify itself reaches ~98.6 % here.
  EXPECT_GE(100.0 * ok / healthy, 97.5);
  EXPECT_LT(r->restore_report.rms_error_uS, 4.0);
  EXPECT_FALSE(r->disturbed);
}

// ---- the confirm pass, with a device that is stuck only during the first phase ----

TEST(FaultScan, ConfirmPassRejectsADeviceThatMovesTheSecondTime) {
  for (const bool confirm : {true, false}) {
    auto b = open("sim:profile=ideal,seed=4");
    ASSERT_TRUE(b);
    ASSERT_TRUE(b->sim_inject_fault(2, 10, 20, FaultKind::kStuckLow, 0.5).has_value());
    ASSERT_TRUE(b->sim_inject_fault(2, 30, 40, FaultKind::kStuckHigh, 420).has_value());
    ASSERT_TRUE(b->sim_inject_fault(2, 50, 60, FaultKind::kStuckLow, 0.3).has_value());
    ASSERT_TRUE(b->sim_inject_fault(2, 40, 41, FaultKind::kStuckHigh, 350).has_value());
    FaultScanConfig cfg;
    cfg.restore = false;
    cfg.confirm = confirm;
    auto r = scan_faults(*b, 2, cfg, [&](const ScanProgress& p) {
      // After the SET read (10, 20), after the RESET read (40, 41) is freed: each looked stuck
      // once, but is not.
      if (p.phase == ScanPhase::kSet) {
        EXPECT_EQ(p.stuck_low, 2);
        EXPECT_TRUE(b->sim_inject_fault(2, 10, 20, FaultKind::kNone, 0.5).has_value());
      }
      if (p.phase == ScanPhase::kReset) {
        EXPECT_EQ(p.stuck_high, 2);
        EXPECT_TRUE(b->sim_inject_fault(2, 40, 41, FaultKind::kNone, NAN).has_value());
      }
      return true;
    });
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->fault(30, 40), static_cast<uint8_t>(FaultKind::kStuckHigh));
    EXPECT_EQ(r->fault(50, 60), static_cast<uint8_t>(FaultKind::kStuckLow));
    if (confirm) {
      EXPECT_EQ(r->stuck_high, 1);
      EXPECT_EQ(r->stuck_low, 1);
      EXPECT_EQ(r->rejected_candidates, 2);
      EXPECT_EQ(r->fault(10, 20), static_cast<uint8_t>(FaultKind::kNone));
      EXPECT_EQ(r->fault(40, 41), static_cast<uint8_t>(FaultKind::kNone));
      EXPECT_EQ(r->pulses, 2 * 4096 + 4);
    } else {
      // Without the second pulse both would be false positives.
      EXPECT_EQ(r->stuck_high, 2);
      EXPECT_EQ(r->stuck_low, 2);
      EXPECT_EQ(r->fault(10, 20), static_cast<uint8_t>(FaultKind::kStuckLow));
      EXPECT_EQ(r->fault(40, 41), static_cast<uint8_t>(FaultKind::kStuckHigh));
      EXPECT_EQ(r->pulses, 2 * 4096);
    }
    ASSERT_EQ(r->findings.size(), static_cast<size_t>(r->stuck_high + r->stuck_low));
    for (const FaultFinding& f : r->findings) {
      EXPECT_EQ(f.source, FaultSource::kScan);
      EXPECT_FALSE(f.suspected);
    }
  }
}

TEST(FaultScan, CancelledAfterTheSetPhaseSaysTheArrayIsDisturbed) {
  auto b = open("sim:profile=typical,seed=8");
  ASSERT_TRUE(b);
  auto r = scan_faults(*b, 0, {}, [](const ScanProgress& p) { return p.phase != ScanPhase::kSet; });
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r->cancelled);
  EXPECT_TRUE(r->disturbed);
  EXPECT_FALSE(r->restore.has_value());
  EXPECT_TRUE(r->findings.empty());
  EXPECT_EQ(r->pulses, 4096);
  EXPECT_EQ(pulses_applied(*b), 4096u);
  EXPECT_EQ(r->before_uS.rows(), 64);  // kept for a later restore
}

// ---- quick check ----

TEST(QuickCheck, AppliesNoPulseAndFlagsEveryStuckHighDeviceOfImssa) {
  for (int seed : {11, 12}) {
    auto b = open("sim:profile=imssa,seed=" + std::to_string(seed));
    ASSERT_TRUE(b);
    const auto before = b->status();
    int stuck_high = 0;
    for (int array = 0; array < 3; ++array) {
      const auto truth = *b->sim_fault_map(array);
      auto q = quick_check(*b, array, {});
      ASSERT_TRUE(q.has_value()) << q.error().message;
      int flagged_high = 0;
      for (const FaultFinding& f : q->findings) {
        EXPECT_TRUE(f.suspected);
        EXPECT_EQ(f.source, FaultSource::kQuickCheck);
        if (f.kind != FaultKind::kStuckHigh) continue;
        ++flagged_high;
        EXPECT_EQ(truth[static_cast<size_t>(f.row * 64 + f.col)], FaultKind::kStuckHigh);
      }
      int array_high = 0;
      for (FaultKind k : truth) array_high += k == FaultKind::kStuckHigh;
      EXPECT_EQ(flagged_high, array_high);
      EXPECT_EQ(q->suspected_high, array_high);
      stuck_high += array_high;
    }
    EXPECT_GE(stuck_high, 3);  // imssa: 1-3 per array
    const auto after = b->status();
    EXPECT_EQ(after->pulses_applied, before->pulses_applied);
    EXPECT_EQ(after->pulses_applied, 0u);
  }
}

TEST(QuickCheck, SuspectsAnUnformedDeviceButNothingOnAnIdealChip) {
  auto b = open("sim:profile=ideal,seed=9");
  ASSERT_TRUE(b);
  auto clean = quick_check(*b, 0, {});
  ASSERT_TRUE(clean.has_value());
  EXPECT_TRUE(clean->findings.empty());
  ASSERT_TRUE(b->sim_inject_fault(0, 7, 8, FaultKind::kStuckLow, 0.3).has_value());
  auto q = quick_check(*b, 0, {});
  ASSERT_TRUE(q.has_value());
  ASSERT_EQ(q->findings.size(), 1u);
  EXPECT_EQ(q->findings[0].kind, FaultKind::kStuckLow);
  EXPECT_EQ(q->findings[0].row, 7);
  EXPECT_EQ(q->findings[0].col, 8);
  EXPECT_EQ(q->suspected_low, 1);
  EXPECT_EQ(pulses_applied(*b), 0u);
}

// ---- from program-verify ----

TEST(FaultsFromProgramVerify, ClassifiesAbandonedDevicesByDirectionAndLevel) {
  ProgramVerifyResult pv;
  pv.target_uS = Eigen::MatrixXd::Constant(4, 2, 50);
  pv.final_uS = Eigen::MatrixXd::Constant(4, 2, 50);
  pv.outcome.setConstant(4, 2, static_cast<uint8_t>(DeviceOutcome::kConverged));
  auto abandon = [&](int r, int c, double target, double final) {
    pv.outcome(r, c) = static_cast<uint8_t>(DeviceOutcome::kAbandoned);
    pv.target_uS(r, c) = target;
    pv.final_uS(r, c) = final;
  };
  abandon(0, 0, 20, 410);   // needed down, reads high: stuck-high
  abandon(0, 1, 150, 0.6);  // needed up, reads low: stuck-low
  abandon(1, 0, 20, 90);    // needed down, moved part-way: unresponsive
  abandon(1, 1, 150, 40);   // needed up, moved part-way: unresponsive
  abandon(2, 0, 200, 2.5);  // needed up, moved off the floor a little: unresponsive, not stuck
  pv.final_uS(3, 0) = 420;  // converged devices are not findings, whatever they read
  pv.outcome(3, 1) = static_cast<uint8_t>(DeviceOutcome::kSkipped);
  const auto f = faults_from_program_verify(pv);
  ASSERT_EQ(f.size(), 5u);
  const FaultKind want[] = {FaultKind::kStuckHigh, FaultKind::kStuckLow, FaultKind::kSlow,
                            FaultKind::kSlow, FaultKind::kSlow};
  for (size_t i = 0; i < f.size(); ++i) {
    EXPECT_EQ(f[i].kind, want[i]) << i;
    EXPECT_EQ(f[i].source, FaultSource::kProgramVerify);
  }
  EXPECT_EQ(f[0].row, 0);
  EXPECT_EQ(f[0].col, 0);
  EXPECT_EQ(f[0].g_uS, 410);
  EXPECT_EQ(f[4].row, 2);
}

TEST(FaultsFromProgramVerify, StuckFindingsOnATypicalChipAreTrulyStuck) {
  auto b = open("sim:profile=typical,seed=13,noise_seed=2");
  ASSERT_TRUE(b);
  auto pv = program_verify(*b, 0, random_targets(7), {});
  ASSERT_TRUE(pv.has_value()) << pv.error().message;
  const auto truth = *b->sim_fault_map(0);
  const auto findings = faults_from_program_verify(*pv);
  // Every abandoned device is a finding; so is a device still pending above 280 uS that needed
  // to go down (a stuck-high device the ramps had not given up on yet). Both kinds are checked
  // against the truth below.
  size_t from_abandoned = 0;
  for (const FaultFinding& f : findings) {
    from_abandoned += pv->outcome(f.row, f.col) == static_cast<uint8_t>(DeviceOutcome::kAbandoned);
  }
  EXPECT_EQ(from_abandoned, pv->abandoned.size());
  EXPECT_GE(findings.size(), pv->abandoned.size());
  int stuck_found = 0;
  for (const FaultFinding& f : findings) {
    if (f.kind == FaultKind::kSlow) continue;
    ++stuck_found;
    EXPECT_EQ(truth[static_cast<size_t>(f.row * 64 + f.col)], f.kind)
        << "(" << f.row << ", " << f.col << ") reads " << f.g_uS;
  }
  int stuck = 0;
  for (FaultKind k : truth) stuck += is_stuck(k);
  // Most stuck devices are given up on and recognised (those whose target happens to sit at
  // their stuck value converge instead and are found only by the scan).
  EXPECT_GE(stuck_found, stuck * 7 / 10) << stuck_found << " of " << stuck;
}

// ---- validation ----

TEST(FaultScan, BadInputNamesTheFieldAndPulsesNothing) {
  auto b = open("sim:profile=typical,seed=10");
  ASSERT_TRUE(b);
  auto expect_rejected = [&](const FaultScanConfig& cfg, int array, const std::string& text) {
    auto r = scan_faults(*b, array, cfg);
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
  };
  expect_rejected({}, 3, "array = 3: allowed 0..2");
  expect_rejected({}, -1, "array = -1: allowed 0..2");
  FaultScanConfig c;
  c.stuck_high_uS = std::nan("");
  expect_rejected(c, 0, "stuck_high_uS = nan: allowed (0, 583.3) uS");
  c = {};
  c.stuck_high_uS = 700;
  expect_rejected(c, 0, "stuck_high_uS = 700: allowed (0, 583.3) uS");
  c = {};
  c.stuck_low_uS = 300;
  expect_rejected(c, 0, "stuck_low_uS = 300: allowed (0, stuck_high_uS = 250) uS");
  c = {};
  c.stuck_low_uS = -1;
  expect_rejected(c, 0, "stuck_low_uS = -1");
  c = {};
  c.reset_v_V = 4.0;
  expect_rejected(c, 0, "reset_v_V = 4: allowed 0.3..3.5 V");
  c = {};
  c.set_gate_V = std::nan("");
  expect_rejected(c, 0, "set_gate_V = nan: allowed 0.5..2 V");
  c = {};
  c.width_ns = 6000;
  expect_rejected(c, 0, "width_ns = 6000: allowed 20..5000 ns");
  c = {};
  c.scan_read.n_avg = 0;
  expect_rejected(c, 0, "scan_read.n_avg = 0: allowed 1..64");
  c = {};
  c.remember_read.gain_index = 5;
  expect_rejected(c, 0, "remember_read.gain_index = 5: allowed 0..4");
  c = {};
  c.remember_passes = 0;
  expect_rejected(c, 0, "remember_passes = 0: allowed 1..16");
  c = {};
  c.restore_config.tol_uS = -1;
  expect_rejected(c, 0, "restore_config.tol_uS = -1: allowed (0, 100]");
  c.restore = false;  // the restore config does not matter when there is no restore
  EXPECT_TRUE(validate(c, b->info()).has_value());

  auto q = quick_check(*b, 4, {});
  ASSERT_FALSE(q.has_value());
  EXPECT_EQ(q.error().message, "array = 4: allowed 0..2");
  QuickCheckConfig qc;
  qc.suspect_low_uS = 300;
  q = quick_check(*b, 0, qc);
  ASSERT_FALSE(q.has_value());
  EXPECT_NE(q.error().message.find("suspect_low_uS = 300: allowed (0, suspect_high_uS = 280)"),
            std::string::npos)
      << q.error().message;
  qc = {};
  qc.suspect_high_uS = INFINITY;
  q = quick_check(*b, 0, qc);
  ASSERT_FALSE(q.has_value());
  EXPECT_NE(q.error().message.find("suspect_high_uS = inf"), std::string::npos);
  EXPECT_EQ(pulses_applied(*b), 0u);
}

}  // namespace
}  // namespace xbar
