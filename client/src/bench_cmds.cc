#include "bench_cmds.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <numbers>
#include <numeric>

#include "cli.h"
#include "json_out.h"
#include "model_cmds.h"
#include "progress.h"
#include "xbar/v1/board.grpc.pb.h"
#include "xbar/v1/models.grpc.pb.h"

namespace xbar::client {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size()));
  const size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return v[std::min(i, v.size() - 1)];
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct ReadFigure {
  uint32_t array = 0, rows = 0, cols = 0;
  std::vector<double> ms;
};

struct InferFigure {
  bool done = false;
  std::string path;
  int rate_hz = 0;
  uint32_t steps = 0;
  double first_ms = 0;
  std::vector<double> ms, board_ms;
  std::string result;  // the class the synthetic clip got
};

// A synthetic clip: a 200 -> 800 Hz chirp at 0.4 of full scale.
std::vector<float> chirp(double seconds, int rate_hz) {
  const auto n = static_cast<size_t>(seconds * rate_hz);
  std::vector<float> s(n);
  for (size_t t = 0; t < n; ++t) {
    const double tt = static_cast<double>(t) / rate_hz;
    const double f = 200.0 + 600.0 * static_cast<double>(t) / static_cast<double>(n);
    s[t] = static_cast<float>(0.4 * std::sin(2 * std::numbers::pi * f * tt));
  }
  return s;
}

}  // namespace

struct BenchCommands::Impl {
  CLI::App* bench = nullptr;
  uint32_t status_calls = 10;
  uint32_t repeat = 3;
  uint32_t avg = 1;
  std::string deployment;
  uint32_t calls = 20;
  double clip_ms = 1000;
  int rate_hz = 0;
  bool software = false;

  int run_bench(const Session& session) const;

 private:
  // The measured figures, filled step by step; a step that fails returns the exit code.
  struct Report {
    v1::BoardInfo info;
    std::vector<double> status_ms;
    v1::BoardStatus before, after;
    std::vector<ReadFigure> reads;
    InferFigure inf;
  };
  std::optional<int> time_status(const Session& session, v1::BoardService::Stub& board,
                                 Report& r) const;
  std::optional<int> time_reads(const Session& session, v1::BoardService::Stub& board,
                                Progress& progress, Report& r) const;
  std::optional<int> time_inference(const Session& session, Progress& progress, Report& r) const;
  void print_json(const Session& session, const Report& r) const;
  void print_text(const Session& session, const Report& r) const;
};

BenchCommands::BenchCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.bench = app.add_subcommand(
      "bench", "quick board health figure: RPC round trip, array reads, optionally inference");
  m.bench->add_option("--status-calls", m.status_calls, "GetBoardStatus round trips timed")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  m.bench->add_option("--repeat", m.repeat, "full reads of each array timed")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  m.bench->add_option("--avg", m.avg, "reads averaged per device in each read (1..64)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  m.bench->add_option("--deployment,-d", m.deployment,
                      "also time inference on this model deployment (dep-...)");
  m.bench->add_option("--calls", m.calls, "timed Infer calls (after one warm-up call)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  m.bench->add_option("--clip-ms", m.clip_ms, "length of the synthetic clip (a chirp)")
      ->check(CLI::Range(10.0, 60000.0))
      ->capture_default_str();
  m.bench->add_option("--rate", m.rate_hz, "the clip's sample rate in Hz (default: the model's)")
      ->check(CLI::Range(1000, 384000));
  m.bench->add_flag("--software", m.software, "time the software path instead of the board");
  m.bench->footer(footer_with(
      "Nothing is pulsed: reads and closed-loop inference leave the arrays as they are. Times are\n"
      "wall-clock at this client (network and daemon included); p50/p99 are nearest-rank.\n"
      "Reads: devices/s = rows x cols / median read time. Inference: steps/s = steps per call x\n"
      "calls / total time of the timed calls.\n"
      "Examples:\n  xbarctl bench\n  xbarctl bench -d dep-0123456789ab --calls 50\n"
      "  xbarctl --json bench --repeat 5 -d dep-0123456789ab > health.json"));
}

BenchCommands::~BenchCommands() = default;

std::optional<int> BenchCommands::run(const Session& session) const {
  if (*impl_->bench) return impl_->run_bench(session);
  return std::nullopt;
}

namespace {

double devices_per_s(const ReadFigure& f) {
  const double med = percentile(f.ms, 50);
  return med > 0 ? 1000.0 * f.rows * f.cols / med : 0.0;
}

double infer_total_ms(const InferFigure& inf) {
  return std::accumulate(inf.ms.begin(), inf.ms.end(), 0.0);
}

double steps_per_s(const InferFigure& inf) {
  const double total = infer_total_ms(inf);
  return total > 0 ? 1000.0 * inf.steps * static_cast<double>(inf.ms.size()) / total : 0;
}

}  // namespace

