// The board suite: what every board xbar drives must do, run against the board that
// XBAR_TEST_BOARD names, as a URI `xbard --board` takes (usb:serial=XS0001, unix:/run/fw.sock,
// tcp:host:port, sim:profile=typical,seed=1). Without it every test reports *skipped*: CI has
// no board. CI runs the suite against the twin as its own xbar-fwsim process
// (hardware_suite_on_twin, on_twin.sh), the way a lab points it at a board.
//
// Read-only unless XBAR_TEST_BOARD_WRITE=1; then it also program-verifies array
// XBAR_TEST_ARRAY (default: the last one), overwriting what that array held.
#include "xbar/drivers/board.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "process.h"
#include "xbar/drivers/program_verify.h"

namespace xbar {
namespace {

using testing::Process;
using testing::TempDir;

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

class BoardSuite : public ::testing::Test {
 protected:
  void SetUp() override {
    uri_ = env("XBAR_TEST_BOARD");
    if (!uri_) GTEST_SKIP() << "no board: set XBAR_TEST_BOARD to a board URI to run this suite";
    auto b = Board::open(*uri_);
    ASSERT_TRUE(b) << *uri_ << ": " << b.error().message;
    board_ = std::move(*b);
  }

  std::optional<std::string> uri_;  // set once SetUp did not skip
  std::unique_ptr<Board> board_;
};

TEST_F(BoardSuite, InfoDescribesAUsableBoard) {
  const BoardInfo& i = board_->info();
  EXPECT_FALSE(i.serial.empty());
  EXPECT_EQ(i.protocol_version, 1);
  EXPECT_GE(i.arrays, 1);
  EXPECT_GT(i.rows, 0);
  EXPECT_GT(i.cols, 0);
  ASSERT_FALSE(i.tia_gains_ohm.empty());
  for (size_t g = 0; g < i.tia_gains_ohm.size(); ++g) {
    EXPECT_GT(i.full_scale_uS(static_cast<int>(g)), 0) << "gain " << g;
  }
  for (const VoltageRange& r : {i.set_v, i.set_gate, i.reset_v, i.reset_gate}) {
    EXPECT_LT(r.lo_V, r.hi_V);
    EXPECT_GE(r.lo_V, i.dac_v_min_V);
    EXPECT_LE(r.hi_V, i.dac_v_max_V);
  }
  EXPECT_GT(i.width_step_ns, 0u);
  EXPECT_GE(i.width_max_ns, i.width_step_ns);
  EXPECT_GE(i.max_vmm_vectors, 1);
}

// The board's own clock runs, and WAIT takes at least the time it was asked for.
TEST_F(BoardSuite, ClockAdvancesThroughAWait) {
  auto s0 = board_->status();
  ASSERT_TRUE(s0) << s0.error().message;
  auto w = board_->wait_us(2000);
  ASSERT_TRUE(w) << w.error().message;
  auto s1 = board_->status();
  ASSERT_TRUE(s1) << s1.error().message;
  EXPECT_GE(s1->uptime_ns - s0->uptime_ns, 2'000'000u);
  EXPECT_FALSE(s1->loop_running);
}

TEST_F(BoardSuite, EveryArrayReadsBackFiniteConductancesWithinFullScale) {
  const BoardInfo& i = board_->info();
  const ReadOptions o;  // the default gain
  for (int a = 0; a < i.arrays; ++a) {
    auto m = board_->read_array(a, o);
    ASSERT_TRUE(m) << "array " << a << ": " << m.error().message;
    ASSERT_EQ(m->g_uS.rows(), i.rows);
    ASSERT_EQ(m->g_uS.cols(), i.cols);
    EXPECT_TRUE(m->g_uS.allFinite()) << "array " << a;
    EXPECT_GE(m->g_uS.minCoeff(), 0.0) << "array " << a;
    EXPECT_LE(m->g_uS.maxCoeff(), i.full_scale_uS(o.gain_index) * 1.0001) << "array " << a;
  }
}

// The host-side guards: requests outside the board's ranges are refused before they are sent,
// naming the field, and the board's pulse counter does not move.
TEST_F(BoardSuite, OutOfRangeRequestsAreRefusedBeforeTheBoardSeesThem) {
  const BoardInfo& i = board_->info();
  auto before = board_->status();
  ASSERT_TRUE(before);
  auto r = board_->read_array(i.arrays);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("array"), std::string::npos) << r.error().message;

