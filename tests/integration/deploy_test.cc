// Deploying S4D kernels end to end with real processes: xbar-fwsim (the twin, imssa profile,
// seed 13: every array has 1-3 stuck-high devices), xbard in front of it, and xbarctl's deploy,
// deployments, deployment, undeploy and map commands. What the daemon reports is checked
// against the twin's ground truth (its fault map and conductances).
#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "model_proto.h"
#include "process.h"
#include "xbar/drivers/board.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/v1/kernels.pb.h"
#include "xbar/v1/models.grpc.pb.h"

namespace xbar {
namespace {

using testing::Process;
using testing::TempDir;

const std::string kExample =
    (std::filesystem::path(XBAR_SOURCE_DIR) / "configs/kernels/example.json").string();

struct Ran {
  int rc = -1;
  std::string out, err;
};

// Runs a command to completion with stdout and stderr captured apart (--json output is parsed;
// the diagnostics go to stderr).
Ran run_split(std::vector<std::string> argv, const std::filesystem::path& dir) {
  const auto out_path = dir / "ctl.out", err_path = dir / "ctl.err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  Ran r;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&fa);
  r.out = testing::read_file(out_path);
  r.err = testing::read_file(err_path);
  return r;
}

std::ostream& operator<<(std::ostream& os, const Ran& r) {
  return os << "exit " << r.rc << "\n--- stdout\n" << r.out << "\n--- stderr\n" << r.err;
}

// xbarctl's --json for a deployment is the protobuf JSON mapping of xbar.v1.Deployment, plus
// the "operation" id of the deploy (not a Deployment field, so ignored here).
v1::Deployment parse_deployment(const std::string& json) {
  v1::Deployment d;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  const auto s = google::protobuf::util::JsonStringToMessage(json, &d, opts);
  EXPECT_TRUE(s.ok()) << s.message() << "\n" << json;
  return d;
}

bool is_permutation_of_0_63(const google::protobuf::RepeatedField<uint32_t>& v) {
  if (v.size() != kernel::kSide) return false;
  std::vector<uint32_t> sorted(v.begin(), v.end());
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < kernel::kSide; ++i) {
    if (sorted[static_cast<size_t>(i)] != static_cast<uint32_t>(i)) return false;
  }
  return true;
}

kernel::Placement placement_of(const v1::Placement& p) {
  kernel::Placement pl;
  pl.row_of.assign(p.row_of_logical().begin(), p.row_of_logical().end());
  pl.col_of.assign(p.col_of_logical().begin(), p.col_of_logical().end());
  return pl;
}

Eigen::MatrixXd matrix_of(const google::protobuf::RepeatedField<float>& v) {
  Eigen::MatrixXd m(kernel::kSide, kernel::kSide);
  for (int i = 0; i < kernel::kSide * kernel::kSide; ++i)
    m(i / kernel::kSide, i % kernel::kSide) = v[i];
  return m;
}

class Deploy : public ::testing::Test {
 protected:
  void SetUp() override {
    // A stream left holding the board is held far longer than any call here waits (the
    // default idle timeout is 30 s): a call that finds the board free did not wait for one.
    { std::ofstream(dir_.path() / "xbard.yaml") << "scheduling: {stream_idle_timeout_s: 3600}\n"; }
    auto t = testing::start_twin_and_daemon(dir_.path(), XBAR_FWSIM_PATH, XBARD_PATH, "imssa", 13,
                                            dir_.path() / "state",
                                            {"--config", (dir_.path() / "xbard.yaml").string()});
    fwsim_sock_ = t.fwsim_sock;
    xbard_addr_ = t.xbard_addr;
    fwsim_ = std::move(t.fwsim);
    xbard_ = std::move(t.xbard);
    ASSERT_TRUE(t.fwsim_up) << fwsim_->output();
    ASSERT_TRUE(testing::eventually([&] { return ctl({"info"}).rc == 0; })) << xbard_->output();
    auto b = Board::open("unix:" + fwsim_sock_.string());
    ASSERT_TRUE(b.has_value()) << b.error().message;
    board_ = std::move(*b);
  }

