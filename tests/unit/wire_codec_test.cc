// The frame codec and payload codecs of protocol v1: round trips and rejection of every kind
// of malformed frame.
#include <gtest/gtest.h>

#include <cstring>

#include "xbar/wire/frame.h"
#include "xbar/wire/messages.h"

namespace xbar::wire {
namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c(bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c({}), 0u);
}

TEST(Frame, RoundTripKeepsEveryHeaderField) {
  const std::vector<uint8_t> payload = {1, 2, 3, 4, 5};
  const auto f = encode_frame(Opcode::kRead, kFlagReply, 0xDEADBEEF, payload);
  ASSERT_EQ(f.size(), kHeaderSize + payload.size());
  EXPECT_EQ(std::string(f.begin(), f.begin() + 4), "XBAR");
  auto d = decode_frame(f);
  ASSERT_TRUE(d.has_value()) << frame_error_name(d.error());
  EXPECT_EQ(d->header.opcode, Opcode::kRead);
  EXPECT_EQ(d->header.flags, kFlagReply);
  EXPECT_EQ(d->header.seq, 0xDEADBEEFu);
  EXPECT_EQ(d->header.length, payload.size());
  EXPECT_EQ(d->payload, payload);
}

TEST(Frame, EmptyAndMaximalPayloads) {
  EXPECT_TRUE(decode_frame(encode_frame(Opcode::kInfo, 0, 1, {})).has_value());
  std::vector<uint8_t> big(kMaxPayload, 0xA5);
  auto d = decode_frame(encode_frame(Opcode::kVmm, 0, 2, big));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->payload.size(), kMaxPayload);
}

TEST(Frame, RejectsBadMagic) {
  auto f = encode_frame(Opcode::kInfo, 0, 1, {});
  f[0] = 'Y';
  EXPECT_EQ(decode_frame(f).error(), FrameError::kBadMagic);
}

TEST(Frame, RejectsBadVersion) {
  auto f = encode_frame(Opcode::kInfo, 0, 1, {});
  f[4] = 2;
  EXPECT_EQ(decode_frame(f).error(), FrameError::kBadVersion);
}

TEST(Frame, RejectsEveryFlippedBitThroughTheCrc) {
  const auto good = encode_frame(Opcode::kStatus, 0, 7, std::vector<uint8_t>{9, 8, 7});
  // Every single-bit error outside magic/version/length/opcode must be caught by the CRC.
  for (size_t byte = 0; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      auto f = good;
      f[byte] ^= static_cast<uint8_t>(1u << bit);
      EXPECT_FALSE(decode_frame(f).has_value()) << "byte " << byte << " bit " << bit;
    }
  }
  auto f = good;
  f[kHeaderSize] ^= 0x01;
  EXPECT_EQ(decode_frame(f).error(), FrameError::kBadCrc);
}

TEST(Frame, RejectsTruncatedFrames) {
  const auto f = encode_frame(Opcode::kRead, 0, 1, std::vector<uint8_t>(10, 1));
  for (size_t n = 0; n < f.size(); ++n) {
    auto d = decode_frame(std::span(f.data(), n));
    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error(), FrameError::kTruncated) << n;
  }
}

TEST(Frame, RejectsTrailingBytes) {
  auto f = encode_frame(Opcode::kRead, 0, 1, {});
  f.push_back(0);
  EXPECT_EQ(decode_frame(f).error(), FrameError::kTrailingBytes);
}

TEST(Frame, RejectsOversizeBeforeReadingThePayload) {
  auto f = encode_frame(Opcode::kVmm, 0, 1, {});
  const uint32_t huge = kMaxPayload + 1;
  std::memcpy(f.data() + 12, &huge, 4);
  EXPECT_EQ(decode_header(f).error(), FrameError::kOversize);
  EXPECT_EQ(decode_frame(f).error(), FrameError::kOversize);
}

TEST(Frame, RejectsUnknownOpcodeButAcceptsItInErrorReplies) {
  auto f = encode_frame(static_cast<Opcode>(0x42), 0, 1, {});
  EXPECT_EQ(decode_frame(f).error(), FrameError::kUnknownOpcode);
  auto e = encode_frame(static_cast<Opcode>(0x42), kFlagReply | kFlagError, 1,
                        ErrorReply{BoardErrorCode::kUnknownOpcode, "x"}.encode());
  EXPECT_TRUE(decode_frame(e).has_value());
}

