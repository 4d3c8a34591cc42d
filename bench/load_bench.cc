// Load test: N concurrent clients mixing StreamInfer (20 ms chunks) and Infer on one deployment
// through a real xbard over TCP loopback, against the same board work done by calling the
// driver directly in this process, in the same run (bench/RESULTS.md, "Serving").
//
//   load_bench [seconds=60] [clients=32] [profile=typical] [direct_seconds=20] [board_uri]
//
// With board_uri (e.g. unix:/tmp/fwsim.sock: an xbar-fwsim process, pinned to its own core with
// taskset) both the daemon and the direct baseline use that board, so the twin's arithmetic no
// longer shares a core with gRPC; without it each uses an in-process twin of the profile.
//
// Each client has its own channel (its own connection: the daemon's queue is fair per
// connection) and loops: one utterance streamed chunk by chunk (send a chunk, wait for its
// answer), then one Infer of the same clip. Reported: errors, utterances+infers completed per
// client (min, max), the latency of each 20 ms chunk (send to answer, p50/p99), Infer latency,
// and the closed-loop steps per second served. The direct baseline runs the same work (streams
// of 15-step pushes through model::hardware_stream, and model::hardware_kernels for a whole
// clip, with the model's host layers) one request at a time on an in-process twin of the same
// profile, with the deployment's placements.
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <span>
#include <sstream>
#include <thread>