// 1. Round trips: the daemon asks the board for its counters each time.
std::optional<int> BenchCommands::Impl::time_status(const Session& session,
                                                    v1::BoardService::Stub& board,
                                                    Report& r) const {
  for (uint32_t i = 0; i < status_calls; ++i) {
    auto ctx = session.context();
    const auto t0 = Clock::now();
    const grpc::Status s = board.GetBoardStatus(ctx.get(), {}, &r.before);
    if (!s.ok()) return session.fail(s);
    r.status_ms.push_back(ms_since(t0));
  }
  return std::nullopt;
}

// 2. Every array read whole through the ADC.
std::optional<int> BenchCommands::Impl::time_reads(const Session& session,
                                                   v1::BoardService::Stub& board,
                                                   Progress& progress, Report& r) const {
  const uint32_t total_reads = r.info.arrays() * repeat;
  for (uint32_t a = 0; a < r.info.arrays(); ++a) {
    ReadFigure f{.array = a, .rows = r.info.rows(), .cols = r.info.cols(), .ms = {}};
    for (uint32_t k = 0; k < repeat; ++k) {
      progress.bar("bench reads", static_cast<double>(a * repeat + k) / total_reads,
                   fmt::format("array {}", a));
      v1::ReadConductancesRequest req;
      req.set_array(a);
      req.set_n_avg(avg);
      auto ctx = session.context();
      const auto t0 = Clock::now();
      auto reader = board.ReadConductances(ctx.get(), req);
      v1::ConductanceChunk chunk;
      size_t values = 0;
      while (reader->Read(&chunk)) values += static_cast<size_t>(chunk.g_us_size());
      const grpc::Status s = reader->Finish();
      if (!s.ok()) return session.fail(s);
      f.ms.push_back(ms_since(t0));
      if (values != static_cast<size_t>(f.rows) * f.cols) {
        std::cerr << fmt::format("xbarctl: array {}: the daemon sent {} values, expected {}x{}\n",
                                 a, values, f.rows, f.cols);
        return kFailed;
      }
    }
    r.reads.push_back(std::move(f));
  }
  progress.bar("bench reads", 1.0, "done");
  progress.finish();
  return std::nullopt;
}

// 3. Inference on a synthetic clip (one warm-up call, then the timed ones).
std::optional<int> BenchCommands::Impl::time_inference(const Session& session, Progress& progress,
                                                       Report& r) const {
  InferFigure& inf = r.inf;
  inf.path = software ? "software" : "hardware";
  inf.rate_hz = rate_hz;
  if (inf.rate_hz == 0) {
    auto a = model_audio(session, deployment);
    if (!a) return session.fail(a.error());
    inf.rate_hz = static_cast<int>(a->sample_rate_hz);
  }
  auto models = v1::ModelService::NewStub(session.channel());
  v1::InferRequest req;
  req.set_deployment(deployment);
  const std::vector<float> clip = chirp(clip_ms / 1000.0, inf.rate_hz);
  req.mutable_samples()->Assign(clip.begin(), clip.end());
  req.set_sample_rate_hz(static_cast<uint32_t>(inf.rate_hz));
  req.set_path(software ? v1::INFER_SOFTWARE : v1::INFER_HARDWARE);
  for (uint32_t i = 0; i <= calls; ++i) {
    progress.bar(fmt::format("bench infer ({})", inf.path), static_cast<double>(i) / (calls + 1),
                 i == 0 ? "warm-up" : fmt::format("call {}/{}", i, calls));
    v1::InferResponse out;
    auto ctx = session.context();
    const auto t0 = Clock::now();
    const grpc::Status s = models->Infer(ctx.get(), req, &out);
    const double ms = ms_since(t0);
    if (!s.ok()) return session.fail(s);
    if (i == 0) {
      inf.first_ms = ms;
      inf.steps = out.steps();
      inf.result =
          out.class_name().empty() ? fmt::format("class {}", out.label()) : out.class_name();
      continue;
    }
    inf.ms.push_back(ms);
    inf.board_ms.push_back(out.board_ms());
  }
  progress.bar(fmt::format("bench infer ({})", inf.path), 1.0, "done");
  progress.finish();
  inf.done = true;
  return std::nullopt;
}

