// Program-verify on the twin: a full array to random targets, measured against the twin's
// ground truth. Prints one line per chip seed and a summary; bench/RESULTS.md records it.
//   program_verify_bench [profile=typical] [seeds=3] [tol_uS=4] [lo=7] [hi=200]
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"

int main(int argc, char** argv) {
  const std::string profile = argc > 1 ? argv[1] : "typical";
  const int seeds = argc > 2 ? std::atoi(argv[2]) : 3;
  const double tol = argc > 3 ? std::atof(argv[3]) : 4.0;
  const double lo = argc > 4 ? std::atof(argv[4]) : 7.0, hi = argc > 5 ? std::atof(argv[5]) : 200.0;
  const double usb_rtt_ms = 1.0;
  double sum_ok = 0, worst_ok = 100;
  const int seed0 = std::getenv("PV_SEED0") ? std::atoi(std::getenv("PV_SEED0")) : 1;
  for (int seed = seed0; seed < seed0 + seeds; ++seed) {
    auto board = xbar::Board::open(
        fmt::format("sim:profile={},seed={},noise_seed={}", profile, seed, seed + 100));
    if (!board) {
      fmt::print(stderr, "{}\n", board.error().message);
      return 1;
    }
    xbar::Board& b = **board;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(lo, hi);
    Eigen::MatrixXd target(64, 64);
    for (int i = 0; i < target.size(); ++i) target.data()[i] = u(rng);
    xbar::ProgramVerifyConfig cfg;
    cfg.tol_uS = tol;
    if (const char* v = std::getenv("PV_NAVG"))
      cfg.verify.n_avg = static_cast<uint8_t>(std::atoi(v));
    if (const char* v = std::getenv("PV_VM")) cfg.verify_margin_uS = std::atof(v);
    if (const char* v = std::getenv("PV_RM")) cfg.reopen_margin_uS = std::atof(v);
    if (const char* v = std::getenv("PV_WAIT")) cfg.max_wait_reads = std::atoi(v);
    if (const char* v = std::getenv("PV_ROUNDS")) cfg.max_rounds = std::atoi(v);
    std::vector<int> trace;
    auto r = xbar::program_verify(b, 0, target, cfg, [&](const xbar::ProgramVerifyProgress& p) {
      trace.push_back(p.pending);
      return true;
    });
    if (!r) {
      fmt::print(stderr, "program_verify: {}\n", r.error().message);
      return 1;
    }
    // Ground truth, once relaxation is over.
    (void)b.sim_clock(10'000'000'000ull);
    const Eigen::MatrixXd truth = *b.sim_ground_truth(0);
    const auto faults = *b.sim_fault_map(0);
    int n = 0, ok = 0, ok_read = 0;
    double sq = 0;
    std::vector<int> pulses;
    for (int i = 0; i < 4096; ++i) {
      const int row = i / 64, col = i % 64;
      const auto f = faults[static_cast<size_t>(i)];
      if (f == xbar::wire::FaultKind::kStuckHigh || f == xbar::wire::FaultKind::kStuckLow) continue;
      ++n;
      const double err = truth(row, col) - target(row, col);
      ok += std::abs(err) <= tol;
      ok_read += std::abs(r->final_uS(row, col) - target(row, col)) <= tol;
      sq += err * err;
      pulses.push_back(r->set_pulses(row, col) + r->reset_pulses(row, col));
    }
    std::sort(pulses.begin(), pulses.end());
    double mean_p = 0;
    for (int p : pulses) mean_p += p;
    mean_p /= pulses.size();
    const double pct = 100.0 * ok / n;
    sum_ok += pct;
    worst_ok = std::min(worst_ok, pct);
    const double wall_s =
        r->rounds * 1.0 /*settle*/ + r->transactions * usb_rtt_ms * 1e-3 + r->pulse_time_us * 1e-6;
    fmt::print(
        "{} seed {}: rounds {} transactions {} | non-stuck within ±{} uS: truth {:.2f} % read "
        "{:.2f} % "
        "| sigma(err) {:.2f} uS | pulses/device mean {:.2f} p99 {} | abandoned {} | pulse time "
        "{:.1f} ms "
        "| projected wall {:.1f} s\n",
        profile, seed, r->rounds, r->transactions, tol, pct, 100.0 * ok_read / n, std::sqrt(sq / n),
        mean_p, pulses[static_cast<size_t>(0.99 * (pulses.size() - 1))], r->abandoned.size(),
        r->pulse_time_us / 1000, wall_s);
    if (std::getenv("PV_DEBUG")) {
      int miss_slow = 0, miss_mid = 0, miss_out = 0, aband_healthy = 0;
      for (int i = 0; i < 4096; ++i) {
        const int row = i / 64, col = i % 64;
        const auto f = faults[static_cast<size_t>(i)];
        if (f == xbar::wire::FaultKind::kStuckHigh || f == xbar::wire::FaultKind::kStuckLow)
          continue;
        aband_healthy += r->outcome(row, col) == 2;
        if (std::abs(truth(row, col) - target(row, col)) <= tol) continue;
        if (f == xbar::wire::FaultKind::kSlow)
          ++miss_slow;
        else if (target(row, col) > 20 && target(row, col) < 80)
          ++miss_mid;
        else
          ++miss_out;
      }
      fmt::print("  missed: slow {} mid-window {} other {}; abandoned healthy {}\n", miss_slow,
                 miss_mid, miss_out, aband_healthy);
      int shown = 0;
      for (int i = 0; i < 4096 && shown < 25; ++i) {
        const int row = i / 64, col = i % 64;
        if (std::abs(truth(row, col) - target(row, col)) <= tol) continue;
        ++shown;
        fmt::print(
            "  ({},{}) {} target {:.1f} truth {:.1f} read {:.1f} set {} reset {} outcome {}\n", row,
            col, xbar::wire::fault_kind_name(faults[static_cast<size_t>(i)]), target(row, col),
            truth(row, col), r->final_uS(row, col), r->set_pulses(row, col),
            r->reset_pulses(row, col), int(r->outcome(row, col)));
      }
    }
    fmt::print("  pending per round:");
    for (int p : trace) fmt::print(" {}", p);
    fmt::print("\n");
  }
  fmt::print("mean within tolerance {:.2f} %, worst {:.2f} %\n", sum_ok / seeds, worst_ok);
  return 0;
}
