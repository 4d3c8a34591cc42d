// The twin's protocol side, driven with raw frames as a host would send them: the retry rule,
// validation before any effect, and error replies that name the field.
#include "xbar/twin/firmware.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

namespace xbar::twin {
namespace {

using wire::Opcode;

class FirmwareTest : public ::testing::Test {
 protected:
  FirmwareTest() : fw_(*load_profile("typical"), {.chip_seed = 11, .noise_seed = 5}) {
    session_ = fw_.open_session();
  }

  wire::Frame call(Opcode op, uint32_t seq, std::span<const uint8_t> payload) {
    auto reply = wire::decode_frame(fw_.handle(session_, wire::encode_frame(op, 0, seq, payload)));
    EXPECT_TRUE(reply.has_value());
    EXPECT_EQ(reply->header.seq, seq);
    EXPECT_TRUE(reply->header.flags & wire::kFlagReply);
    return *reply;
  }
  static wire::ErrorReply error_of(const wire::Frame& f) {
    EXPECT_TRUE(f.header.flags & wire::kFlagError);
    return *wire::decode_error_reply(f.payload);
  }
  wire::StatusReply status(uint32_t seq) {
    return *wire::decode_status_reply(call(Opcode::kStatus, seq, {}).payload);
  }
  std::vector<float> truth(uint32_t seq, uint8_t array) {
    return wire::decode_sim_ground_truth_reply(
               call(Opcode::kSimGroundTruth, seq, wire::ArrayRequest{array}.encode()).payload, 4096)
        ->g_uS;
  }
  // A SET batch on devices 0..n-1 of row 0 at mid-range codes.
  std::vector<uint8_t> set_batch(uint8_t array, int n, uint16_t gate_code) {
    wire::PulseBatchRequest q;
    q.array = array;
    q.polarity = wire::Polarity::kSet;
    q.mask.assign(512, 0);
    for (int i = 0; i < n; ++i) {
      wire::mask_set(q.mask, static_cast<size_t>(i));
      q.codes.push_back({code(2.0), gate_code, 50});
    }
    return q.encode();
  }
  static uint16_t code(double v) {
    return static_cast<uint16_t>(std::lround((v + 10) / 20 * 65535));
  }

  Firmware fw_;
  Firmware::SessionId session_;
};

TEST_F(FirmwareTest, InfoDescribesTheBoard) {
  auto info = wire::decode_info_reply(call(Opcode::kInfo, 1, {}).payload);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->serial, "XS0000000000000B");
  EXPECT_EQ(info->n_arrays, 3);
  EXPECT_EQ(info->rows, 64);
  EXPECT_EQ(info->cols, 64);
  EXPECT_EQ(info->adc_bits, 10);
  EXPECT_TRUE(info->capabilities & wire::kCapSim);
}

TEST_F(FirmwareTest, ARetriedPulseBatchIsAnsweredFromTheCacheNotExecutedTwice) {
  const auto before = truth(1, 0);
  const auto batch = set_batch(0, 8, code(1.2));
  const auto first = call(Opcode::kPulseBatch, 2, batch);
  ASSERT_FALSE(first.header.flags & wire::kFlagError);
  const auto after_one = truth(3, 0);
  EXPECT_NE(before[0], after_one[0]) << "the SET must have moved device (0,0)";

  // The host did not see the reply and sends the identical frame again.
  const auto raw = fw_.handle(session_, wire::encode_frame(Opcode::kPulseBatch, 0, 2, batch));
  const auto replay = wire::decode_frame(raw);
  ASSERT_TRUE(replay.has_value());
  EXPECT_EQ(replay->payload, first.payload);
  EXPECT_EQ(truth(4, 0), after_one) << "a replay must not pulse again";
  const auto s = status(5);
  EXPECT_EQ(s.pulses_applied, 8u);
  EXPECT_EQ(s.replays_served, 1u);
}

TEST_F(FirmwareTest, SameSeqDifferentContentIsRefused) {
  call(Opcode::kPulseBatch, 7, set_batch(0, 2, code(1.0)));
  const auto r = call(Opcode::kPulseBatch, 7, set_batch(0, 3, code(1.0)));
  EXPECT_EQ(error_of(r).code, wire::BoardErrorCode::kSeqReused);
  EXPECT_EQ(status(8).pulses_applied, 2u);
}

TEST_F(FirmwareTest, ReplyCacheIsPerSession) {
  const auto other = fw_.open_session();
  call(Opcode::kPulseBatch, 1, set_batch(0, 1, code(1.0)));
  // Another host using seq 1 for its own request is executed, not replayed.
  auto r = wire::decode_frame(
      fw_.handle(other, wire::encode_frame(Opcode::kPulseBatch, 0, 1, set_batch(1, 1, code(1.0)))));
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->header.flags & wire::kFlagError);
  EXPECT_EQ(status(2).pulses_applied, 2u);
}