void BenchCommands::Impl::print_json(const Session& session, const Report& r) const {
  const InferFigure& inf = r.inf;
  Json status;
  status["calls"] = status_calls;
  status["p50_ms"] = json_fixed(percentile(r.status_ms, 50), 3);
  status["p99_ms"] = json_fixed(percentile(r.status_ms, 99), 3);
  Json board_counters;
  board_counters["uptime_ns"] = r.after.uptime_ns();
  board_counters["ops_executed"] = r.after.ops_executed();
  board_counters["pulses_applied"] = r.after.pulses_applied();
  board_counters["pulses_during_bench"] = r.after.pulses_applied() - r.before.pulses_applied();
  board_counters["last_error"] = r.after.last_error();
  Json read_figures = Json::array();
  for (const auto& f : r.reads) {
    Json j;
    j["array"] = f.array;
    j["rows"] = f.rows;
    j["cols"] = f.cols;
    j["n_avg"] = avg;
    j["repeat"] = repeat;
    j["best_ms"] = json_fixed(*std::min_element(f.ms.begin(), f.ms.end()), 3);
    j["median_ms"] = json_fixed(percentile(f.ms, 50), 3);
    j["devices_per_s"] = json_fixed(devices_per_s(f), 1);
    read_figures.push_back(std::move(j));
  }
  Json infer = nullptr;
  if (inf.done) {
    infer = Json::object();
    infer["deployment"] = deployment;
    infer["path"] = inf.path;
    infer["calls"] = calls;
    infer["clip_ms"] = json_number(clip_ms);
    infer["sample_rate_hz"] = inf.rate_hz;
    infer["steps"] = inf.steps;
    infer["result"] = inf.result;
    infer["first_ms"] = json_fixed(inf.first_ms, 3);
    infer["p50_ms"] = json_fixed(percentile(inf.ms, 50), 3);
    infer["p99_ms"] = json_fixed(percentile(inf.ms, 99), 3);
    infer["mean_ms"] = json_fixed(infer_total_ms(inf) / static_cast<double>(inf.ms.size()), 3);
    infer["board_ms_p50"] = json_fixed(percentile(inf.board_ms, 50), 3);
    infer["steps_per_s"] = json_fixed(steps_per_s(inf), 1);
  }
  Json j;
  j["server"] = session.options().server;
  j["serial"] = r.info.serial();
  j["simulated"] = r.info.simulated();
  j["backend"] = r.info.backend();
  j["status"] = std::move(status);
  j["board"] = std::move(board_counters);
  j["reads"] = std::move(read_figures);
  j["infer"] = std::move(infer);
  std::cout << dump(j) << "\n";
}

void BenchCommands::Impl::print_text(const Session& session, const Report& r) const {
  const InferFigure& inf = r.inf;
  std::cout << fmt::format("board {}{} via {} at {}\n", r.info.serial(),
                           r.info.simulated() ? " (simulated twin)" : "", r.info.backend(),
                           session.options().server);
  std::cout << fmt::format(
      "board clock {:.3f} s, {} ops, {} pulses ({} during the bench), "
      "last error {}\n",
      r.after.uptime_ns() * 1e-9, r.after.ops_executed(), r.after.pulses_applied(),
      r.after.pulses_applied() - r.before.pulses_applied(), r.after.last_error());
  std::cout << fmt::format("{:<24} {:<28} {}\n", "CHECK", "WHAT", "RESULT");
  std::cout << fmt::format("{:<24} {:<28} p50 {:.2f} ms  p99 {:.2f} ms\n", "status round trip",
                           fmt::format("{} calls", status_calls), percentile(r.status_ms, 50),
                           percentile(r.status_ms, 99));
  for (const auto& f : r.reads) {
    std::cout << fmt::format("{:<24} {:<28} median {:.1f} ms (best {:.1f})  {:.0f} devices/s\n",
                             fmt::format("read array {}", f.array),
                             fmt::format("{}x{}, avg {}, {} reads", f.rows, f.cols, avg, repeat),
                             percentile(f.ms, 50), *std::min_element(f.ms.begin(), f.ms.end()),
                             devices_per_s(f));
  }
  if (inf.done) {
    std::cout << fmt::format(
        "{:<24} {:<28} p50 {:.1f} ms  p99 {:.1f} ms  {:.0f} steps/s{}  (warm-up {:.1f} ms)\n",
        fmt::format("infer {}", inf.path),
        fmt::format("{} x {:g} ms clip, {} steps", calls, clip_ms, inf.steps),
        percentile(inf.ms, 50), percentile(inf.ms, 99), steps_per_s(inf),
        software ? "" : fmt::format(", board p50 {:.1f} ms", percentile(inf.board_ms, 50)),
        inf.first_ms);
  }
}

int BenchCommands::Impl::run_bench(const Session& session) const {
  auto board = v1::BoardService::NewStub(session.channel());
  Report r;
  {
    auto ctx = session.context();
    const grpc::Status s = board->GetBoardInfo(ctx.get(), {}, &r.info);
    if (!s.ok()) return session.fail(s);
  }
  Progress progress(session.progress());
  if (auto rc = time_status(session, *board, r)) return *rc;
  if (auto rc = time_reads(session, *board, progress, r)) return *rc;
  if (!deployment.empty()) {
    if (auto rc = time_inference(session, progress, r)) return *rc;
  }
  // The counters afterwards: a bench pulses nothing.
  {
    auto ctx = session.context();
    const grpc::Status s = board->GetBoardStatus(ctx.get(), {}, &r.after);
    if (!s.ok()) return session.fail(s);
  }
  if (session.json()) {
    print_json(session, r);
  } else {
    print_text(session, r);
  }
  return kOk;
}

}  // namespace xbar::client
