// Remapping around stuck devices, measured on the twin (bench/RESULTS.md records it).
//
//   remap_bench programmed [seeds=20] [profile=imssa]
//       Deploys three 14-state S4D kernels on each chip seed three ways: remapped, naive
//       (identity placement, no compensation: the paper's deployment) and on the same chip
//       without stuck devices (stuck=0: same devices, same noise seeds), each programmed with
//       program-verify; the fidelity NRMSE uses the twin's ground-truth conductances after
//       relaxation (what the chip really holds).
//   remap_bench density [seeds=10] [profile=typical]
//       Predicted NRMSE (targets with the stuck devices at their true conductance, no
//       programming noise) of remap vs naive over stuck fractions 0.05 %..5 %, and the remap
//       solve time per kernel.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "twin_faults.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/remap.h"

namespace {

using namespace xbar;
using namespace xbar::kernel;

// The example kernels (configs/kernels/example.json's recipe): S4D-Lin, N = 14,
// dt = 0.1 / 0.2 / 0.5, C ~ N(0, 0.5^2) complex.
std::vector<CompiledKernel> example_kernels() {
  std::vector<CompiledKernel> out;
  std::mt19937_64 rng(1);
  std::normal_distribution<double> z(0, 0.5);
  std::vector<double> dts = {0.1, 0.2, 0.5};
  if (const char* e = std::getenv("REMAP_BENCH_DT")) {  // experiments: "0.5,1,2"
    dts.clear();
    for (const char* p = e; *p;) {
      char* end = nullptr;
      dts.push_back(std::strtod(p, &end));
      p = *end ? end + 1 : end;
    }
  }
  for (double dt : dts) {
    KernelSpec k;
    k.continuous = true;
    k.log_dt = std::log(dt);
    for (int j = 0; j < 14; ++j) {
      k.a.push_back(cd(-0.5, std::numbers::pi * j));
      k.c.push_back(cd(z(rng), z(rng)));
    }
    out.push_back(compile(k, Window{}));
  }
  return out;
}

struct Stats {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  double median() const {
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    return s.empty() ? 0 : s[s.size() / 2];
  }
  double mean_finite() const {
    double sum = 0;
    int n = 0;
    for (double x : v) {
      if (std::isfinite(x)) {
        sum += x;
        ++n;
      }
    }
    return n ? sum / n : 0;
  }
  // Runs whose NRMSE is above 1 (the error is larger than the signal) or infinite: in
  // practice these are unstable (a pole at or beyond 1) and diverge.
  int diverged() const {
    return static_cast<int>(
        std::count_if(v.begin(), v.end(), [](double x) { return !(x <= 1.0); }));
  }
  double max() const { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
};

// Deploys `kernels` on a board opened from `uri`; returns the NRMSE per kernel against the
// ground truth, and the remap time per kernel.
struct Deployed {
  std::vector<double> nrmse;
  std::vector<double> nrmse_same_noise_fault_free;
  std::vector<double> solve_ms;
  double within_tol_pct = 0;
  int faults = 0, avoided = 0, compensated = 0, residual = 0;
};

Deployed deploy(const std::string& uri, const std::vector<CompiledKernel>& kernels, bool naive) {
  auto board = Board::open(uri);
  if (!board) {
    fmt::print(stderr, "{}\n", board.error().message);
    std::exit(1);
  }
  Board& b = **board;
  const auto stuck = bench::twin_stuck_devices(b);
  RemapOptions opt;
  opt.naive = naive;
  auto plans = remap(kernels, stuck, {0, 1, 2}, opt);
  if (!plans) {
    fmt::print(stderr, "remap: {}\n", plans.error().message);
    std::exit(1);
  }
  Deployed out;
  ProgramVerifyConfig cfg;
  for (const ArrayPlan& p : *plans) {
    // As the daemon deploys: tol_uS in the relaxation window, half of it elsewhere.
    cfg.device_tol_uS =
        device_tolerance(p.target_uS, cfg.tol_uS, cfg.relax_mid_lo_uS, cfg.relax_mid_hi_uS);
    auto r = program_verify(b, p.array, p.target_uS, cfg, {}, &p.skip);
    if (!r) {
      fmt::print(stderr, "program_verify: {}\n", r.error().message);
      std::exit(1);
    }
    out.within_tol_pct += r->within_tolerance(cfg) / static_cast<double>(plans->size());
    out.faults += p.faults;
    out.avoided += p.avoided;
    out.compensated += p.compensated;
    out.residual += p.residual;
    out.solve_ms.push_back(p.solve_ms);
  }
  (void)b.sim_clock(10'000'000'000ull);  // relaxation over
  const auto inputs = fidelity_inputs();
  for (const ArrayPlan& p : *plans) {
    const Eigen::MatrixXd truth = *b.sim_ground_truth(p.array);
    const CompiledKernel& ck = kernels[static_cast<size_t>(p.kernel)];
    out.nrmse.push_back(fidelity_nrmse(ck, p.placement, truth, inputs));
    // The same deployment, same programming noise, without the stuck devices: stuck devices at
    // their targets, compensating partners moved back by their compensation shift.
    const Eigen::MatrixXd orig = place(ck.target_uS, p.placement);
    Eigen::MatrixXd ff = truth;
    for (int r = 0; r < ff.rows(); ++r) {
      for (int c = 0; c < ff.cols(); ++c) {
        ff(r, c) = p.skip(r, c) ? orig(r, c) : truth(r, c) - (p.target_uS(r, c) - orig(r, c));
      }
    }
    out.nrmse_same_noise_fault_free.push_back(fidelity_nrmse(ck, p.placement, ff, inputs));
  }
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

int programmed(int seeds, const std::string& profile) {
  const auto kernels = example_kernels();
  Stats remapped, naive, same_noise, clean, ratio_same, ratio_clean, naive_ratio, solve;
  int faults = 0, avoided = 0, compensated = 0, residual = 0;
  for (int seed = 1; seed <= seeds; ++seed) {
    const std::string base =
        fmt::format("sim:profile={},seed={},noise_seed={}", profile, seed, seed + 100);
    const Deployed r = deploy(base, kernels, false);
    const Deployed n = deploy(base, kernels, true);
    const Deployed c = deploy(base + ",stuck=0", kernels, false);
    const double mr = mean(r.nrmse), mn = mean(n.nrmse), mc = mean(c.nrmse);
    const double ms = mean(r.nrmse_same_noise_fault_free);
    remapped.add(mr);
    naive.add(mn);
    same_noise.add(ms);
    clean.add(mc);
    ratio_same.add(mr / ms);
    ratio_clean.add(mr / mc);
    naive_ratio.add(mn / mr);
    for (double t : r.solve_ms) solve.add(t);
    faults += r.faults;
    avoided += r.avoided;
    compensated += r.compensated;
    residual += r.residual;
    fmt::print(
        "{} seed {:2}: NRMSE remapped {:.4f} | same noise, no stuck {:.4f} (ratio {:.4f}) | "
        "stuck=0 chip {:.4f} | naive {:.4g} (x{:.3g}) | stuck {} (avoided {}, compensated {}, "
        "residual {}) | within tol {:.2f} % | remap {:.1f} ms/kernel\n",
        profile, seed, mr, ms, mr / ms, mc, mn, mn / mr, r.faults, r.avoided, r.compensated,
        r.residual, r.within_tol_pct, mean(r.solve_ms));
  }
  fmt::print(
      "SUMMARY {} ({} seeds x 3 kernels): median NRMSE remapped {:.4f} (> 1 in {} seeds), mean "
      "{:.4g}; same deployment and noise "
      "without the stuck devices {:.4f} (remapped/that: mean {:.4f}, worst {:.4f}); separate "
      "stuck=0 chip {:.4f} (ratio mean {:.3f}); naive: median {:.4g}, NRMSE > 1 in {} of {} seeds, "
      "naive/remapped median {:.4g}; stuck {}: avoided {}, compensated {}, residual {}; remap "
      "solve "
      "per kernel mean {:.1f} ms, max {:.1f} ms\n",
      profile, seeds, remapped.median(), remapped.diverged(), remapped.mean_finite(),
      same_noise.mean_finite(), ratio_same.mean_finite(), ratio_same.max(), clean.mean_finite(),
      ratio_clean.mean_finite(), naive.median(), naive.diverged(), seeds, naive_ratio.median(),
      faults, avoided, compensated, residual, solve.mean_finite(), solve.max());
  return 0;
}

int density(int seeds, const std::string& profile) {
  const auto kernels = example_kernels();
  const auto inputs = fidelity_inputs();
  for (double f : {0.0005, 0.005, 0.01, 0.02, 0.05}) {
    Stats remapped, naive, solve;
    int faults = 0, avoided = 0, compensated = 0, residual = 0;
    for (int seed = 1; seed <= seeds; ++seed) {
      auto board = Board::open(fmt::format("sim:profile={},seed={},stuck={}", profile, seed, f));
      if (!board) return 1;
      const auto stuck = bench::twin_stuck_devices(**board);
      for (bool nv : {false, true}) {
        RemapOptions opt;
        opt.naive = nv;
        auto plans = remap(kernels, stuck, {0, 1, 2}, opt);
        if (!plans) return 1;
        for (const ArrayPlan& p : *plans) {
          (nv ? naive : remapped).add(p.predicted_nrmse);
          if (!nv) {
            solve.add(p.solve_ms);
            faults += p.faults;
            avoided += p.avoided;
            compensated += p.compensated;
            residual += p.residual;
          }
        }
      }
    }
    fmt::print(
        "{} stuck {:.2f} %: predicted NRMSE remapped median {:.4g}, > 1: {}/{} | naive median "
        "{:.4g}, > 1: {}/{} | stuck per array {:.1f}: avoided {:.1f} compensated {:.1f} "
        "residual {:.1f} | solve per kernel mean {:.1f} ms max {:.1f} ms\n",
        profile, 100 * f, remapped.median(), remapped.diverged(), remapped.v.size(), naive.median(),
        naive.diverged(), naive.v.size(), faults / (3.0 * seeds), avoided / (3.0 * seeds),
        compensated / (3.0 * seeds), residual / (3.0 * seeds), solve.mean_finite(), solve.max());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "programmed";
  if (mode == "programmed") {
    return programmed(argc > 2 ? std::atoi(argv[2]) : 20, argc > 3 ? argv[3] : "imssa");
  }
  if (mode == "density") {
    return density(argc > 2 ? std::atoi(argv[2]) : 10, argc > 3 ? argv[3] : "typical");
  }
  fmt::print(stderr, "usage: remap_bench programmed|density [seeds] [profile]\n");
  return 2;
}
