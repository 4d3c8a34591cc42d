// Fault scan on the twin, measured against its ground truth (SIM_FAULT_MAP, SIM_GROUND_TRUTH).
// For each profile and chip seed: array 0 is first programmed to random targets (so the restore
// has something to restore), then scanned with the default config; a quick check runs on the
// programmed array before the scan. Prints one line per scan and a summary per profile;
// bench/RESULTS.md records them.
//   fault_scan_bench [seeds=5] [profiles=imssa,typical,harsh] [state=programmed|fresh]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/drivers/fault_scan.h"
#include "xbar/drivers/program_verify.h"

namespace {

using xbar::wire::FaultKind;

struct Totals {
  int scans = 0;
  long stuck = 0, found = 0, wrong_kind = 0, healthy = 0, fp = 0, slow = 0, slow_flagged = 0;
  long rejected = 0;
  long qc_high = 0, qc_high_found = 0, qc_flags_high = 0;
  long qc_low = 0, qc_low_found = 0, qc_flags_low = 0;
  double transactions = 0, scan_transactions = 0, board_ms = 0, scan_board_ms = 0, wall_ms = 0;
  double restore_ok = 0, restore_rms = 0;
  double restore_rounds = 0, worst_restore_ok = 100;
  int max_transactions = 0;
};

bool is_stuck(FaultKind k) { return k == FaultKind::kStuckHigh || k == FaultKind::kStuckLow; }

}  // namespace

