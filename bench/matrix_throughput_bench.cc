// Multiply throughput through xbard against the driver called directly, in one run
// (bench/RESULTS.md, "Matrices"): the same 64 x 32 matrix on the same twin chip (in-process
// `sim:`, typical, seed 1), batches of 1024 N(0,1) vectors, for a few seconds each.
//
//   matrix_throughput_bench [seconds per side = 5] [batch = 1024]
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>

#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/matrix/deploy.h"
#include "xbar/v1/matrices.grpc.pb.h"

extern char** environ;

using namespace xbar;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kBoard = "sim:profile=typical,seed=1";

Eigen::MatrixXd randn(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z;
  return Eigen::MatrixXd::NullaryExpr(rows, cols, [&] { return z(rng); });
}

// Vectors per second of `call` (one batch per call) over `seconds`.
template <class F>
double rate(double seconds, int batch, F call) {
  const auto t0 = Clock::now();
  long vectors = 0;
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    if (!call()) return 0;
    vectors += batch;
  }
  return vectors / std::chrono::duration<double>(Clock::now() - t0).count();
}

// The driver directly: deploy (no faults known: the digital fixes only) and multiply.
double direct(const Eigen::MatrixXd& w, const Eigen::MatrixXd& x, double seconds) {
  auto board = Board::open(kBoard);
  if (!board) return 0;
  Board& b = **board;
  matrix::MatrixSpec spec;
  spec.w = w;
  spec.quant.bits = 4;
  const Eigen::MatrixXd wq = matrix::quantize(spec);
  const double scale =
      (spec.window.g_max_uS - spec.window.g_min_uS) / matrix::effective_range(spec);
  auto plan = matrix::plan_tiles(64, 32, 3, 64, 64);
  const auto tiles =
      matrix::assign_tiles(*plan, wq, spec.window, scale, 64, 64, {{}, {}, {}}, {0, 1, 2}, {});
  matrix::MatrixRun run{64, 32, plan->orientation, scale, {}, {}, {}};
  for (const matrix::TileAssignment& a : tiles) {
    ProgramVerifyConfig cfg;
    cfg.tol_uS = 2;
    auto res = program_verify(b, a.array, a.placement.target_uS, cfg);
    if (!res) return 0;
    const matrix::Tile& t = plan->tiles[static_cast<size_t>(a.tile)];
    auto rb = matrix::tile_readback(b.info(), t, plan->orientation, a.placement.row_of,
                                    a.placement.col_of, res->final_uS, wq, scale, true);
    if (!rb) return 0;
    run.tiles.push_back({t, a.array, a.placement.row_of, a.placement.col_of, rb->gain_index,
                         rb->codes_per_uS, rb->fixes});
  }
  if (!matrix::calibrate(b, run, wq, randn(64, 64, 9))) return 0;
  return rate(seconds, static_cast<int>(x.rows()),
              [&] { return matrix::multiply(b, run, x, {}).has_value(); });
}

void to_proto(const Eigen::MatrixXd& m, v1::Matrix* out) {
  out->set_rows(static_cast<uint32_t>(m.rows()));
  out->set_cols(static_cast<uint32_t>(m.cols()));
  for (Eigen::Index r = 0; r < m.rows(); ++r)
    for (Eigen::Index c = 0; c < m.cols(); ++c) out->add_values(m(r, c));
}

// Through xbard on its own copy of the same twin chip, over a Unix socket.
double through_xbard(const Eigen::MatrixXd& w, const Eigen::MatrixXd& x, double seconds) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("xbar-mtb-{}", getpid());
  std::filesystem::create_directories(dir);
  const std::string addr = "unix:" + (dir / "xbard.sock").string();
  std::vector<std::string> args = {
      XBARD_PATH,    "--board", kBoard, "--listen", addr, "--state-dir", (dir / "state").string(),
      "--log-level", "warn"};
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, cargs[0], nullptr, nullptr, cargs.data(), environ) != 0) return 0;
  double r = 0;
  auto ch = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  if (ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20))) {
    auto stub = v1::MatrixService::NewStub(ch);
    v1::DeployMatrixRequest dreq;
    to_proto(w, dreq.mutable_matrix());
    dreq.mutable_quantization()->set_bits(4);
    std::string id;
    {
      grpc::ClientContext ctx;
      auto reader = stub->DeployMatrix(&ctx, dreq);
      v1::DeployKernelResponse m;
      while (reader->Read(&m))
        if (m.has_deployment()) id = m.deployment().id();
      reader->Finish();
    }
    v1::MultiplyRequest req;
    req.set_deployment(id);
    to_proto(x, req.mutable_inputs());
    r = rate(seconds, static_cast<int>(x.rows()), [&] {
      grpc::ClientContext ctx;
      v1::MultiplyResponse out;
      return stub->Multiply(&ctx, req, &out).ok();
    });
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5;
  const int batch = argc > 2 ? std::atoi(argv[2]) : 1024;
  const Eigen::MatrixXd w = randn(64, 32, 1), x = randn(batch, 64, 2);
  const double d = direct(w, x, seconds);
  const double g = through_xbard(w, x, seconds);
  fmt::print("64 x 32, 4-bit, {} ({}), batches of {}, {} s each\n", kBoard, "in-process twin",
             batch, seconds);
  fmt::print("driver directly   {:>10.0f} vectors/s\n", d);
  fmt::print("through xbard     {:>10.0f} vectors/s\n", g);
  fmt::print("ratio             {:>10.3f}\n", d > 0 ? g / d : 0.0);
  return d > 0 && g > 0 ? 0 : 1;
}