TEST_F(FirmwareTest, OutOfRangeGateRejectsTheWholeBatchAndNamesTheDevice) {
  const auto before = truth(1, 0);
  wire::PulseBatchRequest q;
  q.polarity = wire::Polarity::kSet;
  q.mask.assign(512, 0);
  for (size_t i : {0u, 1u, 70u}) wire::mask_set(q.mask, i);
  q.codes = {{code(2.0), code(1.0), 10}, {code(2.0), code(1.0), 10}, {code(2.0), code(2.5), 10}};
  const auto e = error_of(call(Opcode::kPulseBatch, 2, q.encode()));
  EXPECT_EQ(e.code, wire::BoardErrorCode::kOutOfRange);
  EXPECT_NE(e.message.find("gate_code[2] (row 1, col 6)"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("0.500..2.000 V"), std::string::npos) << e.message;
  EXPECT_EQ(truth(3, 0), before) << "nothing may be applied from a rejected batch";
  EXPECT_EQ(status(4).pulses_applied, 0u);
}

TEST_F(FirmwareTest, WidthAndVoltageLimitsAreEnforced) {
  wire::PulseBatchRequest q;
  q.polarity = wire::Polarity::kReset;
  q.mask.assign(512, 0);
  wire::mask_set(q.mask, 0);
  q.codes = {{code(1.0), code(5.2), 251}};
  auto e = error_of(call(Opcode::kPulseBatch, 1, q.encode()));
  EXPECT_NE(e.message.find("width_code[0]"), std::string::npos) << e.message;
  q.codes = {{code(3.6), code(5.2), 10}};
  e = error_of(call(Opcode::kPulseBatch, 2, q.encode()));
  EXPECT_NE(e.message.find("RESET voltage allowed 0.300..3.500 V"), std::string::npos) << e.message;
}

TEST_F(FirmwareTest, ArrayIndexThreeIsAnErrorNamingTheField) {
  wire::ReadRequest q;
  q.array = 3;
  auto e = error_of(call(Opcode::kRead, 1, q.encode()));
  EXPECT_EQ(e.code, wire::BoardErrorCode::kOutOfRange);
  EXPECT_EQ(e.message, "READ.array = 3: allowed 0..2");
  q.array = 0;
  q.n_avg = 65;
  EXPECT_EQ(error_of(call(Opcode::kRead, 2, q.encode())).message, "READ.n_avg = 65: allowed 1..64");
  q.n_avg = 1;
  q.gain_index = 5;
  EXPECT_EQ(error_of(call(Opcode::kRead, 3, q.encode())).message,
            "READ.gain_index = 5: allowed 0..4");
  wire::VmmRequest v{0, 0, 0, {}};
  EXPECT_EQ(error_of(call(Opcode::kVmm, 4, v.encode())).message,
            "VMM.n_vectors = 0: allowed 1..128");
}

TEST_F(FirmwareTest, MalformedFramesGetBadFrameAndAreNotExecuted) {
  auto f = wire::encode_frame(Opcode::kPulseBatch, 0, 9, set_batch(0, 4, code(1.0)));
  f[30] ^= 0xFF;  // corrupt the payload
  auto r = wire::decode_frame(fw_.handle(session_, f));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->header.seq, 9u);
  EXPECT_EQ(wire::decode_error_reply(r->payload)->code, wire::BoardErrorCode::kBadFrame);
  // The intact retry with the same seq is executed: a BAD_FRAME reply is never cached.
  const auto ok = call(Opcode::kPulseBatch, 9, set_batch(0, 4, code(1.0)));
  EXPECT_FALSE(ok.header.flags & wire::kFlagError);
  EXPECT_EQ(status(10).pulses_applied, 4u);

  for (std::vector<uint8_t> junk : {std::vector<uint8_t>{1, 2, 3}, std::vector<uint8_t>(20, 0)}) {
    auto j = wire::decode_frame(fw_.handle(session_, junk));
    ASSERT_TRUE(j.has_value());
    EXPECT_EQ(wire::decode_error_reply(j->payload)->code, wire::BoardErrorCode::kBadFrame);
  }
}

