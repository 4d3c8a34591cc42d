// vmm_bench: the twin's bit-serial VMM against plain Eigen products of the same size.
//
// Baselines use the programmed array's own conductances, so every case multiplies the same
// numbers. All cases report items_per_second (one item = one 8-bit VMM of one input vector on
// one 64x64 array) and `per_vmm` (CPU time per VMM). Results and discussion: bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/twin/chip.h"
#include "xbar/twin/firmware.h"
#include "xbar/twin/inprocess_transport.h"
#include "xbar/twin/philox.h"
#include "xbar/twin/profile.h"

namespace {

using xbar::twin::Chip;
using xbar::twin::ChipProfile;

constexpr int kRows = 64;
constexpr int kCols = 64;
constexpr int kPlanes = 8;
constexpr int kArray = 0;
constexpr int kGain = 1;     // 5 kOhm: ~3500 uS of column sum before the ADC saturates
constexpr int kPool = 256;   // distinct input vectors, cycled so no case sees one input only
constexpr int kBatch = 128;  // the board's max_vmm_vectors
constexpr uint64_t kChipSeed = 1;
constexpr uint64_t kNoiseSeed = 1;
constexpr uint64_t kSettleNs = 10'000'000'000;  // 10 s > 20 tau (4 s): relaxation finished

// Inverted iteration-invariant rate = CPU seconds per VMM (printed e.g. "1.53us"), so batch
// and single-vector cases read the same way; aggregated like the time.
void ReportPerVmm(benchmark::State& state, int vectors_per_iteration) {
  state.SetItemsProcessed(state.iterations() * vectors_per_iteration);
  state.counters["per_vmm"] =
      benchmark::Counter(vectors_per_iteration, benchmark::Counter::kIsIterationInvariantRate |
                                                    benchmark::Counter::kInvert);
}

ChipProfile TypicalProfile() {
  auto p = xbar::twin::load_profile("typical");
  if (!p) {
    std::fprintf(stderr, "load_profile(typical): %s\n", p.error().c_str());
    std::abort();
  }
  return *p;
}

// Random 8-bit inputs, n vectors of kRows bytes; fixed seed so every run sees the same data.
std::vector<uint8_t> MakeInputs(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> out(static_cast<size_t>(n) * kRows);
  for (uint8_t& b : out) b = static_cast<uint8_t>(byte(rng));
  return out;
}

// A realistic weight state: every device SET toward a log-uniform compliance target in
// 5..200 uS (gate = 0.4 V + target / 160 uS/V), three pulses so slow devices get there too.
// Faulty devices of the typical profile keep their stuck values. Leaves relaxation running;
// callers advance the clock by kSettleNs unless they want the relaxing case.
void ProgramArray(Chip& chip, int array) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> log_g(std::log(5.0), std::log(200.0));
  uint64_t op_id = 1;
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) {
      const double gate_V = 0.4 + std::exp(log_g(rng)) / 160.0;
      for (int k = 0; k < 3; ++k) {
        chip.pulse(array, r, c, xbar::wire::Polarity::kSet, 2.5, gate_V, 1000.0, op_id++);
      }
    }
  }
}

std::unique_ptr<Chip> MakeProgrammedChip(const ChipProfile& profile, bool settle) {
  auto chip = std::make_unique<Chip>(profile, kChipSeed, kNoiseSeed);
  ProgramArray(*chip, kArray);
  if (settle) chip->advance_ns(kSettleNs);
  return chip;
}

// The programmed array's conductances, transposed (cols x rows) like the twin's cache.
Eigen::MatrixXf ProgrammedGt() {
  const auto chip = MakeProgrammedChip(TypicalProfile(), /*settle=*/true);
  Eigen::MatrixXf gt(kCols, kRows);
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) gt(c, r) = static_cast<float>(chip->true_g_uS(kArray, r, c));
  }
  return gt;
}

// Bit planes of the input pool as 0/1 floats, one kRows x kPlanes matrix per vector: the
// baselines get them for free, the twin builds them on every call.
std::vector<Eigen::MatrixXf> MakePlanePool() {
  const std::vector<uint8_t> in = MakeInputs(kPool, 7);
  std::vector<Eigen::MatrixXf> pool(kPool, Eigen::MatrixXf(kRows, kPlanes));
  for (int v = 0; v < kPool; ++v) {
    for (int b = 0; b < kPlanes; ++b) {
      for (int r = 0; r < kRows; ++r) {
        pool[static_cast<size_t>(v)](r, b) =
            static_cast<float>((in[static_cast<size_t>(v) * kRows + r] >> b) & 1u);
      }
    }
  }
  return pool;
}

