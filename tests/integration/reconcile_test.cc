// Crash recovery through real processes: xbar-fwsim (the board, which outlives the daemon) and
// xbard restarted on it. At start xbard reconciles the chip record with what the arrays read
// back: a deployment stays ready when the arrays still hold it, becomes degraded when devices
// moved, lost when the board is a fresh one, and an interrupted deploy is never left
// "deploying" or reported ready without verification (kill -9 at 20 random points).
#include <gtest/gtest.h>

#include <random>
#include <regex>

#include "chip_record.h"
#include "process.h"
#include "xbar/drivers/board.h"

namespace xbar {
namespace {

using testing::eventually;
using testing::Process;
using testing::read_file;
using testing::TempDir;
namespace fs = std::filesystem;

class Reconcile : public ::testing::Test {
 protected:
  void start_board(int seed = 5) {
    fwsim_.reset();
    std::error_code ec;
    fs::remove(sock_, ec);
    fwsim_ = std::make_unique<Process>(
        std::vector<std::string>{XBAR_FWSIM_PATH, "--profile", profile_, "--seed",
                                 std::to_string(seed), "--listen", "unix:" + sock_.string()},
        dir_.path() / "fwsim.log");
    ASSERT_TRUE(eventually([&] { return fs::exists(sock_); }));
  }
  /// Starts xbard on the board and waits until it serves (reconciliation runs before that).
  void start_daemon() {
    ++starts_;
    log_ = dir_.path() / ("xbard-" + std::to_string(starts_) + ".log");
    xbard_ = std::make_unique<Process>(
        std::vector<std::string>{XBARD_PATH, "--board", "unix:" + sock_.string(), "--listen", addr_,
                                 "--state-dir", (dir_.path() / "state").string()},
        log_);
    ASSERT_TRUE(eventually([&] { return read_file(log_).find("serving") != std::string::npos; }))
        << read_file(log_);
  }
  std::pair<int, std::string> ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {XBARCTL_PATH, "--server", addr_, "-q"});
    return testing::run(testing::with_generous_timeout(args), dir_.path() / "ctl.log");
  }
  std::string deploy() {
    auto [rc, out] =
        ctl({"--json", "deploy-model", std::string(XBAR_SOURCE_DIR) + "/models/example-model.json",
             "--replace"});
    EXPECT_EQ(rc, 0) << out;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(out, m, std::regex("\"id\":\"(dep-[0-9a-f]+)\""))) << out;
    return m.size() > 1 ? m[1].str() : "";
  }
  /// The deployment's state and message as the daemon reports them.
  std::pair<std::string, std::string> state_of(const std::string& id) {
    auto [rc, out] = ctl({"--json", "deployment", id});
    std::smatch s, msg;
    std::regex_search(out, s, std::regex("\"state\":\"([a-z]+)\""));
    std::regex_search(out, msg, std::regex("\"message\":\"([^\"]*)\""));
    return {s.size() > 1 ? s[1].str() : "?" + out, msg.size() > 1 ? msg[1].str() : ""};
  }

  TempDir dir_;
  fs::path sock_ = dir_.path() / "fwsim.sock";
  std::string addr_ = "unix:" + (dir_.path() / "xbard.sock").string();
  std::unique_ptr<Process> fwsim_, xbard_;
  fs::path log_;
  int starts_ = 0;
  std::string profile_ = "ideal";
};

TEST_F(Reconcile, ReadyStaysReadyMovedDevicesDegradeAFreshBoardIsLost) {
  start_board();
  start_daemon();
  const std::string id = deploy();
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(state_of(id).first, "ready");

  // Restart on the same board: verified, still ready, with the figures.
  xbard_->stop();
  start_daemon();
  auto [s1, m1] = state_of(id);
  EXPECT_EQ(s1, "ready");
  EXPECT_NE(m1.find("verified at start: array 0: NRMSE"), std::string::npos) << m1;

  // Devices of array 0 move while the daemon is down (the twin's fault injection): degraded,
  // with the measured error.
  xbard_->stop();
  {
    auto b = Board::open("unix:" + sock_.string());
    ASSERT_TRUE(b.has_value()) << b.error().message;
    auto truth = (*b)->sim_ground_truth(0);
    ASSERT_TRUE(truth.has_value());
    std::mt19937 rng(3);
    for (int i = 0; i < 60; ++i) {  // 60 devices drift up by 12 uS
      const int r = static_cast<int>(rng() % 64), c = static_cast<int>(rng() % 64);
      ASSERT_TRUE((*b)->sim_inject_fault(0, r, c, wire::FaultKind::kNone, (*truth)(r, c) + 12.0)
                      .has_value());
    }
  }
  start_daemon();
  auto [s2, m2] = state_of(id);
  EXPECT_EQ(s2, "degraded") << m2;
  EXPECT_NE(m2.find("worse than deployed: array 0: NRMSE"), std::string::npos) << m2;
  EXPECT_NE(read_file(log_).find("ready -> degraded"), std::string::npos);

  // A fresh board with the same serial (the twin restarted: devices as manufactured): lost.
  xbard_->stop();
  start_board();
  start_daemon();
  auto [s3, m3] = state_of(id);
  EXPECT_EQ(s3, "lost") << m3;
  EXPECT_NE(m3.find("no longer hold it"), std::string::npos) << m3;
}