int main(int argc, char** argv) {
  const int seeds = argc > 1 ? std::atoi(argv[1]) : 5;
  std::vector<std::string> profiles;
  {
    std::stringstream ss(argc > 2 ? argv[2] : "imssa,typical,harsh");
    for (std::string p; std::getline(ss, p, ',');) profiles.push_back(p);
  }
  const bool programmed = !(argc > 3 && std::string(argv[3]) == "fresh");
  const int array = 0;
  const double tol = 4.0;
  fmt::print("fault scan, array {}, {} chip seeds per profile, array state before the scan: {}\n",
             array, seeds, programmed ? "programmed to random 7-200 uS" : "fresh");
  for (const std::string& profile : profiles) {
    Totals t;
    for (int seed = 1; seed <= seeds; ++seed) {
      auto opened = xbar::Board::open(
          fmt::format("sim:profile={},seed={},noise_seed={}", profile, seed, seed + 500));
      if (!opened) {
        fmt::print(stderr, "{}\n", opened.error().message);
        return 1;
      }
      xbar::Board& b = **opened;
      if (programmed) {
        std::mt19937_64 rng(seed);
        std::uniform_real_distribution<double> u(7, 200);
        Eigen::MatrixXd target(64, 64);
        for (int i = 0; i < target.size(); ++i) target.data()[i] = u(rng);
        if (auto r = xbar::program_verify(b, array, target, {}); !r) {
          fmt::print(stderr, "program_verify: {}\n", r.error().message);
          return 1;
        }
      }
      (void)b.sim_clock(10'000'000'000ull);  // relaxation over: the state to restore
      const Eigen::MatrixXd truth_before = *b.sim_ground_truth(array);
      const auto faults = *b.sim_fault_map(array);

      auto qc = xbar::quick_check(b, array, {});
      if (!qc) {
        fmt::print(stderr, "quick_check: {}\n", qc.error().message);
        return 1;
      }
      const auto w0 = std::chrono::steady_clock::now();
      auto r = xbar::scan_faults(b, array, {});
      const double wall_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
      if (!r) {
        fmt::print(stderr, "scan_faults: {}\n", r.error().message);
        return 1;
      }
      (void)b.sim_clock(10'000'000'000ull);
      const Eigen::MatrixXd truth_after = *b.sim_ground_truth(array);

      long stuck = 0, found = 0, wrong = 0, healthy = 0, fp = 0, slow = 0, slow_flagged = 0;
      long restored_ok = 0;
      double sq = 0;
      for (int i = 0; i < 4096; ++i) {
        const int row = i / 64, col = i % 64;
        const FaultKind f = faults[static_cast<size_t>(i)];
        const auto got = static_cast<FaultKind>(r->fault(row, col));
        if (is_stuck(f)) {
          ++stuck;
          found += got != FaultKind::kNone;
          wrong += got != FaultKind::kNone && got != f;
        } else {
          ++healthy;
          fp += got != FaultKind::kNone;
          if (f == FaultKind::kSlow) {
            ++slow;
            slow_flagged += got != FaultKind::kNone;
          }
          const double e = truth_after(row, col) - truth_before(row, col);

          restored_ok += std::abs(e) <= tol;
          sq += e * e;
        }
        t.qc_high += f == FaultKind::kStuckHigh;
        t.qc_low += f == FaultKind::kStuckLow;
      }
      for (const auto& fd : qc->findings) {
        const bool hit = faults[static_cast<size_t>(fd.row * 64 + fd.col)] == fd.kind;
        if (fd.kind == FaultKind::kStuckHigh) {
          ++t.qc_flags_high;
          t.qc_high_found += hit;
        } else {
          ++t.qc_flags_low;
          t.qc_low_found += hit;
        }
      }
      const double ok_pct = healthy ? 100.0 * restored_ok / healthy : 100.0;
      const double rms = healthy ? std::sqrt(sq / healthy) : 0.0;
      const int scan_tx = r->transactions - r->restore->transactions;
      fmt::print(
          "{:8s} seed {}: stuck {:3d} found {:3d} (wrong kind {}) | healthy {} false pos {} "
          "(slow {} flagged {}) | rejected candidates {} | scan: tx {} board {:.0f} ms | "
          "with restore: tx {} board {:.1f} s | wall {:.0f} ms | restore within ±{} uS (truth) "
          "{:.2f} % rms {:.2f} uS rounds {} abandoned {} | quick check: high {} low {}\n",
          profile, seed, stuck, found, wrong, healthy, fp, slow, slow_flagged,
          r->rejected_candidates, scan_tx, r->scan_board_time_us / 1000, r->transactions,
          r->board_time_us / 1e6, wall_ms, tol, ok_pct, rms, r->restore_report.rounds,
          r->restore_report.abandoned, qc->suspected_high, qc->suspected_low);
      t.scan_transactions += scan_tx;
      t.rejected += r->rejected_candidates;
      t.scan_board_ms += r->scan_board_time_us / 1000;
      ++t.scans;
      t.stuck += stuck;
      t.found += found;
      t.wrong_kind += wrong;
      t.healthy += healthy;
      t.fp += fp;
      t.slow += slow;
      t.slow_flagged += slow_flagged;
      t.transactions += r->transactions;
      t.max_transactions = std::max(t.max_transactions, r->transactions);
      t.board_ms += r->board_time_us / 1000;
      t.wall_ms += wall_ms;
      t.restore_ok += ok_pct;
      t.worst_restore_ok = std::min(t.worst_restore_ok, ok_pct);
      t.restore_rms += rms;
      t.restore_rounds += r->restore_report.rounds;
    }
    const double n = t.scans;
    // Real board: the board's own time plus one USB round trip per transaction.
    const double usb_rtt_ms = 1.0;
    fmt::print(
        "SUMMARY {}: recall {}/{} = {:.2f} % (wrong kind {}) | false positives {}/{} = {:.4f} % "
        "(slow devices {}, flagged {}; candidates rejected by the confirm pass {}) | per scan: "
        "scan part {:.1f} tx, board {:.2f} s, projected "
        "{:.2f} s; with restore {:.1f} tx (max {}), board {:.2f} s, projected {:.2f} s | twin wall "
        "{:.2f} s | restore within ±{} uS mean {:.2f} % worst {:.2f} %, rms {:.2f} uS, rounds "
        "{:.1f} | quick check (read-only): stuck-high {}/{} found, {} flagged; stuck-low {}/{} "
        "found, {} flagged\n",
        profile, t.found, t.stuck, t.stuck ? 100.0 * t.found / t.stuck : 100.0, t.wrong_kind, t.fp,
        t.healthy, t.healthy ? 100.0 * t.fp / t.healthy : 0.0, t.slow, t.slow_flagged, t.rejected,
        t.scan_transactions / n, t.scan_board_ms / n / 1000,
        (t.scan_board_ms + t.scan_transactions * usb_rtt_ms) / n / 1000, t.transactions / n,
        t.max_transactions, t.board_ms / n / 1000,
        (t.board_ms + t.transactions * usb_rtt_ms) / n / 1000, t.wall_ms / n / 1000, tol,
        t.restore_ok / n, t.worst_restore_ok, t.restore_rms / n, t.restore_rounds / n,
        t.qc_high_found, t.qc_high, t.qc_flags_high, t.qc_low_found, t.qc_low, t.qc_flags_low);
  }
  return 0;
}