// ---- Baseline A: eight 64x64 GEMVs, one per bit plane. ----
void BM_EigenGemvX8(benchmark::State& state) {
  const Eigen::MatrixXf gt = ProgrammedGt();
  const std::vector<Eigen::MatrixXf> pool = MakePlanePool();
  Eigen::MatrixXf out(kCols, kPlanes);
  size_t i = 0;
  for (auto _ : state) {
    const Eigen::MatrixXf& x = pool[i++ % kPool];
    for (int b = 0; b < kPlanes; ++b) out.col(b).noalias() = gt * x.col(b);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  ReportPerVmm(state, 1);
}
BENCHMARK(BM_EigenGemvX8);

// ---- Baseline B: the same eight planes as one 64x64 * 64x8 GEMM (the twin's form). ----
void BM_EigenGemm64x8(benchmark::State& state) {
  const Eigen::MatrixXf gt = ProgrammedGt();
  const std::vector<Eigen::MatrixXf> pool = MakePlanePool();
  Eigen::MatrixXf out(kCols, kPlanes);
  size_t i = 0;
  for (auto _ : state) {
    out.noalias() = gt * pool[i++ % kPool];
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  ReportPerVmm(state, 1);
}
BENCHMARK(BM_EigenGemm64x8);

// ---- The twin: Chip::vmm directly. ----
enum class Noise { kPerColumn, kPerDevice, kOff };

ChipProfile ProfileFor(Noise noise) {
  ChipProfile p = TypicalProfile();
  p.read_noise = noise != Noise::kOff;
  p.vmm_noise = noise == Noise::kPerDevice ? "per_device" : "per_column";
  return p;
}

// `vectors` input vectors per call; `relaxing` keeps devices relaxing and advances the clock
// after each call as the firmware does, so every call rebuilds the array cache.
void BM_TwinChipVmm(benchmark::State& state, Noise noise, int vectors, bool relaxing) {
  auto chip = MakeProgrammedChip(ProfileFor(noise), /*settle=*/!relaxing);
  const std::vector<uint8_t> in = MakeInputs(kPool + vectors, 7);
  std::vector<uint32_t> acc(static_cast<size_t>(vectors) * kCols);
  uint64_t op_id = 1'000'000;  // past the programming pulses' op_ids
  size_t i = 0;
  for (auto _ : state) {
    const auto x = std::span<const uint8_t>(in).subspan((i++ % kPool) * kRows,
                                                        static_cast<size_t>(vectors) * kRows);
    chip->vmm(kArray, kGain, x, op_id++, acc);
    if (relaxing) chip->advance_ns(static_cast<uint64_t>(vectors) * kPlanes * 1000);
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  ReportPerVmm(state, vectors);
}
BENCHMARK_CAPTURE(BM_TwinChipVmm, per_column, Noise::kPerColumn, 1, false);
BENCHMARK_CAPTURE(BM_TwinChipVmm, per_device, Noise::kPerDevice, 1, false);
BENCHMARK_CAPTURE(BM_TwinChipVmm, noise_off, Noise::kOff, 1, false);
BENCHMARK_CAPTURE(BM_TwinChipVmm, per_column_batch128, Noise::kPerColumn, kBatch, false);
BENCHMARK_CAPTURE(BM_TwinChipVmm, per_column_relaxing, Noise::kPerColumn, 1, true);

// ---- The whole stack: Board::vmm -> codec -> in-process transport -> Firmware -> Chip. ----
// The firmware is built here rather than by Board::open("sim:...") only so that the array can
// be programmed with the same pulses as above; the call path is the one open() gives.
void BM_BoardVmm(benchmark::State& state, int vectors) {
  auto fw = std::make_shared<xbar::twin::Firmware>(
      TypicalProfile(), xbar::twin::FirmwareOptions{kChipSeed, kNoiseSeed});
  ProgramArray(fw->chip_for_testing(), kArray);
  fw->chip_for_testing().advance_ns(kSettleNs);
  auto board = xbar::Board::connect(std::make_unique<xbar::InProcessTransport>(fw));
  if (!board) {
    state.SkipWithError("Board::connect failed");
    return;
  }
  const std::vector<uint8_t> in = MakeInputs(kPool + vectors, 7);
  size_t i = 0;
  for (auto _ : state) {
    const auto x = std::span<const uint8_t>(in).subspan((i++ % kPool) * kRows,
                                                        static_cast<size_t>(vectors) * kRows);
    auto acc = (*board)->vmm(kArray, x, kGain);
    if (!acc) {
      state.SkipWithError("Board::vmm failed");
      break;
    }
    benchmark::DoNotOptimize(acc->data());
    benchmark::ClobberMemory();
  }
  ReportPerVmm(state, vectors);
}
BENCHMARK_CAPTURE(BM_BoardVmm, single, 1);
BENCHMARK_CAPTURE(BM_BoardVmm, batch128, kBatch);

// Column currents of typical bit planes on the programmed array (for the state summary).
std::vector<double> TypicalCurrents() {
  const Eigen::MatrixXf gt = ProgrammedGt();
  const std::vector<Eigen::MatrixXf> pool = MakePlanePool();
  const Eigen::MatrixXf g = gt * pool[0];
  std::vector<double> i_A(g.size());
  for (Eigen::Index k = 0; k < g.size(); ++k) i_A[static_cast<size_t>(k)] = g.data()[k] * 0.2e-6;
  return i_A;
}

// One line on the programmed state and the ADC range it uses, so RESULTS.md can say what
// was multiplied (and that the codes are not mostly saturated, which would flatter nothing
// but would make the case unrealistic).
std::string ArrayStateSummary() {
  const Eigen::MatrixXf gt = ProgrammedGt();
  std::vector<float> g(gt.data(), gt.data() + gt.size());
  std::sort(g.begin(), g.end());
  const auto q = [&](double f) { return g[static_cast<size_t>(f * (g.size() - 1))]; };
  const Chip chip(TypicalProfile(), kChipSeed, kNoiseSeed);
  const std::vector<double> i_A = TypicalCurrents();
  const uint32_t full = (1u << chip.profile().adc_bits) - 1;
  int saturated = 0;
  double code_sum = 0;
  for (double i : i_A) {
    const uint32_t code = chip.adc_code(i, kGain);
    saturated += code == full;
    code_sum += code;
  }
  char buf[300];
  std::snprintf(buf, sizeof buf,
                "array %d SET to log-uniform 5-200 uS targets, settled: G uS min %.2f p5 %.1f "
                "median %.1f p95 %.1f max %.1f; gain %d: mean code %.0f of %u, %d/%zu saturated",
                kArray, q(0), q(0.05), q(0.5), q(0.95), q(1), kGain, code_sum / i_A.size(), full,
                saturated, i_A.size());
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("array_state", ArrayStateSummary());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