// Kill points of the test below: 20 random ones, 4 under TSan, where every restart's read-back
// is ~10x slower (24 points took 296 s of a 300 s limit there alone, and timed out beside other
// tests); TSan looks for races, which a few restarts exercise as well as twenty.
#if defined(__SANITIZE_THREAD__)
constexpr int kRandomKills = 4;
#else
constexpr int kRandomKills = 20;
#endif

// 20 kills at random points of a deploy, and 4 at points that are certain whatever the
// machine's load: 2 while the deploy is programming a board frozen by SIGSTOP (it cannot have
// finished: interrupted), and 2 after the deploy has returned (completed).
TEST_F(Reconcile, KillNineAtTwentyRandomPointsOfADeployNeverLeavesItUnverified) {
  start_board();
  start_daemon();
  // How long a deploy takes here, to spread the kill points over it.
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_FALSE(deploy().empty());
  const double deploy_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(11);
  // From after xbarctl's start-up to past the end (measured on this machine: a 430 ms deploy
  // of which programming is about a third).
  std::uniform_real_distribution<double> when(0.2 * deploy_ms, 1.1 * deploy_ms);
  int interrupted = 0, completed = 0, not_started = 0;
  std::string newest_before;
  for (int i = 0; i < kRandomKills + 4; ++i) {
    const bool frozen = i == kRandomKills || i == kRandomKills + 2;
    const bool finished = i == kRandomKills + 1 || i == kRandomKills + 3;
    SCOPED_TRACE("kill " + std::to_string(i) +
                 (frozen     ? " (board frozen)"
                  : finished ? " (deploy returned)"
                             : ""));
    // Frozen: the board answers nothing from before the deploy until xbard is dead. The deploy
    // records itself and says "program" without the board; its first board request then waits
    // (up to 5 attempts of 2 s) for an answer that does not come until after the kill.
    if (frozen) fwsim_->signal(SIGSTOP);
    const fs::path deploy_log = dir_.path() / ("deploy-" + std::to_string(i) + ".log");
    Process client({XBARCTL_PATH, "--server", addr_, "deploy-model",
                    std::string(XBAR_SOURCE_DIR) + "/models/example-model.json", "--replace"},
                   deploy_log);
    if (frozen) {
      ASSERT_TRUE(eventually([&] {
        return read_file(deploy_log).find("program") != std::string::npos;
      })) << read_file(deploy_log);
    } else if (finished) {
      ASSERT_EQ(client.wait(), 0) << read_file(deploy_log);
    } else if (i % 2 == 0) {  // anywhere in the deploy
      std::this_thread::sleep_for(
          std::chrono::microseconds(static_cast<int64_t>(when(rng) * 1000)));
    } else {  // once it is programming (its progress says so), the part that must not be lost
      eventually([&] { return read_file(deploy_log).find("program") != std::string::npos; });
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(when(rng) * 100)));
    }
    xbard_->kill_hard();
    if (frozen) fwsim_->signal(SIGCONT);
    client.wait();
    start_daemon();
    // Every deployment is in a settled state: none is left "deploying", and every ready one
    // was verified against the arrays at this start.
    auto [rc, out] = ctl({"--json", "deployments"});
    ASSERT_EQ(rc, 0) << out;
    EXPECT_EQ(out.find("\"state\":\"deploying\""), std::string::npos) << out;
    const std::string log = read_file(log_);
    // The newest deployment (first in the list) either finished and was verified now, or was
    // rolled back as interrupted.
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out, m, std::regex("\"id\":\"(dep-[0-9a-f]+)\""))) << out;
    const std::string newest = m[1].str();
    auto [state, message] = state_of(newest);
    if (frozen) {
      EXPECT_EQ(state, "failed") << message;
    }
    if (finished) {
      EXPECT_NE(newest, newest_before);
    }
    if (newest == newest_before) {
      ++not_started;  // killed before the deploy recorded itself
      EXPECT_NE(state, "deploying");
    } else if (state == "failed") {
      EXPECT_NE(message.find("interrupted"), std::string::npos) << message;
      EXPECT_NE(log.find(newest + ": deploying -> failed"), std::string::npos);
      ++interrupted;
    } else {
      EXPECT_TRUE(state == "ready" || state == "degraded") << state;
      EXPECT_NE(message.find("at start"), std::string::npos) << message;
      ++completed;
    }
    newest_before = newest;
  }
  // Both outcomes happened (the certain kill points make sure of it), and the random points
  // covered the deploy.
  EXPECT_GE(interrupted, 2);
  EXPECT_GE(completed, 2);
  std::printf(
      "%d kill -9 points (%d random) over a %.0f ms deploy: %d interrupted and rolled back, %d "
      "completed and verified at restart, %d before the deploy recorded itself\n",
      kRandomKills + 4, kRandomKills, deploy_ms, interrupted, completed, not_started);
  // The record is consistent (SQLite's own check) once the daemon is down.
  xbard_->stop();
  auto rec = server::ChipRecord::open(dir_.path() / "state");
  ASSERT_TRUE(rec.has_value()) << rec.error().message;
  auto ic = (*rec)->integrity_check();
  ASSERT_TRUE(ic.has_value());
  EXPECT_EQ(*ic, "ok");
}

}  // namespace
}  // namespace xbar