TEST(Messages, PulseBatchRoundTripAndLengthChecks) {
  PulseBatchRequest q;
  q.array = 2;
  q.polarity = Polarity::kReset;
  q.mask.assign(512, 0);
  mask_set(q.mask, 5);
  mask_set(q.mask, 4095);
  q.codes = {{100, 200, 5}, {300, 400, 250}};
  const auto p = q.encode();
  ASSERT_EQ(p.size(), 4 + 512 + 12u);
  auto d = decode_pulse_batch_request(p, 512);
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_EQ(d->array, 2);
  EXPECT_EQ(d->polarity, Polarity::kReset);
  EXPECT_TRUE(mask_test(d->mask, 4095));
  EXPECT_EQ(d->codes[1].width_code, 250);

  auto short_p = p;
  short_p.pop_back();
  EXPECT_NE(decode_pulse_batch_request(short_p, 512).error().find("PULSE_BATCH"),
            std::string::npos);
  auto bad_count = p;
  bad_count[2] = 3;  // n_devices says 3, mask selects 2
  EXPECT_NE(decode_pulse_batch_request(bad_count, 512).error().find("n_devices = 3"),
            std::string::npos);
  auto bad_pol = p;
  bad_pol[1] = 7;
  EXPECT_NE(decode_pulse_batch_request(bad_pol, 512).error().find("polarity = 7"),
            std::string::npos);
}

TEST(Messages, ReadRequestModesAndCells) {
  ReadRequest q;
  q.array = 1;
  q.gain_index = 3;
  q.n_avg = 8;
  q.mode = ReadMode::kCells;
  q.cells = {{0, 0}, {63, 63}, {10, 20}};
  q.settle_ms = 1234;
  auto d = decode_read_request(q.encode());
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_EQ(d->cells, q.cells);
  EXPECT_EQ(d->settle_ms, 1234);
  EXPECT_EQ(d->n_avg, 8);
  q.mode = ReadMode::kWholeArray;  // whole-array mode must not carry cells
  EXPECT_FALSE(decode_read_request(q.encode()).has_value());
}

TEST(Messages, InfoStatusVmmSimRoundTrips) {
  InfoReply i;
  i.serial = "XS0000000000002A";
  i.firmware_version = "twin-0.1.0";
  i.tia_gains_ohm = {1000, 5000, 30000};
  i.capabilities = kCapSim;
  auto di = decode_info_reply(i.encode());
  ASSERT_TRUE(di.has_value()) << di.error();
  EXPECT_EQ(di->serial, i.serial);
  EXPECT_EQ(di->tia_gains_ohm, i.tia_gains_ohm);
  EXPECT_EQ(di->set_gate_max_mV, 2000);

  StatusReply s{BoardState::kIdle, 4, 123456789012ull, 42, 99, 3};
  auto ds = decode_status_reply(s.encode());
  ASSERT_TRUE(ds.has_value());
  EXPECT_EQ(ds->uptime_ns, 123456789012ull);
  EXPECT_EQ(ds->replays_served, 3u);

  VmmReply v{1, 0, 2, std::vector<uint32_t>(128, 260865)};
  auto dv = decode_vmm_reply(v.encode(), 64);
  ASSERT_TRUE(dv.has_value());
  EXPECT_EQ(dv->acc, v.acc);
  EXPECT_FALSE(decode_vmm_reply(v.encode(), 63).has_value());
  // Four bytes announcing 65535 vectors: refused by its length (before any allocation).
  const std::vector<uint8_t> short_reply = {1, 0, 0xff, 0xff};
  auto ds4 = decode_vmm_reply(short_reply, 64);
  ASSERT_FALSE(ds4.has_value());
  EXPECT_NE(ds4.error().find("VMM reply"), std::string::npos) << ds4.error();

  SimGroundTruthReply g{0, std::vector<float>(4096, 42.5f)};
  auto dg = decode_sim_ground_truth_reply(g.encode(), 4096);
  ASSERT_TRUE(dg.has_value());
  EXPECT_EQ(dg->g_uS[4095], 42.5f);

  EXPECT_FALSE(decode_wait_request(WaitRequest{WaitRequest::kMaxUs + 1}.encode()).has_value());
  ErrorReply e{BoardErrorCode::kOutOfRange, "READ.array = 3: allowed 0..2"};
  auto de = decode_error_reply(e.encode());
  ASSERT_TRUE(de.has_value());
  EXPECT_EQ(de->message, e.message);
}

}  // namespace
}  // namespace xbar::wire
