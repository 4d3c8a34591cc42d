// Closed-loop inference speed on the twin: three 14-state kernels (one per array) run as a
// LOOP_RUN on the in-process twin (typical profile: bit-serial 8-bit VMM, read noise on),
// against the ideal floating-point recurrence of the same kernels in the same run.
//   loop_bench [clips=20] [profile=typical]
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/drivers/loop_runner.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/loop_plan.h"

using namespace xbar;
using namespace xbar::kernel;

int main(int argc, char** argv) {
  const int clips = argc > 1 ? std::atoi(argv[1]) : 20;
  const std::string profile = argc > 2 ? argv[2] : "typical";
  auto board = Board::open(fmt::format("sim:profile={},seed=3", profile));
  if (!board) return 1;
  Board& b = **board;
  std::mt19937_64 rng(1);
  std::normal_distribution<double> z(0, 0.5);
  std::vector<CompiledKernel> kernels;
  std::vector<wire::LoopProgram> progs;
  std::vector<LoopPlan> plans;
  for (int a = 0; a < 3; ++a) {
    KernelSpec k;
    k.log_dt = std::log(std::vector<double>{0.1, 0.2, 0.5}[static_cast<size_t>(a)]);
    for (int j = 0; j < 14; ++j) {
      k.a.push_back(cd(-0.5, std::numbers::pi * j));
      k.c.push_back(cd(z(rng), z(rng)));
    }
    kernels.push_back(compile(k, Window{}));
    // The as-manufactured array stands in for a programmed one: speed does not depend on the
    // conductances. The targets pick the TIA gain as a deployment would.
    auto plan =
        plan_loop(kernels.back(), Placement::identity(), kernels.back().target_uS, a, b.info());
    if (!plan) return 1;
    plans.push_back(*plan);
    progs.push_back(plan->program);
  }
  auto max_block = b.loop_load(progs);
  if (!max_block) {
    fmt::print(stderr, "{}\n", max_block.error().message);
    return 1;
  }
  const int steps = 871;  // the paper's clip length
  std::vector<Eigen::VectorXd> us;
  for (int c = 0; c < clips; ++c) {
    Eigen::VectorXd u(steps);
    for (int t = 0; t < steps; ++t) u(t) = z(rng);
    us.push_back(u);
  }
  using clock = std::chrono::steady_clock;
  // Board: one LOOP_RUN per clip (872 steps with the alignment step), all three arrays.
  std::vector<double> latency_ms;
  const auto t0 = clock::now();
  for (int c = 0; c < clips; ++c) {
    std::vector<int16_t> codes(static_cast<size_t>(steps) * 3);
    for (int a = 0; a < 3; ++a) {
      const auto in = input_codes(plans[static_cast<size_t>(a)], us[static_cast<size_t>(c)]);
      for (int t = 0; t < steps; ++t)
        codes[static_cast<size_t>(t * 3 + a)] = in[static_cast<size_t>(t)];
    }
    const auto c0 = clock::now();
    auto r =
        run_loop(b, progs, *max_block, codes, static_cast<size_t>(steps), static_cast<uint32_t>(c));
    latency_ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - c0).count());
    if (!r) {
      fmt::print(stderr, "{}\n", r.error().message);
      return 1;
    }
  }
  const double board_s = std::chrono::duration<double>(clock::now() - t0).count();
  // The same clips through the ideal recurrence in double (Eigen-free scalar loop over modes).
  double sink = 0;
  const auto t1 = clock::now();
  for (int c = 0; c < clips; ++c) {
    for (const CompiledKernel& k : kernels)
      sink += run_ideal(k.kernel, us[static_cast<size_t>(c)]).sum();
  }
  const double ideal_s = std::chrono::duration<double>(clock::now() - t1).count();
  std::sort(latency_ms.begin(), latency_ms.end());
  const double steps_total = static_cast<double>(clips) * (steps + 1);
  fmt::print(
      "{}: {} clips x {} steps x 3 arrays (8-bit bit-serial VMM, 8 ADC conversions per array per "
      "step)\n  twin closed loop: {:.0f} steps/s ({:.0f} array-steps/s), clip latency median "
      "{:.2f} ms, max {:.2f} ms\n  ideal double recurrence: {:.0f} steps/s\n  ratio twin / ideal: "
      "{:.4f} (sink {:.3g})\n",
      profile, clips, steps, steps_total / board_s, 3 * steps_total / board_s,
      latency_ms[latency_ms.size() / 2], latency_ms.back(),
      static_cast<double>(clips) * steps / ideal_s,
      (steps_total / board_s) / (static_cast<double>(clips) * steps / ideal_s), sink);
  return 0;
}
