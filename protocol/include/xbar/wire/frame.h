// Frame layer of the host<->board wire protocol v1 (docs/protocol.md §2).
//
// Every request and every reply is one frame: a 20-byte little-endian header followed by
// `length` payload bytes. The CRC32C covers the header (with the crc field as zero) and the
// payload. This library is used by both sides: the host driver and the board's twin.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string_view>
#include <vector>

namespace xbar::wire {

inline constexpr uint32_t kMagic = 0x52414258;  // bytes 'X' 'B' 'A' 'R' on the wire
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 20;
inline constexpr size_t kMaxPayload = 65536;  // bytes; larger frames are rejected unread
inline constexpr size_t kMaxFrame = kHeaderSize + kMaxPayload;

// Byte offsets of the header's fields (docs/protocol.md §2), for the code that must look into a
// frame it has not decoded: a transport reading `length` to know how much more to read, the
// board echoing a broken request's opcode and seq, the link bench corrupting past the framing.
inline constexpr size_t kOffsetMagic = 0;    // uint32
inline constexpr size_t kOffsetVersion = 4;  // uint8
inline constexpr size_t kOffsetOpcode = 5;   // uint8
inline constexpr size_t kOffsetFlags = 6;    // uint16
inline constexpr size_t kOffsetSeq = 8;      // uint32
inline constexpr size_t kOffsetLength = 12;  // uint32
inline constexpr size_t kOffsetCrc = 16;     // uint32
static_assert(kOffsetCrc + 4 == kHeaderSize);

enum class Opcode : uint8_t {
  kInfo = 0x01,
  kStatus = 0x02,
  kRead = 0x03,
  kPulseBatch = 0x04,
  kVmm = 0x05,
  kAbort = 0x06,
  kWait = 0x07,
  kLoopLoad = 0x10,
  kLoopRun = 0x11,
  kSimFaultMap = 0x80,
  kSimGroundTruth = 0x81,
  kSimInjectFault = 0x82,
  kSimClock = 0x83,
  kSimLink = 0x84,
};

/// True for every opcode protocol v1 defines (whether or not a given board implements it).
bool is_known_opcode(uint8_t op);
/// True for the SIM_* opcodes that only the twin answers.
inline bool is_sim_opcode(Opcode op) { return static_cast<uint8_t>(op) >= 0x80; }
std::string_view opcode_name(Opcode op);

enum FrameFlags : uint16_t {
  kFlagReply = 1u << 0,  // set on every board->host frame
  kFlagError = 1u << 1,  // reply payload is an ErrorReply
  // host->board: the host has seen this session's RESTARTED reply; the board executes this
  // request and stops refusing (docs/protocol.md §5.3)
  kFlagAckRestart = 1u << 2,
};

struct Header {
  uint32_t magic = kMagic;
  uint8_t version = kVersion;
  Opcode opcode = Opcode::kInfo;
  uint16_t flags = 0;
  uint32_t seq = 0;
  uint32_t length = 0;
  uint32_t crc32c = 0;
};

struct Frame {
  Header header;
  std::vector<uint8_t> payload;
};

enum class FrameError : uint8_t {
  kTruncated,      // fewer bytes than the header or than header.length announces
  kBadMagic,       // first four bytes are not "XBAR"
  kBadVersion,     // version byte is not 1
  kOversize,       // header.length > kMaxPayload
  kBadCrc,         // CRC32C mismatch
  kUnknownOpcode,  // opcode not defined by protocol v1
  kTrailingBytes,  // more bytes than header + length
};
std::string_view frame_error_name(FrameError e);

/// The payload length the header at the start of `bytes` announces, unchecked (the caller
/// bounds it by kMaxPayload). `bytes` must hold at least kHeaderSize bytes.
uint32_t announced_length(std::span<const uint8_t> bytes);

/// CRC32C (Castagnoli, reflected, init/xorout 0xFFFFFFFF) of `data`.
uint32_t crc32c(std::span<const uint8_t> data);

/// Builds a complete frame (header with CRC + payload). payload.size() must be <= kMaxPayload.
std::vector<uint8_t> encode_frame(Opcode op, uint16_t flags, uint32_t seq,
                                  std::span<const uint8_t> payload);

/// Parses the 20 header bytes only (magic, version, opcode, length limit); no CRC check.
/// Stream transports call this to learn how many payload bytes follow.
std::expected<Header, FrameError> decode_header(std::span<const uint8_t> bytes);

/// Parses and checks a complete frame: exactly header + length bytes, CRC included.
std::expected<Frame, FrameError> decode_frame(std::span<const uint8_t> bytes);

}  // namespace xbar::wire
