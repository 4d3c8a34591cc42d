// The a0: backend's bridge on the twin's A0 personality, in one process (the same bytes a tty
// would carry; tests/integration/a0_board_test.cc runs it through a real pty and xbard):
// protocol v1's operations through A0 commands, the safety checks, and the link faults.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <deque>
#include <random>

#include "random_targets.h"
#include "xbar/drivers/a0_transport.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/twin/a0_board.h"
#include "xbar/twin/profile.h"

namespace xbar {
namespace {

// An A0Link straight into an A0Board, with the faults of a flaky port.
struct TwinLinkState {
  twin::A0Board board;
  std::vector<uint8_t> rx;  // bytes the board sent, not yet read
  uint64_t drop_ack = 0;    // acks counted from 1: this one is lost on its way to the host
  uint64_t acks = 0;
  bool gone = false;
};

class TwinLink final : public A0Link {
 public:
  explicit TwinLink(std::shared_ptr<TwinLinkState> s) : s_(std::move(s)) {}
  Result<void> write(std::span<const uint8_t> bytes) override {
    if (s_->gone) return make_error(ErrorCode::kUnavailable, "twin: gone");
    std::vector<uint8_t> r = s_->board.feed(bytes);
    if (r.size() == 1 && r[0] == a0::kAck && ++s_->acks == s_->drop_ack) r.clear();
    s_->rx.insert(s_->rx.end(), r.begin(), r.end());
    return {};
  }
  Result<std::vector<uint8_t>> read_exact(size_t n, std::chrono::milliseconds) override {
    if (s_->gone) return make_error(ErrorCode::kUnavailable, "twin: gone");
    if (s_->rx.size() < n) {
      const size_t got = s_->rx.size();
      s_->rx.clear();
      return make_error(ErrorCode::kTimeout, fmt::format("twin: {} of {} bytes", got, n));
    }
    std::vector<uint8_t> out(s_->rx.begin(), s_->rx.begin() + static_cast<std::ptrdiff_t>(n));
    s_->rx.erase(s_->rx.begin(), s_->rx.begin() + static_cast<std::ptrdiff_t>(n));
    return out;
  }
  void discard_input(std::chrono::milliseconds) override { s_->rx.clear(); }
  Result<void> reopen() override {
    if (s_->gone) return make_error(ErrorCode::kUnavailable, "twin: gone");
    return {};
  }
  std::string name() const override { return "twin-a0"; }

 private:
  std::shared_ptr<TwinLinkState> s_;
};

struct Rig {
  std::shared_ptr<TwinLinkState> state;
  std::unique_ptr<Board> board;
};

Rig open_rig(const std::string& profile, uint64_t seed, A0Config config = {}) {
  auto p = twin::load_profile(profile);
  EXPECT_TRUE(p.has_value());
  auto s = std::make_shared<TwinLinkState>(TwinLinkState{
      twin::A0Board(*p, {.chip_seed = seed, .noise_seed = seed + 100, .time_scale = 1e4}), {}});
  config.time_scale = 1e4;  // the twin's devices relax 10^4 times faster than real ones
  auto t = make_a0_transport(std::make_unique<TwinLink>(s), config);
  EXPECT_TRUE(t.has_value()) << t.error().message;
  auto b =
      Board::connect(std::move(*t), ProtocolOptions{.reopen_window = std::chrono::milliseconds(0)});
  EXPECT_TRUE(b.has_value()) << b.error().message;
  return {s, std::move(*b)};
}

using testing::random_targets;

TEST(A0Bridge, InfoDescribesTheA0AndItsConfiguredWindows) {
  A0Config c;
  c.serial = "A0-LAB-1";
  c.set_v.hi_V = 2.5;
  Rig rig = open_rig("ideal", 1, c);
  const BoardInfo& i = rig.board->info();
  EXPECT_EQ(i.serial, "A0-LAB-1");
  EXPECT_EQ(i.arrays, 3);
  EXPECT_EQ(i.rows, 64);
  EXPECT_EQ(i.cols, 64);
  EXPECT_FALSE(i.has_loop);  // host-stepped: the A0 has no on-board loop
  EXPECT_NEAR(i.set_v.hi_V, 2.5, 1e-9);
  ASSERT_EQ(i.tia_gains_ohm.size(), 5u);
  EXPECT_EQ(i.tia_gains_ohm[2], 30e3);
}

TEST(A0Bridge, ReadsMatchTheDevicesWithinReadNoise) {
  Rig rig = open_rig("ideal", 2);
  auto m = rig.board->read_array(1, {.gain_index = 2, .n_avg = 4});
  ASSERT_TRUE(m.has_value()) << m.error().message;
  double worst = 0;
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 64; ++c) {
      worst = std::max(worst, std::abs(m->g_uS(r, c) - rig.state->board.chip().true_g_uS(1, r, c)));
    }
  }
  EXPECT_LT(worst, 3.0);  // the ADC's step at 30 kOhm is 0.57 uS; ideal has no read noise
  // Selected cells: one 401 per cell and read.
  const std::vector<wire::Cell> wanted = {{3, 4}, {60, 2}};
  auto cells = rig.board->read_cells(1, wanted, {.gain_index = 2, .n_avg = 2});
  ASSERT_TRUE(cells.has_value()) << cells.error().message;
  ASSERT_EQ(cells->size(), 2u);
  EXPECT_NEAR((*cells)[0], rig.state->board.chip().true_g_uS(1, 3, 4), 3.0);
  EXPECT_NEAR((*cells)[1], rig.state->board.chip().true_g_uS(1, 60, 2), 3.0);
}

