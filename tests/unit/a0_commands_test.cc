// The A0 board's command codec (protocol/include/xbar/a0/commands.h): the exact bytes the
// board's public host code sends, round trips through the stream parser, byte by byte, and what
// the board would misread refused with the field named.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "xbar/a0/commands.h"
#include "xbar/a0/dac.h"

namespace xbar::a0 {
namespace {

std::vector<uint8_t> bytes(const std::string& s) {
  std::vector<uint8_t> b(s.begin(), s.end());
  b.push_back(0);
  return b;
}

std::vector<uint8_t> encoded(const Command& c) {
  auto e = encode(c);
  EXPECT_TRUE(e.has_value()) << e.error();
  return e.value_or(std::vector<uint8_t>{});
}

Command parsed_whole(const std::vector<uint8_t>& b) {
  const Parsed p = parse_command(b);
  EXPECT_EQ(p.status, Parsed::Status::kOk) << p.error;
  EXPECT_EQ(p.consumed, b.size());
  return p.command;
}

// dut_a0.py pic_read_single: f'401,{array},{row},{col},{mode}\0'.
TEST(A0Commands, TextCommandsAreTheHostCodesBytes) {
  EXPECT_EQ(encoded(ReadSingle{2, 63, 5, GainMode::kAuto}), bytes("401,2,63,5,1"));
  EXPECT_EQ(encoded(ReadBatch{1, GainMode::kFixed, 1000}), bytes("402,1,0,1000"));
  EXPECT_EQ(encoded(WriteSingle{0, 1, 2, WriteMode::kReset, 40000, 45000}),
            bytes("404,0,1,2,0,40000,45000"));
  EXPECT_EQ(encoded(WriteSingleExt{0, 1, 2, WriteMode::kSet, 40000, 45000, 32767, 10}),
            bytes("406,0,1,2,1,40000,45000,32767,10"));
  EXPECT_EQ(encoded(PinWrite{'E', 6, true}), bytes("211,E,6"));
  EXPECT_EQ(encoded(PinWrite{'K', 15, false}), bytes("212,K,15"));
  EXPECT_EQ(encoded(Echo{}), bytes("103"));
  // The DAC word 0x00312345 (command 3, channel 1, code 0x2345) byte-swapped, in decimal, as
  // drv_gpio.py spi_dac_write sends it: 0x45233100.
  EXPECT_EQ(encoded(DacWrite{0x00312345u}), bytes(std::to_string(0x45233100u).insert(0, "214,")));
}

// dut_a0.py pic_dpe_batch: '403,arr,n,mode,Tdly,\x01,' + pack('>Q'*n) + '\0'; mode bit 0
// floats the rows not driven, bit 1 is the automatic gain.
TEST(A0Commands, ADpeBatchCarriesBigEndianRowMasks) {
  DpeBatch d{1, true, GainMode::kAuto, 7, {0x0102030405060708ull, 1ull << 63}};
  const auto b = encoded(d);
  const std::string head = "403,1,2,3,7,";
  ASSERT_EQ(b.size(), head.size() + 2 + 16 + 1);
  EXPECT_EQ(std::string(b.begin(), b.begin() + static_cast<long>(head.size())), head);
  EXPECT_EQ(b[head.size()], 0x01);
  EXPECT_EQ(b[head.size() + 1], ',');
  EXPECT_EQ(b[head.size() + 2], 0x01);  // most significant byte first
  EXPECT_EQ(b[head.size() + 9], 0x08);
  EXPECT_EQ(b[head.size() + 10], 0x80);
  EXPECT_EQ(b.back(), 0);
  EXPECT_EQ(reply_bytes(d), 512u);  // 2 rows of 64 uint16: one chunk of 4 rows
  const auto back = std::get<DpeBatch>(parsed_whole(b));
  EXPECT_EQ(back.row_masks, d.row_masks);
  EXPECT_TRUE(back.float_unselected);
  EXPECT_EQ(back.gain, GainMode::kAuto);
  EXPECT_EQ(back.t_delay_us, 7u);
}

// dut_a0.py pic_write_batch: 64 messages '405,arr,mode,row,0,' + 256 bytes + '\0'; only the
// message of row 126 is answered.
TEST(A0Commands, ABatchWriteIsSixtyFourMessagesAndOneAck) {
  WriteBatchPart w{2, WriteMode::kSet, 0, std::vector<uint16_t>(128)};
  for (size_t i = 0; i < w.codes.size(); ++i) w.codes[i] = static_cast<uint16_t>(1000 + i);
  for (int row = 0; row <= kLastWriteBatchRow; row += 2) {
    w.row = static_cast<uint8_t>(row);
    const auto b = encoded(w);
    EXPECT_EQ(b.size(), std::to_string(row).size() + std::string("405,2,1,,0,").size() + 257);
    EXPECT_EQ(reply_bytes(w), row == kLastWriteBatchRow ? 1u : 0u);
    const auto back = std::get<WriteBatchPart>(parsed_whole(b));
    EXPECT_EQ(back.codes, w.codes);
    EXPECT_EQ(back.row, row);
  }
}

TEST(A0Commands, EveryCommandRoundTripsEvenFedByteByByte) {
  const std::vector<Command> all = {
      Echo{},
      DacWrite{0xE00003u},
      ScanWrite{2, {0x10, 0x02, 0x0C, 0x10, 0x20, 0x01, 0x02}},
      PinWrite{'A', 3, true},
      ReadSingle{1, 2, 3, GainMode::kFixed},
      ReadBatch{2, GainMode::kAuto, 0},
      DpeBatch{0, false, GainMode::kFixed, 0, std::vector<uint64_t>(60, 0xFFFFFFFFFFFFFFFFull)},
      WriteSingle{2, 63, 63, WriteMode::kSet, 1, 65535},
      WriteBatchPart{0, WriteMode::kReset, 126, std::vector<uint16_t>(128, 0)},
      WriteSingleExt{1, 0, 0, WriteMode::kReset, 5, 6, 7, 4000000000u},
  };
  std::vector<uint8_t> stream;
  for (const Command& c : all) {
    const auto b = encoded(c);
    EXPECT_LE(b.size(), kMaxCommandBytes);
    stream.insert(stream.end(), b.begin(), b.end());
  }
  // The stream arrives a byte at a time: every prefix of a command needs more, never a value.
  std::vector<uint8_t> got;
  size_t commands = 0;
  for (uint8_t byte : stream) {
    got.push_back(byte);
    const Parsed p = parse_command(got);
    ASSERT_NE(p.status, Parsed::Status::kBad) << p.error;
    if (p.status == Parsed::Status::kNeedMore) continue;
    EXPECT_EQ(p.consumed, got.size());
    EXPECT_EQ(command_code(p.command), command_code(all[commands]));
    EXPECT_EQ(encoded(p.command), encoded(all[commands]));
    got.clear();
    ++commands;
  }
  EXPECT_EQ(commands, all.size());
  EXPECT_TRUE(got.empty());
}

TEST(A0Commands, WhatTheBoardWouldMisreadIsRefusedNamingTheField) {
  const auto refused = [](const Command& c, const std::string& part) {
    const auto e = encode(c);
    ASSERT_FALSE(e.has_value());
    EXPECT_NE(e.error().find(part), std::string::npos) << e.error();
  };
  refused(ReadSingle{3, 0, 0, GainMode::kFixed}, "array = 3: allowed 0..2");
  refused(ReadSingle{0, 64, 0, GainMode::kFixed}, "row = 64: allowed 0..63");
  refused(WriteSingle{0, 0, 64, WriteMode::kSet, 1, 1}, "col = 64: allowed 0..63");
  refused(DpeBatch{0, true, GainMode::kFixed, 0, std::vector<uint64_t>(61, 1)},
          "row_masks = 61: allowed 1..60");
  refused(DpeBatch{0, true, GainMode::kFixed, 0, {}}, "row_masks = 0");
  refused(WriteBatchPart{0, WriteMode::kSet, 3, std::vector<uint16_t>(128)}, "row = 3");
  refused(WriteBatchPart{0, WriteMode::kSet, 128, std::vector<uint16_t>(128)}, "row = 128");
  refused(WriteBatchPart{0, WriteMode::kSet, 0, std::vector<uint16_t>(127)}, "codes = 127");
  refused(ScanWrite{3, {1}}, "chain = 3: allowed 0..2");
  refused(ScanWrite{0, std::vector<uint8_t>(121)}, "scan bytes = 121: allowed 1..120");
  refused(PinWrite{'I', 0, true}, "port = 'I'");
  refused(PinWrite{'B', 16, true}, "bit = 16: allowed 0..15");
}

TEST(A0Commands, GarbageNeverBecomesACommand) {
  const auto is_bad = [](const std::string& s, const std::string& part) {
    const auto b = bytes(s);
    const Parsed p = parse_command(b);
    ASSERT_EQ(p.status, Parsed::Status::kBad) << s;
    EXPECT_EQ(p.consumed, b.size()) << s;  // up to and including the NUL
    EXPECT_NE(p.error.find(part), std::string::npos) << p.error;
  };
  is_bad("999,1", "command 999: not one the board knows");
  is_bad("abc", "not a decimal number");
  is_bad("401,3,0,0,0", "array = 3: allowed 0..2");
  is_bad("401,0,0,0", "3 fields where 4 are needed");
  is_bad("401,0,0,0,0,9", "more than 4 fields");
  is_bad("401,0,0,0,2", "mode = 2: allowed 0..1");
  is_bad("402,0,0,-1", "not a decimal number");
  is_bad("404,0,0,0,1,70000,1", "v_write_code = 70000: allowed 0..65535");
  is_bad("103,1", "takes no fields");
  is_bad("303,2,0,\x01,", "scan bytes = 0: allowed 1..120");  // found by the fuzz target
  // A DPE batch whose payload is one byte short: its NUL lands inside the masks.
  auto b = encoded(DpeBatch{0, true, GainMode::kFixed, 0, {1, 2}});
  b.erase(b.end() - 2);
  const Parsed short_payload = parse_command(b);
  EXPECT_EQ(short_payload.status, Parsed::Status::kNeedMore);
  b.push_back('x');
  b.push_back(0);
  EXPECT_EQ(parse_command(b).status, Parsed::Status::kBad);
  // A half-sent command is never a command.
  const auto whole = bytes("404,0,1,2,1,100,200");
  for (size_t n = 0; n + 1 < whole.size(); ++n) {
    EXPECT_EQ(parse_command(std::span(whole).first(n)).status, Parsed::Status::kNeedMore) << n;
  }
}

TEST(A0Commands, RowsComeInChunksOfFourRows) {
  std::mt19937 rng(3);
  for (int rows : {1, 3, 4, 5, 60, 64}) {
    std::vector<uint16_t> v(static_cast<size_t>(rows) * kCols);
    for (auto& x : v) x = static_cast<uint16_t>(rng());
    const auto reply = encode_rows(v);
    EXPECT_EQ(reply.size(), rows_reply_bytes(rows));
    EXPECT_EQ(reply.size() % kReplyChunkBytes, 0u);
    auto back = decode_rows(reply, rows);
    ASSERT_TRUE(back.has_value()) << back.error();
    EXPECT_EQ(*back, v);
    auto short_reply = decode_rows(std::span(reply).first(reply.size() - 1), rows);
    ASSERT_FALSE(short_reply.has_value());
    EXPECT_NE(short_reply.error().find("expected"), std::string::npos);
  }
  EXPECT_EQ(rows_reply_bytes(64), 8192u);  // 402: 16 chunks
}

TEST(A0Commands, AnAdcWordCarriesTheCodeAndTheAutomaticGain) {
  const AdcWord w = decode_adc_word(static_cast<uint16_t>((2u << 10) | 700u));
  EXPECT_EQ(w.code, 700);
  EXPECT_EQ(w.gain, 2);
  EXPECT_EQ(encode_adc_word(w), (2u << 10) | 700u);
  EXPECT_EQ(decode_adc_word(0xFFFF).code, 1023);
}

// dut_func.py dac_volt2raw: code = int((V - lo) / (hi - lo) * 0xFFFF); 0 V in the host's +-10 V
// span is 0x7FFF, not 0 (which a batch write reads as "skip this device").
TEST(A0Dac, CodesAreTheHostCodesAndOutOfSpanVoltagesAreRefused) {
  EXPECT_EQ(dac_code(0.0, DacSpan::kPlusMinus10V, "v").value(), 0x7FFF);
  EXPECT_EQ(dac_code(10.0, DacSpan::kPlusMinus10V, "v").value(), 0xFFFF);
  EXPECT_EQ(dac_code(-10.0, DacSpan::kPlusMinus10V, "v").value(), 0);
  EXPECT_EQ(dac_code(2.5, DacSpan::k0To5V, "v").value(), 32767);
  for (double v : {-9.99, -1.0, 0.2, 1.4, 5.5, 9.7}) {
    const uint16_t c = dac_code(v, DacSpan::kPlusMinus10V, "v").value();
    EXPECT_NEAR(dac_volts(c, DacSpan::kPlusMinus10V), v, 20.0 / 65535) << v;
  }
  const auto high = dac_code(10.5, DacSpan::kPlusMinus10V, "v_write");
  ASSERT_FALSE(high.has_value());
  EXPECT_EQ(high.error(), "v_write = 10.5 V: allowed -10..10 V (the DAC's span)");
  EXPECT_FALSE(dac_code(-0.1, DacSpan::k0To5V, "v_gate").has_value());
  EXPECT_FALSE(dac_code(std::nan(""), DacSpan::kPlusMinus10V, "v_read").has_value());
  // The words command 214 carries (dut_func.py dac_set, dac_init).
  EXPECT_EQ(dac_set_word(DacChannel::kTvdd, 0x1234), 0x00361234u);
  EXPECT_EQ(dac_span_word(DacSpan::kPlusMinus10V), 0x00E00003u);
}

}  // namespace
}  // namespace xbar::a0
