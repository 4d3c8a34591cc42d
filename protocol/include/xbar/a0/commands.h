// The A0 DPE test board's serial command set: one codec for both sides, as xbar/wire/ is for
// protocol v1. The host backend encodes commands and decodes replies; a twin with the A0's
// personality parses commands from its byte stream and encodes replies (issue 20).
//
// Source: the board's public host code and firmware, github.com/lican81/A0_DUT (drv_gpio.py,
// dut_a0.py, firmware/src/cmd.c); docs/a0.md cites the line of each command. A command is ASCII:
// the decimal code, then comma-separated decimal fields, ended by one NUL byte (no CR/LF).
// Some carry a binary payload after a marker byte and a comma, its length fixed by an earlier
// field. The board's PIC takes one command per USB transfer of at most 512 bytes. Replies are
// raw little-endian binary of a size the command fixes, with no framing and no checksum:
// nothing, the ack byte '0', one uint16, or rows of 64 uint16 sent in 512-byte chunks of 4 rows.
//
// On a byte stream (a tty, where transfer boundaries are lost) a command's end follows from its
// own fields, so parse_command() needs no framing beyond what the board's host code sends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace xbar::a0 {

inline constexpr int kArrays = 3;
inline constexpr int kRows = 64;
inline constexpr int kCols = 64;
/// The PIC's command buffer and its reply buffer (usb_com.h).
inline constexpr size_t kMaxCommandBytes = 512;
inline constexpr size_t kReplyChunkBytes = 512;
/// Row masks one DPE batch may carry: 60 x 8 bytes and the header fit in 512 (cmd.c).
inline constexpr int kMaxDpeVectors = 60;
/// The ack byte of the commands that answer one (303, 404, 405's last message, 406).
inline constexpr uint8_t kAck = '0';

/// How a read chooses the TIA gain: the one configured, or the board's automatic gain.
enum class GainMode : uint8_t { kFixed = 0, kAuto = 1 };
/// Write polarity: one per command (a batch cannot mix them).
enum class WriteMode : uint8_t { kReset = 0, kSet = 1 };

/// 103: the firmware's echo, 64 int32 of value 100000 * i. The one command with no effect:
/// the probe that a port answers like an A0.
struct Echo {};

/// 214: one 32-bit word to the 16-channel DAC over SPI (dac_set_word, dac_span_word).
struct DacWrite {
  uint32_t word = 0;
};

/// 303: bytes into a scan chain (0 bottom TIAs, 1 top TIAs, 2 control block), acknowledged
/// once shifted in.
struct ScanWrite {
  uint8_t chain = 0;
  std::vector<uint8_t> data;  // 1..kMaxScanBytes
};
inline constexpr size_t kMaxScanBytes = 120;  // a TIA chain: 96 TIAs x 10 bits

/// 211 (set) / 212 (reset): one GPIO pin, port 'A'..'K' without 'I', bit 0..15.
struct PinWrite {
  char port = 'A';
  uint8_t bit = 0;
  bool high = false;
};

/// 401: one device through the ADC; the reply is one ADC word (decode_adc_word).
struct ReadSingle {
  uint8_t array = 0, row = 0, col = 0;
  GainMode gain = GainMode::kFixed;
};

/// 402: a whole array, row-major, t_delay_us between devices; 64 rows of ADC words.
struct ReadBatch {
  uint8_t array = 0;
  GainMode gain = GainMode::kFixed;
  uint32_t t_delay_us = 0;
};

/// 403: one DPE read per row mask (bit i drives row i); one row of 64 ADC words per mask.
struct DpeBatch {
  uint8_t array = 0;
  bool float_unselected = true;  // rows not driven float (else grounded)
  GainMode gain = GainMode::kFixed;
  uint32_t t_delay_us = 0;
  std::vector<uint64_t> row_masks;  // 1..kMaxDpeVectors
};

/// 404: one pulse on one device, at DAC codes for the write and gate voltages.
struct WriteSingle {
  uint8_t array = 0, row = 0, col = 0;
  WriteMode mode = WriteMode::kSet;
  uint16_t v_write_code = 0, v_gate_code = 0;
};

/// 405: one of the 64 messages of a batch write, each two rows of DAC codes: `row` 0, 2, ..., 62
/// carries the write-voltage codes of array rows row and row + 1; `row` 64, ..., 126 the gate
/// codes of array rows row - 64 and row - 63. A device whose write or gate code is 0 is not
/// pulsed. The board pulses after the message with row 126, and acks then.
struct WriteBatchPart {
  uint8_t array = 0;
  WriteMode mode = WriteMode::kSet;
  uint8_t row = 0;
  std::vector<uint16_t> codes;  // 2 x 64, row-major
};
inline constexpr int kWriteBatchParts = 64;
inline constexpr uint8_t kLastWriteBatchRow = 126;

/// 406: one pulse whose width the PIC times (t_width_us), the DACs at v_zero before and after.
struct WriteSingleExt {
  uint8_t array = 0, row = 0, col = 0;
  WriteMode mode = WriteMode::kSet;
  uint16_t v_write_code = 0, v_gate_code = 0, v_zero_code = 0;
  uint32_t t_width_us = 0;
};

using Command = std::variant<Echo, DacWrite, ScanWrite, PinWrite, ReadSingle, ReadBatch, DpeBatch,
                             WriteSingle, WriteBatchPart, WriteSingleExt>;

/// The command's code (103, 214, ...).
int command_code(const Command& c);

/// The bytes to send, NUL included. Refuses, naming the field and its allowed range, what the
/// board would misread (an array past 2, a row past 63, too many masks, too long a command).
std::expected<std::vector<uint8_t>, std::string> encode(const Command& c);

/// The size of the reply the board sends to `c` (0 for commands that answer nothing).
size_t reply_bytes(const Command& c);

/// A command parsed from the front of a byte stream.
struct Parsed {
  enum class Status { kNeedMore, kOk, kBad };
  Status status = Status::kNeedMore;
  Command command;
  size_t consumed = 0;  // bytes of the stream this command (or, when kBad, its garbage) took
  std::string error;    // kBad: what was wrong, naming the field
};

/// Parses one command from the front of `stream`: kNeedMore until all of it is there, kBad for
/// anything the board would not read as a command (consumed then covers up to and including
/// the next NUL, where the next command may start).
Parsed parse_command(std::span<const uint8_t> stream);

/// Rows of 64 uint16 as the board sends them: ceil(rows / 4) chunks of 512 bytes, the last
/// one padded with whatever its buffer held (zeros here).
std::vector<uint8_t> encode_rows(std::span<const uint16_t> values);
/// The first `rows` x 64 values of such a reply; refuses any other length.
std::expected<std::vector<uint16_t>, std::string> decode_rows(std::span<const uint8_t> reply,
                                                              int rows);
inline constexpr size_t rows_reply_bytes(int rows) {
  return static_cast<size_t>((rows + 3) / 4) * kReplyChunkBytes;
}

/// An ADC word: the 10-bit code and, under automatic gain, the gain index it chose.
struct AdcWord {
  uint16_t code = 0;  // 0..1023
  uint8_t gain = 0;   // 0..3 as the firmware reads it (bits 10-11)
};
inline AdcWord decode_adc_word(uint16_t w) {
  return {static_cast<uint16_t>(w & 0x3FFu), static_cast<uint8_t>((w >> 10) & 0x3u)};
}
inline uint16_t encode_adc_word(AdcWord a) {
  return static_cast<uint16_t>((a.code & 0x3FFu) | ((a.gain & 0x3u) << 10));
}

}  // namespace xbar::a0