  Ran ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--addr", xbard_addr_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(testing::with_generous_timeout(argv), dir_.path());
  }

  // Records every array's stuck devices, as an operator does before deploying.
  void scan_all() {
    for (int a = 0; a < 3; ++a) {
      const Ran r = ctl({"scan", "--array", std::to_string(a)});
      ASSERT_EQ(r.rc, 0) << r;
    }
  }

  uint64_t pulses_applied() {
    auto s = board_->status();
    EXPECT_TRUE(s.has_value());
    return s ? s->pulses_applied : 0;
  }

  TempDir dir_;
  std::filesystem::path fwsim_sock_;
  std::string xbard_addr_;
  std::unique_ptr<Process> fwsim_, xbard_;
  std::unique_ptr<Board> board_;  // the twin directly, for its ground truth
};

TEST_F(Deploy, ScanThenDeployAvoidsEveryStuckDevice) {
  ASSERT_NO_FATAL_FAILURE(scan_all());
  const Ran r = ctl({"--json", "deploy", kExample});
  ASSERT_TRUE(r.rc == 0 || r.rc == 1) << r;  // ready, or degraded
  const v1::Deployment dep = parse_deployment(r.out);
  ASSERT_TRUE(dep.id().starts_with("dep-")) << r;
  EXPECT_EQ(dep.id().size(), 16u);
  EXPECT_TRUE(dep.state() == "ready" || dep.state() == "degraded") << dep.state();
  EXPECT_EQ(r.rc == 0, dep.state() == "ready");
  EXPECT_EQ(dep.remap(), v1::REMAP_AUTO);
  ASSERT_EQ(dep.placements_size(), 3) << r;

  std::set<uint32_t> arrays, kernels;
  for (const v1::Placement& p : dep.placements()) {
    SCOPED_TRACE(fmt::format("kernel {} on array {}", p.kernel(), p.array()));
    arrays.insert(p.array());
    kernels.insert(p.kernel());
    EXPECT_LT(p.array(), 3u);
    EXPECT_EQ(p.states(), 14u);
    // imssa: every stuck device is avoidable; the scans recorded 1-3 on each array.
    EXPECT_GE(p.faults(), 1u);
    EXPECT_LE(p.faults(), 3u);
    EXPECT_EQ(p.faults_avoided() + p.faults_compensated(), p.faults());
    EXPECT_EQ(p.faults_residual(), 0u);
    EXPECT_TRUE(std::isfinite(p.nrmse()));
    // The read-back NRMSE is programming error through the recurrence; how much it varies
    // with the twin's noise draw (which moves with the op count before the deploy) depends on
    // the kernel: kernel 0 (dt 0.1, |A_bar| = 0.95) amplifies it most. Over 21 draws: kernel 0
    // 0.09..0.42, kernel 1 0.05..0.24, kernel 2 0.02..0.09. The twin's relaxation runs on the
    // wall clock, so a loaded machine moves it too: kernel 0 read 0.68 in a CI run that shared
    // the 2 cores with the accuracy benchmark, and 1.4e9 in another (spectral radius just
    // below 1: programming error on its state devices, which remapping does not see; open in
    // issue 7). Kernel 0 is therefore bounded only by the daemon telling: above 0.5 the
    // deployment must be degraded, never ready.
    if (p.kernel() == 0) {
      if (p.nrmse() > 0.5) {
        EXPECT_EQ(dep.state(), "degraded");
      }
    } else {
      EXPECT_LT(p.nrmse(), 0.3);
    }
    EXPECT_LT(p.nrmse_predicted(), 0.01);  // nothing residual: only the compiler's rounding
    EXPECT_LT(p.spectral_radius(), 1.0);
    EXPECT_GT(p.spectral_radius(), 0.0);
    EXPECT_TRUE(is_permutation_of_0_63(p.row_of_logical()));
    EXPECT_TRUE(is_permutation_of_0_63(p.col_of_logical()));
    EXPECT_EQ(p.feedback_size(), 4 * 14);
    // --json leaves the 64x64 matrices out (deployment --full has them).
    EXPECT_EQ(p.target_us_size(), 0);
    EXPECT_EQ(p.readback_us_size(), 0);
  }
  EXPECT_EQ(arrays.size(), 3u);
  EXPECT_EQ(kernels, (std::set<uint32_t>{0, 1, 2}));
  // ready exactly when every placement is stable and within the default max_nrmse (0.5).
  bool within = true;
  for (const v1::Placement& p : dep.placements())
    within = within && p.nrmse() <= 0.5 && p.spectral_radius() < 1;
  EXPECT_EQ(dep.state() == "ready", within) << dep.message();

  // The full record: targets and read-backs.
  const Ran full = ctl({"--json", "deployment", dep.id(), "--full"});
  ASSERT_EQ(full.rc, 0) << full;
  const v1::Deployment fdep = parse_deployment(full.out);
  ASSERT_EQ(fdep.placements_size(), 3);

  // Against the twin's ground truth.
  auto spec = server::kernel_set_from_proto(dep.kernel_set());
  ASSERT_TRUE(spec.has_value()) << spec.error().message;
  ASSERT_EQ(spec->kernels.size(), 3u);
  const auto inputs = kernel::fidelity_inputs();
  ASSERT_TRUE(board_->sim_clock(10'000'000'000ull).has_value());  // let the devices relax 10 s
  for (const v1::Placement& p : fdep.placements()) {
    SCOPED_TRACE(fmt::format("kernel {} on array {}", p.kernel(), p.array()));
    const int a = static_cast<int>(p.array());
    ASSERT_EQ(p.target_us_size(), kernel::kSide * kernel::kSide);
    ASSERT_EQ(p.readback_us_size(), kernel::kSide * kernel::kSide);
    ASSERT_LT(p.kernel(), spec->kernels.size());
    const kernel::CompiledKernel ck = kernel::compile(spec->kernels[p.kernel()], spec->window);
    const kernel::Placement pl = placement_of(p);
    ASSERT_TRUE(is_permutation_of_0_63(p.row_of_logical()));
    ASSERT_TRUE(is_permutation_of_0_63(p.col_of_logical()));
    std::vector<int> logical_row(kernel::kSide), logical_col(kernel::kSide);
    for (int i = 0; i < kernel::kSide; ++i) {
      logical_row[static_cast<size_t>(pl.row_of[static_cast<size_t>(i)])] = i;
      logical_col[static_cast<size_t>(pl.col_of[static_cast<size_t>(i)])] = i;
    }

    // The reported NRMSE is the model through the reported read-back with the device fixes
    // (every used device more than 5 uS off its compiled target, taken out by the loop), and
    // nrmse_analog the read-back alone.
    const Eigen::MatrixXd readback = matrix_of(p.readback_us());
    const std::vector<kernel::DeviceFix> fixes =
        kernel::device_fixes(ck, pl, readback, kernel::LoopPlanOptions{});
    EXPECT_EQ(p.device_fixes(), fixes.size());
    EXPECT_NEAR(kernel::fidelity_nrmse(ck, pl, kernel::apply_device_fixes(readback, fixes), inputs),
                p.nrmse(), std::max(1e-3, 1e-4 * p.nrmse()));
    EXPECT_NEAR(kernel::fidelity_nrmse(ck, pl, readback, inputs), p.nrmse_analog(),
                std::max(1e-3, 1e-4 * p.nrmse_analog()));

    // Every device the twin has stuck sits where it costs nothing, or is compensated by its
    // differential partner (whose target then differs from the compiled one).
    auto truth_faults = board_->sim_fault_map(a);
    ASSERT_TRUE(truth_faults.has_value()) << truth_faults.error().message;
    const Eigen::MatrixXd sens = kernel::error_sensitivity(ck, inputs);
    const Eigen::MatrixXd target = matrix_of(p.target_us());
    uint32_t stuck = 0;
    for (int r = 0; r < kernel::kSide; ++r) {
      for (int c = 0; c < kernel::kSide; ++c) {
        const auto kind = (*truth_faults)[static_cast<size_t>(r * kernel::kSide + c)];
        if (kind != wire::FaultKind::kStuckHigh && kind != wire::FaultKind::kStuckLow) continue;
        ++stuck;
        const int lr = logical_row[static_cast<size_t>(r)],
                  lc = logical_col[static_cast<size_t>(c)];
        SCOPED_TRACE(fmt::format("stuck device (row {}, col {}) = logical ({}, {})", r, c, lr, lc));
        if (sens(lr, lc) == 0) continue;  // avoided: the row or column carries nothing
        EXPECT_GT(p.faults_compensated(), 0u);
        const int pc = pl.col_of[static_cast<size_t>(kernel::partner_col(lc))];
        EXPECT_GT(std::abs(target(r, pc) - ck.target_uS(lr, kernel::partner_col(lc))), 1.0)
            << "a stuck device on a used row and column, and its partner not compensating";
      }
    }
    EXPECT_EQ(stuck, p.faults()) << "the scans recorded every stuck device of the twin";

    // The kernel through what the twin really holds (after 10 s of relaxation), with the
    // loop's device fixes, is as good as the read-back said.
    auto g = board_->sim_ground_truth(a);
    ASSERT_TRUE(g.has_value()) << g.error().message;
    const double truth_nrmse =
        kernel::fidelity_nrmse(ck, pl, kernel::apply_device_fixes(*g, fixes), inputs);
    EXPECT_TRUE(std::isfinite(truth_nrmse));
    // seen: <= 0.025. A near-critical kernel (NRMSE > 1) amplifies the 10 s of relaxation
    // without bound, so the comparison holds only for a usable one.
    if (p.nrmse() < 1.0) {
      EXPECT_NEAR(truth_nrmse, p.nrmse(), std::max(0.05, 0.15 * p.nrmse()));
    }
    EXPECT_LT(kernel::spectral_radius(
                  kernel::effective_state_matrix(ck, pl, kernel::apply_device_fixes(*g, fixes))),
              1.0);
  }

  // Listed, drawn, forgotten.
  const Ran list = ctl({"deployments"});
  ASSERT_EQ(list.rc, 0) << list;
  EXPECT_NE(list.out.find(dep.id()), std::string::npos) << list;
  const Ran list_json = ctl({"--json", "deployments"});
  ASSERT_EQ(list_json.rc, 0) << list_json;
  EXPECT_NE(list_json.out.find("\"id\":\"" + dep.id() + "\""), std::string::npos) << list_json;

  const auto png = dir_.path() / "dep.png";
  const Ran map = ctl({"map", "--deployment", dep.id(), "--png", png.string()});
  ASSERT_EQ(map.rc, 0) << map;
  const std::string bytes = testing::read_file(png);
  ASSERT_GT(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");

  const uint64_t pulses = pulses_applied();
  const Ran un = ctl({"undeploy", dep.id()});
  EXPECT_EQ(un.rc, 0) << un;
  EXPECT_EQ(pulses_applied(), pulses) << "undeploy pulses nothing";
  const Ran again = ctl({"undeploy", dep.id()});
  EXPECT_EQ(again.rc, 4) << again;
  EXPECT_NE(again.err.find("no such deployment"), std::string::npos) << again;
  const Ran show = ctl({"deployment", dep.id()});
  EXPECT_EQ(show.rc, 4) << show;
  const Ran after = ctl({"deployments"});
  EXPECT_EQ(after.rc, 0) << after;
  EXPECT_EQ(after.out.find(dep.id()), std::string::npos) << after;
}

TEST_F(Deploy, ReplaceIsNeededForOccupiedArrays) {
  // No scan: the remap sees no faults (what program-verify finds gets recorded as it goes), so
  // either deployment may come out degraded; what matters here is who holds the arrays.
  const Ran first = ctl({"--json", "deploy", kExample});
  ASSERT_TRUE(first.rc == 0 || first.rc == 1) << first;
  const v1::Deployment d1 = parse_deployment(first.out);
  ASSERT_TRUE(d1.id().starts_with("dep-")) << first;
  ASSERT_EQ(d1.placements_size(), 3);

  const uint64_t pulses = pulses_applied();
  const Ran refused = ctl({"--json", "deploy", kExample});
  EXPECT_EQ(refused.rc, 6) << refused;          // FAILED_PRECONDITION: refused in the present state
  EXPECT_TRUE(refused.out.empty()) << refused;  // no deployment
  EXPECT_NE(refused.err.find("replace"), std::string::npos) << refused;
  EXPECT_NE(refused.err.find(d1.id()), std::string::npos) << refused;  // says who holds them
  EXPECT_EQ(pulses_applied(), pulses) << "a refused deploy pulses nothing";

  const Ran second = ctl({"--json", "deploy", "--replace", kExample});
  ASSERT_TRUE(second.rc == 0 || second.rc == 1) << second;
  const v1::Deployment d2 = parse_deployment(second.out);
  ASSERT_TRUE(d2.id().starts_with("dep-")) << second;
  EXPECT_NE(d2.id(), d1.id());
  EXPECT_TRUE(d2.state() == "ready" || d2.state() == "degraded") << second;
  EXPECT_EQ(d2.placements_size(), 3);
  EXPECT_GT(pulses_applied(), pulses);

  const Ran stale = ctl({"--json", "deployment", d1.id()});
  ASSERT_EQ(stale.rc, 0) << stale;
  const v1::Deployment s1 = parse_deployment(stale.out);
  EXPECT_EQ(s1.state(), "stale") << stale;
  EXPECT_NE(s1.message().find(d2.id()), std::string::npos) << stale;
  EXPECT_EQ(s1.placements_size(), 3);  // the record of what it was stays

  const Ran list = ctl({"deployments"});
  ASSERT_EQ(list.rc, 0) << list;
  EXPECT_NE(list.out.find(d1.id()), std::string::npos) << list;
  EXPECT_NE(list.out.find(d2.id()), std::string::npos) << list;
  EXPECT_LT(list.out.find(d2.id()), list.out.find(d1.id())) << "newest first\n" << list;
}

TEST_F(Deploy, BadKernelIsRejectedAndNothingIsPulsed) {
  auto complex_list = [](int n, double re, double im) {
    std::string s;
    for (int i = 0; i < n; ++i) s += fmt::format("{}{{\"re\":{},\"im\":{}}}", i ? "," : "", re, im);
    return "[" + s + "]";
  };
  struct Case {
    std::string name, json, expect;
  };
  const std::vector<Case> cases = {
      {"16 states",
       fmt::format(R"({{"kernels":[{{"name":"k","continuous":{{"a":{},"logDt":-2.3,"c":{}}}}}]}})",
                   complex_list(16, -0.5, 1.0), complex_list(16, 0.5, 0.1)),
       "kernels[0].a: 16 states, allowed 1..15"},
      {"unstable discrete",
       fmt::format(R"({{"kernels":[{{"name":"k","discrete":{{"aBar":{},"cBar":{}}}}}]}})",
                   complex_list(4, 0.0, 1.2), complex_list(4, 0.5, 0.1)),
       "|A_bar| = 1.2"},
      {"mismatched lengths",
       fmt::format(R"({{"kernels":[{{"name":"k","continuous":{{"a":{},"logDt":-2.3,"c":{}}}}}]}})",
                   complex_list(3, -0.5, 1.0), complex_list(2, 0.5, 0.1)),
       "lengths must match"},
      {"window below the chip",
       fmt::format(R"({{"kernels":[{{"name":"k","continuous":{{"a":{},"logDt":-2.3,"c":{}}}}}],)"
                   R"("window":{{"gMinUS":0.5,"gMaxUS":200}}}})",
                   complex_list(3, -0.5, 1.0), complex_list(3, 0.5, 0.1)),
       "window: g_min_uS = 0.5"},
  };
  const uint64_t pulses = pulses_applied();
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const auto file = dir_.path() / fmt::format("bad{}.json", i);
    std::ofstream(file) << cases[i].json;
    const Ran r = ctl({"deploy", file.string()});
    EXPECT_EQ(r.rc, 2) << r;
    EXPECT_NE(r.err.find(cases[i].expect), std::string::npos) << r;
    EXPECT_EQ(r.out.find("deployment dep-"), std::string::npos) << r;
  }
  EXPECT_EQ(pulses_applied(), pulses) << "a rejected deploy pulses nothing";
  const Ran list = ctl({"--json", "deployments"});
  ASSERT_EQ(list.rc, 0) << list;
  EXPECT_EQ(list.out.find("dep-"), std::string::npos) << "nothing recorded\n" << list;
}

// The paper's identity placement on the same chip, for comparison: the auto remap's prediction
// of it matches what the naive deployment predicts, and on the chip (read back) it is worse.
// imssa seed 13 is deterministic: array 1's stuck device lands on a state row and column under
// the identity placement, and the recurrence diverges (read-back NRMSE ~1e18).
TEST_F(Deploy, NaiveDeployIsWorseOnTheSameChip) {
  ASSERT_NO_FATAL_FAILURE(scan_all());
  const Ran a = ctl({"--json", "deploy", kExample});
  ASSERT_TRUE(a.rc == 0 || a.rc == 1) << a;
  const v1::Deployment autod = parse_deployment(a.out);
  ASSERT_EQ(autod.placements_size(), 3) << a;

  const Ran n = ctl({"--json", "deploy", "--replace", "--remap", "naive", kExample});
  EXPECT_EQ(n.rc, 1) << n;  // degraded
  const v1::Deployment naive = parse_deployment(n.out);
  ASSERT_EQ(naive.placements_size(), 3) << n;
  EXPECT_EQ(naive.remap(), v1::REMAP_NAIVE);
  EXPECT_EQ(naive.state(), "degraded") << n;

  std::map<uint32_t, const v1::Placement*> auto_on, naive_on;
  for (const auto& p : autod.placements()) auto_on[p.array()] = &p;
  for (const auto& p : naive.placements()) naive_on[p.array()] = &p;
  ASSERT_EQ(auto_on.size(), 3u);
  ASSERT_EQ(naive_on.size(), 3u);

  int predicted_worse = 0, measured_worse = 0, unstable = 0;
  for (uint32_t arr = 0; arr < 3; ++arr) {
    SCOPED_TRACE(fmt::format("array {}", arr));
    const v1::Placement& pa = *auto_on[arr];
    const v1::Placement& pn = *naive_on[arr];
    // Identity placement, kernel i on array i.
    EXPECT_EQ(pn.kernel(), arr);
    for (int i = 0; i < kernel::kSide; ++i) {
      EXPECT_EQ(pn.row_of_logical(i), static_cast<uint32_t>(i));
      EXPECT_EQ(pn.col_of_logical(i), static_cast<uint32_t>(i));
    }
    EXPECT_EQ(pn.faults_compensated(), 0u);
    EXPECT_EQ(pn.faults(), pa.faults());
    // The auto deployment's prediction for the identity placement is the naive one's.
    if (pa.kernel() == pn.kernel()) {
      EXPECT_NEAR(pa.nrmse_naive_predicted(), pn.nrmse_predicted(),
                  1e-6 * std::max(1.0, std::abs(pn.nrmse_predicted())));
    }
    if (pa.nrmse_naive_predicted() > 0.1 && pa.nrmse_naive_predicted() > 10 * pa.nrmse_predicted())
      ++predicted_worse;
    if (!(pn.nrmse() <= 2 * pa.nrmse())) ++measured_worse;  // NaN counts as worse
    if (!(pn.spectral_radius() < 1.0)) ++unstable;
  }
  EXPECT_GE(predicted_worse, 1);
  EXPECT_GE(measured_worse, 1);
  EXPECT_GE(unstable, 1);
}

}  // namespace
}  // namespace xbar