TEST_F(FirmwareTest, UnknownOpcodeAndPayloadLengthErrors) {
  auto r = wire::decode_frame(
      fw_.handle(session_, wire::encode_frame(static_cast<Opcode>(0x55), 0, 3, {})));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(wire::decode_error_reply(r->payload)->code, wire::BoardErrorCode::kUnknownOpcode);
  EXPECT_EQ(error_of(call(Opcode::kInfo, 4, std::vector<uint8_t>{1})).code,
            wire::BoardErrorCode::kBadLength);
  EXPECT_EQ(error_of(call(Opcode::kPulseBatch, 5, std::vector<uint8_t>(10, 0))).code,
            wire::BoardErrorCode::kBadLength);
  // An empty LOOP_RUN is a layout error (the 16-byte header is missing).
  EXPECT_EQ(error_of(call(Opcode::kLoopRun, 6, {})).code, wire::BoardErrorCode::kBadLength);
  // A well-formed one without a loaded program is out of range, and names why.
  wire::LoopRunRequest run;
  run.flags = wire::kLoopFirst;
  run.n_steps = 1;
  const auto e = error_of(call(Opcode::kLoopRun, 7, run.encode()));
  EXPECT_EQ(e.code, wire::BoardErrorCode::kOutOfRange);
  EXPECT_EQ(e.message, "LOOP_RUN: no loop program loaded");
}

TEST_F(FirmwareTest, ACellListedTwiceInOneReadGetsIndependentNoise) {
  wire::ReadRequest q;
  q.gain_index = 4;  // 1 MOhm: 0.017 uS per code, far below the read noise
  q.mode = wire::ReadMode::kCells;
  q.cells = {{7, 7}, {7, 7}, {7, 7}};
  auto r = wire::decode_read_reply(call(Opcode::kRead, 1, q.encode()).payload);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->code_sums[0] == r->code_sums[1] && r->code_sums[1] == r->code_sums[2]);
}