  PulseBatch too_high{wire::Polarity::kSet, {{0, 0, i.set_v.hi_V + 0.5, i.set_gate.lo_V, 100}}};
  auto p = board_->pulse(0, too_high);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument) << p.error().message;
  PulseBatch too_long{wire::Polarity::kReset,
                      {{0, 0, i.reset_v.lo_V, i.reset_gate.lo_V, i.width_max_ns * 2.0}}};
  p = board_->pulse(0, too_long);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument) << p.error().message;

  auto after = board_->status();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->pulses_applied, before->pulses_applied);
}

TEST_F(BoardSuite, VmmAnswersOneAccumulatorPerColumnAndVector) {
  const BoardInfo& i = board_->info();
  const int n = std::min(3, i.max_vmm_vectors);
  std::vector<uint8_t> in(static_cast<size_t>(n) * i.rows);
  for (size_t k = 0; k < in.size(); ++k) in[k] = static_cast<uint8_t>((k * 37) % 256);
  auto v = board_->vmm(0, in, 2);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->size(), static_cast<size_t>(n) * i.cols);
  // Zero inputs select no row: nothing flows but the ADC's offset, far below a full input's.
  std::vector<uint8_t> zero(static_cast<size_t>(i.rows), 0), full(static_cast<size_t>(i.rows), 255);
  auto z = board_->vmm(0, zero, 2);
  auto f = board_->vmm(0, full, 2);
  ASSERT_TRUE(z && f);
  uint64_t sz = 0, sf = 0;
  for (uint32_t c : *z) sz += c;
  for (uint32_t c : *f) sf += c;
  EXPECT_LT(sz, sf) << "a full input moved no more current than none";
}

TEST_F(BoardSuite, ProgramVerifyReachesItsTargets) {
  if (env("XBAR_TEST_BOARD_WRITE") != "1") {
    GTEST_SKIP() << "writes the board: set XBAR_TEST_BOARD_WRITE=1 (and XBAR_TEST_ARRAY)";
  }
  const BoardInfo& i = board_->info();
  const std::optional<std::string> wanted = env("XBAR_TEST_ARRAY");
  const int array = wanted ? std::atoi(wanted->c_str()) : i.arrays - 1;
  ASSERT_TRUE(array >= 0 && array < i.arrays) << "XBAR_TEST_ARRAY out of range 0.." << i.arrays - 1;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(20, 150);
  Eigen::MatrixXd target(i.rows, i.cols);
  for (int r = 0; r < i.rows; ++r) {
    for (int c = 0; c < i.cols; ++c) target(r, c) = u(rng);
  }
  const ProgramVerifyConfig cfg;
  auto res = program_verify(*board_, array, target, cfg);
  ASSERT_TRUE(res) << res.error().message;
  // Stuck devices cannot be moved; a usable board has few (the twin's typical chip: < 2 %).
  EXPECT_GE(res->within_tolerance(cfg), 95.0);
  auto m = board_->read_array(array, cfg.verify);
  ASSERT_TRUE(m);
  int near = 0;
  for (int r = 0; r < i.rows; ++r) {
    for (int c = 0; c < i.cols; ++c)
      near += std::abs(m->g_uS(r, c) - target(r, c)) <= 3 * cfg.tol_uS;
  }
  EXPECT_GE(near, static_cast<int>(0.95 * i.rows * i.cols));
}

// xbard in front of the same board answers xbarctl with the board's own serial. (The suite's
// Board is closed first: a USB board has one owner at a time.)
TEST_F(BoardSuite, XbardServesIt) {
  const std::string serial = board_->info().serial;
  board_.reset();
  TempDir dir;
  const std::string addr = "unix:" + (dir.path() / "xbard.sock").string();
  Process xbard({XBARD_PATH, "--board", uri_.value_or(""), "--listen", addr, "--state-dir",
                 (dir.path() / "state").string()},
                dir.path() / "xbard.log");
  std::pair<int, std::string> info;
  const bool up = testing::eventually([&] {
    info = testing::run({XBARCTL_PATH, "--addr", addr, "--json", "info"}, dir.path() / "ctl.log");
    return info.first == 0;
  });
  ASSERT_TRUE(up) << xbard.output() << info.second;
  EXPECT_NE(info.second.find("\"" + serial + "\""), std::string::npos) << info.second;
  EXPECT_TRUE(xbard.terminate(std::chrono::seconds(30))) << xbard.output();
}

}  // namespace
}  // namespace xbar