TEST(A0Bridge, ProgramVerifyReachesItsTargetsThroughBatchWrites) {
  Rig rig = open_rig("ideal", 3);
  const Eigen::MatrixXd target = random_targets(5);
  auto r = program_verify(*rig.board, 0, target, {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_GE(r->within_tolerance(4.0), 99.9);
  double worst = 0;
  for (int i = 0; i < 4096; ++i) {
    worst = std::max(worst, std::abs(rig.state->board.chip().true_g_uS(0, i / 64, i % 64) -
                                     target(i / 64, i % 64)));
  }
  EXPECT_LE(worst, 4.0);
  // Every device pulse the host asked for, and no other, reached the chip.
  EXPECT_EQ(rig.state->board.chip().pulses_applied(),
            uint64_t(r->set_pulses.sum() + r->reset_pulses.sum()));
}

TEST(A0Bridge, VmmIsTheBitPlanesShiftedAndAdded) {
  Rig rig = open_rig("ideal", 4);
  std::vector<uint8_t> x(3 * 64);
  std::mt19937 rng(7);
  for (auto& v : x) v = static_cast<uint8_t>(rng() & 0xFF);
  auto acc = rig.board->vmm(2, x, 2);
  ASSERT_TRUE(acc.has_value()) << acc.error().message;
  ASSERT_EQ(acc->size(), 3u * 64);
  // The same on the chip directly: one code per plane, from the same physics.
  const twin::Chip& chip = rig.state->board.chip();
  for (int v = 0; v < 3; ++v) {
    for (int c = 0; c < 64; c += 9) {
      double expect = 0;
      for (int b = 0; b < 8; ++b) {
        double g = 0;
        for (int r = 0; r < 64; ++r) {
          if ((x[static_cast<size_t>(v * 64 + r)] >> b) & 1) g += chip.true_g_uS(2, r, c);
        }
        expect += static_cast<double>(chip.adc_code(g * 1e-6 * 0.2, 2)) * (1 << b);
      }
      EXPECT_NEAR((*acc)[static_cast<size_t>(v * 64 + c)], expect, 255 * 1.0) << v << "," << c;
    }
  }
}

TEST(A0Bridge, OutOfWindowPulsesAreRefusedBeforeAnyByteIsSent) {
  A0Config c;
  c.set_v.hi_V = 2.0;  // the lab's own limit, tighter than the twin's physics
  Rig rig = open_rig("typical", 5, c);
  const uint64_t commands = rig.state->board.commands_executed();
  PulseBatch batch;
  batch.devices.push_back({0, 0, 2.5, 1.0, 100, wire::Polarity::kSet});
  auto r = rig.board->pulse(1, batch);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("allowed"), std::string::npos) << r.error().message;
  EXPECT_EQ(rig.state->board.commands_executed(), commands);
  EXPECT_EQ(rig.state->board.chip().pulses_applied(), 0u);
}

PulseBatch eight_sets() {
  PulseBatch batch;
  for (int c = 0; c < 8; ++c) batch.devices.push_back({1, c, 2.0, 1.0, 60, wire::Polarity::kSet});
  return batch;
}

TEST(A0Bridge, ALostBatchAcknowledgementIsNeverResent) {
  Rig rig = open_rig("ideal", 6);
  // A batch write is the control block (acknowledged), 64 messages, and the acknowledgement
  // after the last, once the board has pulsed: that one is lost.
  rig.state->drop_ack = rig.state->acks + 2;
  auto r = rig.board->pulse(0, eight_sets());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kRestarted) << r.error().message;
  EXPECT_NE(r.error().message.find("not resent"), std::string::npos) << r.error().message;
  // The board did pulse, once: the ack was lost on its way back, and nothing was sent again.
  EXPECT_EQ(rig.state->board.chip().pulses_applied(), 8u);
  // The link was resynchronised: the next request works.
  EXPECT_TRUE(rig.board->read_array(0, {.gain_index = 2}).has_value());
  EXPECT_EQ(rig.state->board.chip().pulses_applied(), 8u);
}

TEST(A0Bridge, ALostAcknowledgementBeforeAnyPulseIsRetriedOnce) {
  Rig rig = open_rig("ideal", 6);
  rig.state->drop_ack = rig.state->acks + 1;  // the control block's: nothing pulsed yet
  auto r = rig.board->pulse(0, eight_sets());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->n_pulsed, 8);
  EXPECT_EQ(rig.state->board.chip().pulses_applied(), 8u);
}

TEST(A0Bridge, ProgramVerifySurvivesLostAcknowledgements) {
  Rig rig = open_rig("ideal", 8);
  rig.state->drop_ack = rig.state->acks + 6;  // the third batch write's final ack
  const Eigen::MatrixXd target = random_targets(9);
  auto r = program_verify(*rig.board, 2, target, {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->board_restarts, 1);
  EXPECT_GE(r->within_tolerance(4.0), 99.9);
}

TEST(A0Bridge, ABoardThatStopsAnsweringIsUnavailableNamingThePort) {
  Rig rig = open_rig("ideal", 7);
  rig.state->gone = true;
  auto m = rig.board->read_array(0, {});
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code, ErrorCode::kUnavailable) << m.error().message;
  EXPECT_NE(m.error().message.find("twin"), std::string::npos) << m.error().message;
}

}  // namespace
}  // namespace xbar