TEST_F(FirmwareTest, MixedBatchSetsAndResetsInOneRequest) {
  // Raise row 0 first, then one MIXED batch: even columns SET further, odd columns RESET.
  call(Opcode::kPulseBatch, 1, set_batch(0, 16, code(1.2)));
  call(Opcode::kSimClock, 2,
       wire::SimClockRequest{wire::ClockOp::kAdvance, 10'000'000'000}.encode());
  const auto before = truth(3, 0);
  wire::PulseBatchRequest q;
  q.polarity = wire::Polarity::kMixed;
  q.mask.assign(512, 0);
  q.reset_mask.assign(512, 0);
  for (size_t i = 0; i < 16; ++i) {
    wire::mask_set(q.mask, i);
    if (i % 2) {
      wire::mask_set(q.reset_mask, i);
      q.codes.push_back({code(1.5), code(5.2), 100});
    } else {
      q.codes.push_back({code(3.0), code(1.9), 100});
    }
  }
  ASSERT_FALSE(call(Opcode::kPulseBatch, 4, q.encode()).header.flags & wire::kFlagError);
  call(Opcode::kSimClock, 5,
       wire::SimClockRequest{wire::ClockOp::kAdvance, 10'000'000'000}.encode());
  const auto after = truth(6, 0);
  int up = 0, down = 0;
  for (size_t i = 0; i < 16; ++i)
    (i % 2 ? down : up) += (i % 2) ? after[i] < before[i] : after[i] > before[i];
  EXPECT_GE(up, 7);
  EXPECT_GE(down, 7);
  EXPECT_EQ(status(7).pulses_applied, 32u);

  // A RESET gate in the SET range is refused for the RESET device it belongs to.
  q.codes[1].gate_code = code(1.0);
  const auto e = error_of(call(Opcode::kPulseBatch, 8, q.encode()));
  EXPECT_NE(e.message.find("gate_code[1] (row 0, col 1)"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("RESET gate"), std::string::npos) << e.message;
  // reset_mask must be a subset of mask.
  wire::mask_set(q.reset_mask, 100);
  EXPECT_EQ(error_of(call(Opcode::kPulseBatch, 9, q.encode())).code,
            wire::BoardErrorCode::kBadLength);
}

TEST_F(FirmwareTest, ReadSettleLetsDevicesRelaxBeforeReading) {
  const uint64_t t0 = status(1).uptime_ns;
  wire::ReadRequest q;
  q.settle_ms = 1000;
  ASSERT_FALSE(call(Opcode::kRead, 2, q.encode()).header.flags & wire::kFlagError);
  // 1 s of settling plus one read pass of 64 rows x 2 us.
  EXPECT_EQ(status(3).uptime_ns, t0 + 1'000'000'000 + 128'000);
  q.settle_ms = 10001;
  EXPECT_EQ(error_of(call(Opcode::kRead, 4, q.encode())).message,
            "READ.settle_ms = 10001: allowed 0..10000");
}

TEST_F(FirmwareTest, WaitAndSimClockAdvanceTheBoardClock) {
  const uint64_t t0 = status(1).uptime_ns;
  auto w =
      wire::decode_wait_reply(call(Opcode::kWait, 2, wire::WaitRequest{1500}.encode()).payload);
  EXPECT_EQ(w->uptime_ns, t0 + 1'500'000);
  auto c = wire::decode_sim_clock_reply(
      call(Opcode::kSimClock, 3, wire::SimClockRequest{wire::ClockOp::kAdvance, 7}.encode())
          .payload);
  EXPECT_EQ(c->now_ns, t0 + 1'500'007);
}

// Found by tests/fuzz/firmware_fuzz (corpus/firmware/regress-sim-clock-wrap): WAIT 250 ms, then
// SIM_CLOCK advance_ns = 2^64 - 1 wrapped the u64 clock back to 249999999 ns; devices pulsed
// before then looked pulsed in the future. The clock now stops at 2^64 - 1.
TEST_F(FirmwareTest, TheBoardClockNeverGoesBack) {
  ASSERT_FALSE(call(Opcode::kWait, 1, wire::WaitRequest{250'000}.encode()).header.flags &
               wire::kFlagError);
  ASSERT_FALSE(call(Opcode::kPulseBatch, 2, set_batch(0, 4, code(1.0))).header.flags &
               wire::kFlagError);
  auto c = wire::decode_sim_clock_reply(
      call(Opcode::kSimClock, 3,
           wire::SimClockRequest{wire::ClockOp::kAdvance, UINT64_MAX}.encode())
          .payload);
  EXPECT_EQ(c->now_ns, UINT64_MAX);
  EXPECT_EQ(status(4).uptime_ns, UINT64_MAX);
  auto w =
      wire::decode_wait_reply(call(Opcode::kWait, 5, wire::WaitRequest{1500}.encode()).payload);
  EXPECT_EQ(w->uptime_ns, UINT64_MAX);
  for (float g : truth(6, 0)) EXPECT_TRUE(std::isfinite(g) && g >= 0) << g;
}

// Found by tests/fuzz/firmware_fuzz (corpus/firmware/regress-pulse-mask-padding): with 5 x 12
// devices the mask's last 4 bits select no device; a batch setting one was accepted, counted in
// n_devices, and answered n_pulsed = n_devices - 1.
TEST(FirmwareGeometry, MaskBitsPastTheLastDeviceAreRefused) {
  auto profile = *load_profile("typical");
  profile.arrays = 1;
  profile.rows = 5;
  profile.cols = 12;
  Firmware fw(profile, {});
  const auto session = fw.open_session();
  auto code = [](double v) { return static_cast<uint16_t>(std::lround((v + 10) / 20 * 65535)); };
  wire::PulseBatchRequest q;
  q.polarity = wire::Polarity::kSet;
  q.mask.assign(8, 0);  // ceil(60 / 8)
  q.codes.assign(2, {code(2.0), code(1.0), 50});
  wire::mask_set(q.mask, 3);
  wire::mask_set(q.mask, 62);
  auto bad = wire::decode_frame(
      fw.handle(session, wire::encode_frame(Opcode::kPulseBatch, 0, 1, q.encode())));
  ASSERT_TRUE(bad && (bad->header.flags & wire::kFlagError));
  auto e = wire::decode_error_reply(bad->payload);
  EXPECT_EQ(e->code, wire::BoardErrorCode::kOutOfRange);
  EXPECT_EQ(e->message, "PULSE_BATCH.mask bit 62: no such device (5 rows x 12 cols)");
  q.mask[7] = 0;
  wire::mask_set(q.mask, 59);  // the last device
  auto ok = wire::decode_frame(
      fw.handle(session, wire::encode_frame(Opcode::kPulseBatch, 0, 2, q.encode())));
  ASSERT_TRUE(ok && !(ok->header.flags & wire::kFlagError));
  EXPECT_EQ(wire::decode_pulse_batch_reply(ok->payload)->n_pulsed, 2);
}

TEST_F(FirmwareTest, FaultMapAndInjectionAgree) {
  wire::SimInjectFaultRequest inj{2, 5, 6, wire::FaultKind::kStuckHigh, 450.0f};
  ASSERT_FALSE(call(Opcode::kSimInjectFault, 1, inj.encode()).header.flags & wire::kFlagError);
  auto map = wire::decode_sim_fault_map_reply(
      call(Opcode::kSimFaultMap, 2, wire::ArrayRequest{2}.encode()).payload, 4096);
  EXPECT_EQ(map->faults[5 * 64 + 6], wire::FaultKind::kStuckHigh);
  EXPECT_FLOAT_EQ(truth(3, 2)[5 * 64 + 6], 450.0f);
}

}  // namespace
}  // namespace xbar::twin