namespace xbar {
namespace {

// A mono 16-bit WAV: a chirp of `seconds` at `rate_hz`.
void write_wav(const std::filesystem::path& path, double seconds, int rate_hz) {
  const auto n = static_cast<uint32_t>(seconds * rate_hz);
  std::string data;
  for (uint32_t t = 0; t < n; ++t) {
    const double x = 0.4 * std::sin(2 * std::numbers::pi * (200.0 + 600.0 * t / n) * t / rate_hz);
    const auto s = static_cast<int16_t>(x * 32767);
    data.append(reinterpret_cast<const char*>(&s), 2);
  }
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  f << "RIFF";
  u32(36 + static_cast<uint32_t>(data.size()));
  f << "WAVEfmt ";
  u32(16);
  u16(1);
  u16(1);
  u32(static_cast<uint32_t>(rate_hz));
  u32(static_cast<uint32_t>(rate_hz) * 2);
  u16(2);
  u16(16);
  f << "data";
  u32(static_cast<uint32_t>(data.size()));
  f << data;
}

v1::InferResponse parse_infer(const std::string& json) {
  v1::InferResponse r;
  const auto s = google::protobuf::util::JsonStringToMessage(json, &r);
  EXPECT_TRUE(s.ok()) << s.message() << "\n" << json;
  return r;
}

TEST_F(Deploy, ModelClassifiesAClipOnTheBoardAndInSoftware) {
  scan_all();
  const std::string model =
      (std::filesystem::path(XBAR_SOURCE_DIR) / "models/example-model.json").string();
  const Ran d = ctl({"--json", "deploy-model", model});
  ASSERT_TRUE(d.rc == 0 || d.rc == 1) << d;
  const v1::Deployment dep = parse_deployment(d.out);
  ASSERT_EQ(dep.placements_size(), 3) << d;
  // A 44.1 kHz clip: resampled to the model's 48 kHz, block-averaged by 64 to 871 steps.
  const auto clip = dir_.path() / "clip.wav";
  write_wav(clip, 1.161, 44100);
  const Ran hw = ctl({"--json", "infer", clip.string(), "-d", dep.id()});
  ASSERT_EQ(hw.rc, 0) << hw;
  const Ran sw = ctl({"--json", "infer", clip.string(), "-d", dep.id(), "--software"});
  ASSERT_EQ(sw.rc, 0) << sw;
  const v1::InferResponse h = parse_infer(hw.out), s = parse_infer(sw.out);
  EXPECT_EQ(h.steps(), 871u);
  EXPECT_EQ(s.steps(), 871u);
  ASSERT_EQ(h.probabilities_size(), 2);
  EXPECT_NEAR(h.probabilities(0) + h.probabilities(1), 1.0, 1e-5);
  EXPECT_GT(h.board_ms(), 0.0);
  EXPECT_EQ(s.board_ms(), 0.0);
  EXPECT_EQ(h.label(), s.label()) << hw << sw;  // the board agrees with the software model
  EXPECT_NEAR(h.probabilities(0), s.probabilities(0), 0.1) << hw << sw;
  // --emulate: the board-exact reference. On this imssa twin the devices programmed a moment ago
  // still relax (tau 0.2 s) between the two runs, so the arrays are not quite the same: the
  // logits agree to a few parts per million, not bit for bit (measured 2e-6; bit for bit on
  // settled arrays: model_test, api_contract_test). With --software it is a usage error.
  const Ran em = ctl({"--json", "infer", clip.string(), "-d", dep.id(), "--emulate"});
  ASSERT_EQ(em.rc, 0) << em;
  const v1::InferResponse emulated = parse_infer(em.out);
  ASSERT_EQ(emulated.logits_size(), h.logits_size());
  for (int i = 0; i < emulated.logits_size(); ++i) {
    EXPECT_NEAR(emulated.logits(i), h.logits(i), 1e-4 * (1 + std::abs(h.logits(i)))) << hw << em;
  }
  EXPECT_GT(emulated.board_ms(), 0.0);
  const Ran both = ctl({"infer", clip.string(), "-d", dep.id(), "--emulate", "--software"});
  EXPECT_EQ(both.rc, 2) << both;

  // The same clip streamed in 20 ms chunks: answers as the steps complete, one final answer.
  const Ran st = ctl({"--json", "stream", clip.string(), "-d", dep.id(), "--chunk-ms", "20"});
  ASSERT_EQ(st.rc, 0) << st;
  size_t answers = 0, finals = 0;
  for (size_t pos = st.out.find("\"steps\""); pos != std::string::npos;
       pos = st.out.find("\"steps\"", pos + 1)) {
    ++answers;
  }
  for (size_t pos = st.out.find("\"final\":true"); pos != std::string::npos;
       pos = st.out.find("\"final\":true", pos + 1)) {
    ++finals;
  }
  EXPECT_GE(answers, 50u) << st;  // 1.161 s in 20 ms chunks: ~58 answers
  EXPECT_EQ(finals, 1u) << st;
  // As Infer's preprocessing (before padding): 870 whole 64-sample blocks and the partial last
  // one, which the end of the stream completes.
  EXPECT_NE(st.out.find("\"steps\":871"), std::string::npos) << st;
  // A stream at another rate than the model's is refused and names the rate.
  const Ran bad_rate = ctl({"stream", clip.string(), "-d", dep.id(), "--rate", "16000"});
  EXPECT_EQ(bad_rate.rc, 2) << bad_rate;
  EXPECT_NE(bad_rate.err.find("48000 Hz"), std::string::npos) << bad_rate;

  // Bad input: an empty file, an unknown deployment, a deployment without a model.
  const auto empty = dir_.path() / "empty.wav";
  std::ofstream(empty).close();
  const Ran e = ctl({"infer", empty.string(), "-d", dep.id()});
  EXPECT_EQ(e.rc, 2) << e;
  EXPECT_NE(e.err.find("audio"), std::string::npos) << e;
  // Through the API: a 0 Hz sample rate is named; a stream cancelled mid-utterance frees the
  // board at once (the next hardware inference does not wait for it).
  auto stub = v1::ModelService::NewStub(
      grpc::CreateChannel(xbard_addr_, grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext c;
    v1::InferRequest q;
    q.set_deployment(dep.id());
    q.add_samples(0.5f);
    q.set_sample_rate_hz(0);
    v1::InferResponse r;
    const grpc::Status st0 = stub->Infer(&c, q, &r);
    EXPECT_EQ(st0.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st0.error_message().find("sample_rate_hz = 0"), std::string::npos)
        << st0.error_message();
  }
  {
    grpc::ClientContext c;
    auto rw = stub->StreamInfer(&c);
    v1::StreamInferRequest q;
    q.set_deployment(dep.id());
    q.set_sample_rate_hz(48000);
    for (int i = 0; i < 64 * 40; ++i) q.add_samples(0.1f * std::sin(0.01f * static_cast<float>(i)));
    ASSERT_TRUE(rw->Write(q));
    v1::StreamInferResponse first_answer;
    ASSERT_TRUE(rw->Read(&first_answer));  // the run is open on the board now
    EXPECT_EQ(first_answer.steps(), 39u);  // 40 blocks in, the last output waits for step 41
    c.TryCancel();
    (void)rw->Finish();
  }
  // If the cancelled stream still held the board, this call would wait on it until its deadline
  // and exit 5 (the daemon's idle timeout, an hour here, would not free it first).
  const Ran after = ctl({"--timeout", "300", "infer", clip.string(), "-d", dep.id()});
  EXPECT_EQ(after.rc, 0) << after;

  const Ran nf = ctl({"infer", clip.string(), "-d", "dep-000000000000"});
  EXPECT_EQ(nf.rc, 4) << nf;
  const Ran k = ctl({"--json", "deploy", kExample, "--replace"});
  ASSERT_TRUE(k.rc == 0 || k.rc == 1) << k;
  const Ran nm = ctl({"infer", clip.string(), "-d", parse_deployment(k.out).id()});
  EXPECT_EQ(nm.rc, 6) << nm;
  EXPECT_NE(nm.err.find("has no model"), std::string::npos) << nm;
}

}  // namespace
}  // namespace xbar
