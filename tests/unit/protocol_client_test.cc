// The host's retry rule over a lossy link: a lost or corrupted reply is retried with the same
// sequence number and the board answers from its reply cache, so no pulse is applied twice.
#include <gtest/gtest.h>

#include "xbar/drivers/board.h"
#include "xbar/twin/inprocess_transport.h"

namespace xbar {
namespace {

// Wraps the real in-process twin and damages replies on a schedule: the link, not the board.
class LossyLink : public Transport {
 public:
  enum class Fault { kNone, kDropReply, kCorruptReply, kCorruptRequest };
  explicit LossyLink(std::shared_ptr<twin::Firmware> fw) : inner_(std::move(fw)) {}

  void schedule(std::vector<Fault> faults) { faults_ = std::move(faults); }

  Result<void> send(std::span<const uint8_t> frame) override {
    const Fault f = next();
    ++sent_;
    if (f == Fault::kCorruptRequest) {
      std::vector<uint8_t> bad(frame.begin(), frame.end());
      bad.back() ^= 0x5A;
      return inner_.send(bad);
    }
    auto r = inner_.send(frame);
    if (f == Fault::kDropReply) (void)inner_.receive(std::chrono::milliseconds(0));
    pending_corrupt_ = f == Fault::kCorruptReply;
    return r;
  }
  Result<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) override {
    auto r = inner_.receive(timeout);
    if (r && pending_corrupt_) (*r)[r->size() / 2] ^= 0x01;
    pending_corrupt_ = false;
    return r;
  }
  std::string describe() const override { return "lossy " + inner_.describe(); }
  std::string kind() const override { return "sim"; }
  int sent() const { return sent_; }

 private:
  Fault next() {
    if (faults_.empty()) return Fault::kNone;
    const Fault f = faults_.front();
    faults_.erase(faults_.begin());
    return f;
  }
  InProcessTransport inner_;
  std::vector<Fault> faults_;
  bool pending_corrupt_ = false;
  int sent_ = 0;
};

class RetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fw_ = std::make_shared<twin::Firmware>(*twin::load_profile("typical"),
                                           twin::FirmwareOptions{3, 3});
    auto link = std::make_unique<LossyLink>(fw_);
    link_ = link.get();
    auto b = Board::connect(std::move(link),
                            {.timeout = std::chrono::milliseconds(10), .max_attempts = 3});
    ASSERT_TRUE(b.has_value()) << b.error().message;
    board_ = std::move(*b);
  }
  PulseBatch batch() const {
    PulseBatch p{wire::Polarity::kSet, {}};
    for (int c = 0; c < 10; ++c) p.devices.push_back({4, c, 2.0, 1.0, 100});
    return p;
  }
  std::shared_ptr<twin::Firmware> fw_;
  LossyLink* link_ = nullptr;
  std::unique_ptr<Board> board_;
};

TEST_F(RetryTest, LostReplyIsRetriedAndTheBatchAppliedOnce) {
  link_->schedule({LossyLink::Fault::kDropReply});
  auto r = board_->pulse(0, batch());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->n_pulsed, 10);
  auto s = board_->status();
  EXPECT_EQ(s->pulses_applied, 10u) << "the retry must be answered from the cache";
  EXPECT_EQ(s->replays_served, 1u);
  EXPECT_EQ(board_->client().retransmissions(), 1u);
}

TEST_F(RetryTest, CorruptedReplyIsRetried) {
  link_->schedule({LossyLink::Fault::kCorruptReply, LossyLink::Fault::kCorruptReply});
  auto r = board_->pulse(0, batch());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(board_->status()->pulses_applied, 10u);
  EXPECT_EQ(board_->client().retransmissions(), 2u);
}

TEST_F(RetryTest, CorruptedRequestIsRejectedByTheBoardAndResent) {
  link_->schedule({LossyLink::Fault::kCorruptRequest});
  auto r = board_->pulse(0, batch());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  auto s = board_->status();
  EXPECT_EQ(s->pulses_applied, 10u);
  EXPECT_EQ(s->replays_served, 0u) << "a BAD_FRAME request was never executed, so not cached";
}

TEST_F(RetryTest, GivesUpWithAClearTimeoutAfterMaxAttempts) {
  using F = LossyLink::Fault;
  link_->schedule({F::kDropReply, F::kDropReply, F::kDropReply});
  auto r = board_->pulse(0, batch());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
  EXPECT_NE(r.error().message.find("PULSE_BATCH"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("3 attempts"), std::string::npos) << r.error().message;
  EXPECT_EQ(board_->status()->pulses_applied, 10u) << "executed once, replayed twice";
}

TEST_F(RetryTest, HostSideValidationNamesTheFieldAndSendsNothing) {
  const int before = link_->sent();
  PulseBatch p{wire::Polarity::kSet, {{0, 0, 4.0, 1.0, 100}}};
  auto r = board_->pulse(0, p);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message, "pulse: devices[0].v_V = 4: SET voltage allowed 1..3.5 V");
  EXPECT_FALSE(board_->read_array(3).has_value());
  EXPECT_EQ(board_->read_array(3).error().message, "read_array: array = 3: allowed 0..2");
  PulseBatch twice{wire::Polarity::kReset, {{1, 1, 1.0, 5.0, 100}, {1, 1, 1.0, 5.0, 100}}};
  EXPECT_NE(board_->pulse(0, twice).error().message.find("listed twice"), std::string::npos);
  EXPECT_EQ(link_->sent(), before);
}

TEST_F(RetryTest, ConversionsRoundTripThroughTheWire) {
  // A device frozen at a known conductance reads back within one ADC step.
  ASSERT_TRUE(board_->sim_inject_fault(1, 2, 3, wire::FaultKind::kStuckHigh, 123.0).has_value());
  const std::vector<wire::Cell> cell = {{2, 3}};
  auto ideal_fw =
      std::make_shared<twin::Firmware>(*twin::load_profile("ideal"), twin::FirmwareOptions{1, 1});
  auto ideal = Board::connect(std::make_unique<InProcessTransport>(ideal_fw));
  ASSERT_TRUE(ideal.has_value());
  ASSERT_TRUE((*ideal)->sim_inject_fault(1, 2, 3, wire::FaultKind::kStuckHigh, 123.0).has_value());
  auto g = (*ideal)->read_cells(1, cell, {.gain_index = 2, .n_avg = 1});
  ASSERT_TRUE(g.has_value());
  EXPECT_NEAR((*g)[0], 123.0, (*ideal)->info().full_scale_uS(2) / 1023 / 2 + 1e-9);
  EXPECT_EQ(board_->volts_to_code(0.0), 32768);
  EXPECT_EQ(board_->volts_to_code(-10.0), 0);
  EXPECT_EQ(board_->volts_to_code(10.0), 65535);
}

}  // namespace
}  // namespace xbar