#include "model_proto.h"
#include "xbar/audio/audio.h"
#include "xbar/audio/front_end.h"
#include "xbar/drivers/board.h"
#include "xbar/model/model.h"
#include "xbar/v1/kernels.grpc.pb.h"
#include "xbar/v1/models.grpc.pb.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRate = 48000;
constexpr int kChunk = 960;  // 20 ms at 48 kHz = 15 steps

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<float> make_clip(int n, double f0) {
  std::vector<float> s(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double t = i / double(kRate);
    s[static_cast<size_t>(i)] = static_cast<float>(0.6 * std::sin(2 * M_PI * (f0 + 700 * t) * t));
  }
  return s;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct ClientStats {
  int completed = 0;  // utterances + infers
  uint64_t steps = 0;
  int errors = 0;
  std::string first_error;
  std::vector<double> chunk_ms, infer_ms;
};

void client_loop(const std::string& addr, const std::string& dep, const std::vector<float>& clip,
                 Clock::time_point end, ClientStats& st, int index) {
  grpc::ChannelArguments args;
  args.SetInt("xbar.client_index", index);  // a distinct channel (and connection) per client
  auto ch = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
  auto stub = xbar::v1::ModelService::NewStub(ch);
  auto fail = [&](const std::string& what) {
    ++st.errors;
    if (st.first_error.empty()) st.first_error = what;
  };
  while (Clock::now() < end) {
    {  // one utterance, streamed
      grpc::ClientContext ctx;
      auto rw = stub->StreamInfer(&ctx);
      xbar::v1::StreamInferResponse r;
      bool ok = true;
      uint32_t steps = 0;
      size_t pending = 0;  // samples sent that do not yet make a whole step
      for (size_t at = 0; at < clip.size() && ok; at += kChunk) {
        xbar::v1::StreamInferRequest q;
        if (at == 0) {
          q.set_deployment(dep);
          q.set_sample_rate_hz(kRate);
          q.set_path(xbar::v1::INFER_HARDWARE);
        }
        for (size_t i = at; i < std::min(clip.size(), at + kChunk); ++i) q.add_samples(clip[i]);
        pending += static_cast<size_t>(q.samples_size());
        const bool answered = pending >= 64;  // the daemon answers chunks that complete a step
        pending %= 64;
        const auto t0 = Clock::now();
        ok = rw->Write(q) && (!answered || rw->Read(&r));
        if (answered) {
          st.chunk_ms.push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        }
      }
      rw->WritesDone();
      while (ok && rw->Read(&r)) steps = r.steps();
      const grpc::Status s = rw->Finish();
      if (!ok || !s.ok()) {
        fail("StreamInfer: " + s.error_message());
      } else {
        ++st.completed;
        st.steps += steps + 1;  // + the flush step
      }
    }
    if (Clock::now() >= end) break;
    {  // one Infer of the same clip
      grpc::ClientContext ctx;
      xbar::v1::InferRequest q;
      q.set_deployment(dep);
      q.set_path(xbar::v1::INFER_HARDWARE);
      q.set_sample_rate_hz(kRate);
      for (float v : clip) q.add_samples(v);
      xbar::v1::InferResponse r;
      const auto t0 = Clock::now();
      const grpc::Status s = stub->Infer(&ctx, q, &r);
      st.infer_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      if (!s.ok()) {
        fail("Infer: " + s.error_message());
      } else {
        ++st.completed;
        st.steps += r.steps() + 1;
      }
    }
  }
}

// The deployment as the daemon recorded it, as placed kernels (ModelServiceImpl::load).
bool placed_from(const xbar::v1::Deployment& dep, xbar::model::ModelSpec& spec,
                 std::vector<xbar::kernel::CompiledKernel>& compiled,
                 std::vector<xbar::model::PlacedKernel>& placed) {
  if (!dep.has_model()) return false;
  auto s = xbar::server::model_from_proto(dep.model());
  if (!s) return false;
  spec = *s;
  for (const auto& k : spec.kernels.kernels) {
    compiled.push_back(xbar::kernel::compile(k, spec.kernels.window));
  }
  placed.resize(compiled.size());
  for (const auto& p : dep.placements()) {
    auto& pk = placed[p.kernel()];
    pk.compiled = compiled[p.kernel()];
    pk.array = static_cast<int>(p.array());
    pk.u_max = xbar::model::input_bound(spec, static_cast<int>(p.kernel()));
    pk.placement.row_of.assign(p.row_of_logical().begin(), p.row_of_logical().end());
    pk.placement.col_of.assign(p.col_of_logical().begin(), p.col_of_logical().end());
    pk.g_uS.resize(64, 64);
    for (int i = 0; i < 64 * 64; ++i) pk.g_uS(i / 64, i % 64) = p.readback_us(i);
  }
  return true;
}

// The same work as one client's loop, one request at a time, on the driver directly.
struct Direct {
  uint64_t steps = 0;
  int completed = 0;
  double seconds = 0;
  std::vector<double> chunk_ms;
};

Direct run_direct(const std::string& uri, const xbar::v1::Deployment& dep,
                  const std::vector<float>& clip, double seconds) {
  Direct d;
  xbar::model::ModelSpec spec;
  std::vector<xbar::kernel::CompiledKernel> compiled;
  std::vector<xbar::model::PlacedKernel> placed;
  if (!placed_from(dep, spec, compiled, placed)) {
    fmt::print(stderr, "direct: deployment unreadable\n");
    return d;
  }
  auto board = xbar::Board::open(uri);
  if (!board) {
    fmt::print(stderr, "direct: {}\n", board.error().message);
    return d;
  }
  const int h = spec.width();
  const auto t_start = Clock::now();
  const auto end =
      t_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    // A stream: encoder per 15-step chunk, push, the streaming head.
    auto ks = xbar::model::hardware_stream(**board, placed, 0);
    if (!ks) {
      fmt::print(stderr, "direct: {}\n", ks.error().message);
      return d;
    }
    xbar::model::StreamingHead head(spec);
    auto feed = [&](const std::vector<Eigen::VectorXd>& y) {
      for (Eigen::Index t = 0; t < (y.empty() ? 0 : y.front().size()); ++t) {
        Eigen::VectorXd step(h);
        for (int k = 0; k < h; ++k) step(k) = y[static_cast<size_t>(k)](t);
        head.push(step);
      }
    };
    // The model's front end as StreamInfer runs it (block average or log-mel).
    auto fe = xbar::audio::StreamingFrontEnd::create(spec.preprocessing);
    if (!fe) return d;
    auto to_u = [](const std::vector<float>& v) -> Eigen::VectorXd {
      return Eigen::Map<const Eigen::VectorXf>(v.data(), static_cast<Eigen::Index>(v.size()))
          .cast<double>();
    };
    for (size_t at = 0; at < clip.size(); at += kChunk) {
      const auto t0 = Clock::now();
      auto values = fe->push(
          std::span<const float>(clip).subspan(at, std::min<size_t>(kChunk, clip.size() - at)));
      if (!values) return d;
      const Eigen::VectorXd u = to_u(*values);
      auto y = (*ks)->push(xbar::model::encode(spec, u));
      if (!y) return d;
      feed(*y);
      d.steps += static_cast<uint64_t>(u.size() / fe->channels());
      (void)head.result();
      d.chunk_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    const std::vector<float> last = fe->finish();
    if (!last.empty()) {
      auto y = (*ks)->push(xbar::model::encode(spec, to_u(last)));
      if (!y) return d;
      feed(*y);
      d.steps += 1;
    }
    auto y = (*ks)->finish();
    if (!y) return d;
    feed(*y);
    d.steps += 1;
    ++d.completed;
    // An Infer: the whole clip, preprocessed as Infer does (padded to the model's length), in
    // one run.
    auto hw = xbar::model::hardware_kernels(**board, placed);
    if (!hw) return d;
    auto values =
        xbar::audio::preprocess({clip, spec.preprocessing.sample_rate_hz}, spec.preprocessing);
    if (!values) return d;
    const Eigen::VectorXd u = to_u(*values);
    auto f = xbar::model::forward(spec, u, *hw);
    if (!f) return d;
    d.steps += static_cast<uint64_t>(u.size() / fe->channels()) + 1;
    ++d.completed;
  }
  d.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 60;
  const int clients = argc > 2 ? std::atoi(argv[2]) : 32;
  const std::string profile = argc > 3 ? argv[3] : "typical";
  const double direct_seconds = argc > 4 ? std::atof(argv[4]) : 20;
  const std::string uri = argc > 5 ? argv[5] : fmt::format("sim:profile={},seed=1", profile);

  // xbard on the embedded twin, TCP loopback, a fresh state dir.
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("xbar-load-{}", getpid());
  std::filesystem::create_directories(dir);
  const int port = 40000 + getpid() % 20000;
  const std::string addr = fmt::format("127.0.0.1:{}", port);
  std::vector<std::string> argv_d = {
      XBARD_PATH,    "--board", uri, "--listen", addr, "--state-dir", (dir / "state").string(),
      "--log-level", "warn"};
  std::vector<char*> cargs;
  for (auto& a : argv_d) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, cargs[0], nullptr, nullptr, cargs.data(), environ) != 0) return 1;
  auto cleanup = [&] {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    std::filesystem::remove_all(dir);
  };
  auto ch = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    fmt::print(stderr, "xbard did not come up on {}\n", addr);
    cleanup();
    return 1;
  }
  // Deploy the example model.
  xbar::v1::DeployModelRequest dreq;
  if (!google::protobuf::util::JsonStringToMessage(
           slurp(std::string(XBAR_SOURCE_DIR) + "/models/example-model.json"), dreq.mutable_model())
           .ok()) {
    cleanup();
    return 1;
  }
  std::string dep_id;
  {
    auto stub = xbar::v1::ModelService::NewStub(ch);
    grpc::ClientContext ctx;
    auto r = stub->DeployModel(&ctx, dreq);
    xbar::v1::DeployKernelResponse m;
    while (r->Read(&m)) {
      if (m.has_deployment()) dep_id = m.deployment().id();
    }
    if (auto s = r->Finish(); !s.ok() || dep_id.empty()) {
      fmt::print(stderr, "deploy: {}\n", s.error_message());
      cleanup();
      return 1;
    }
  }
  xbar::v1::Deployment dep;
  {
    auto stub = xbar::v1::KernelService::NewStub(ch);
    grpc::ClientContext ctx;
    xbar::v1::GetDeploymentRequest q;
    q.set_id(dep_id);
    if (!stub->GetDeployment(&ctx, q, &dep).ok()) {
      cleanup();
      return 1;
    }
  }
  const std::vector<float> clip = make_clip(55728, 250);  // 1.161 s: 871 steps
  fmt::print("machine: {} cores; profile {}; deployment {} ({})\n",
             std::thread::hardware_concurrency(), profile, dep_id, dep.state());

  // 1. The direct baseline (xbard idle meanwhile).
  const Direct direct = run_direct(uri, dep, clip, direct_seconds);
  const double direct_sps = direct.seconds > 0 ? double(direct.steps) / direct.seconds : 0;
  fmt::print(
      "direct driver: {} requests, {} steps in {:.1f} s = {:.0f} steps/s; 15-step push "
      "p50 {:.3f} ms p99 {:.3f} ms\n",
      direct.completed, direct.steps, direct.seconds, direct_sps, pct(direct.chunk_ms, 0.5),
      pct(direct.chunk_ms, 0.99));

  // 2. The daemon under N clients.
  std::vector<ClientStats> stats(static_cast<size_t>(clients));
  const auto t0 = Clock::now();
  const auto end =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back(client_loop, std::cref(addr), std::cref(dep_id), std::cref(clip), end,
                         std::ref(stats[static_cast<size_t>(i)]), i);
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  int errors = 0, min_done = 1 << 30, max_done = 0;
  uint64_t steps = 0;
  std::vector<double> chunk_ms, infer_ms;
  std::string first_error;
  for (const auto& s : stats) {
    errors += s.errors;
    if (first_error.empty()) first_error = s.first_error;
    min_done = std::min(min_done, s.completed);
    max_done = std::max(max_done, s.completed);
    steps += s.steps;
    chunk_ms.insert(chunk_ms.end(), s.chunk_ms.begin(), s.chunk_ms.end());
    infer_ms.insert(infer_ms.end(), s.infer_ms.begin(), s.infer_ms.end());
  }
  const double sps = double(steps) / wall;
  fmt::print(
      "xbard, {} clients, {:.1f} s: {} errors{}; completed per client min {} max {} "
      "(ratio {:.2f}); {} chunks p50 {:.2f} ms p99 {:.2f} ms; {} infers p50 {:.1f} ms "
      "p99 {:.1f} ms; {} steps = {:.0f} steps/s\n",
      clients, wall, errors, first_error.empty() ? "" : " (first: " + first_error + ")", min_done,
      max_done, min_done > 0 ? double(max_done) / min_done : 0.0, chunk_ms.size(),
      pct(chunk_ms, 0.5), pct(chunk_ms, 0.99), infer_ms.size(), pct(infer_ms, 0.5),
      pct(infer_ms, 0.99), steps, sps);
  fmt::print("throughput ratio xbard / direct driver: {:.3f}\n",
             direct_sps > 0 ? sps / direct_sps : 0);
  cleanup();
  return errors == 0 ? 0 : 1;
}
