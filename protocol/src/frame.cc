#include "xbar/wire/frame.h"

#include <boost/crc.hpp>
#include <cstring>

#include "xbar/wire/bytes.h"

namespace xbar::wire {

namespace {
// Castagnoli polynomial, reflected in and out (iSCSI / RFC 3720 CRC32C).
using Crc32c = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

Header read_header_fields(std::span<const uint8_t> b) {
  ByteReader r(b.first(kHeaderSize));
  Header h;
  h.magic = r.get<uint32_t>();
  h.version = r.get<uint8_t>();
  h.opcode = static_cast<Opcode>(r.get<uint8_t>());
  h.flags = r.get<uint16_t>();
  h.seq = r.get<uint32_t>();
  h.length = r.get<uint32_t>();
  h.crc32c = r.get<uint32_t>();
  return h;
}
}  // namespace

bool is_known_opcode(uint8_t op) {
  switch (static_cast<Opcode>(op)) {
    case Opcode::kInfo:
    case Opcode::kStatus:
    case Opcode::kRead:
    case Opcode::kPulseBatch:
    case Opcode::kVmm:
    case Opcode::kAbort:
    case Opcode::kWait:
    case Opcode::kLoopLoad:
    case Opcode::kLoopRun:
    case Opcode::kSimFaultMap:
    case Opcode::kSimGroundTruth:
    case Opcode::kSimInjectFault:
    case Opcode::kSimClock:
    case Opcode::kSimLink:
      return true;
  }
  return false;
}

std::string_view opcode_name(Opcode op) {
  switch (op) {
    case Opcode::kInfo:
      return "INFO";
    case Opcode::kStatus:
      return "STATUS";
    case Opcode::kRead:
      return "READ";
    case Opcode::kPulseBatch:
      return "PULSE_BATCH";
    case Opcode::kVmm:
      return "VMM";
    case Opcode::kAbort:
      return "ABORT";
    case Opcode::kWait:
      return "WAIT";
    case Opcode::kLoopLoad:
      return "LOOP_LOAD";
    case Opcode::kLoopRun:
      return "LOOP_RUN";
    case Opcode::kSimFaultMap:
      return "SIM_FAULT_MAP";
    case Opcode::kSimGroundTruth:
      return "SIM_GROUND_TRUTH";
    case Opcode::kSimInjectFault:
      return "SIM_INJECT_FAULT";
    case Opcode::kSimClock:
      return "SIM_CLOCK";
    case Opcode::kSimLink:
      return "SIM_LINK";
  }
  return "UNKNOWN";
}

std::string_view frame_error_name(FrameError e) {
  switch (e) {
    case FrameError::kTruncated:
      return "truncated frame";
    case FrameError::kBadMagic:
      return "bad magic (expected \"XBAR\")";
    case FrameError::kBadVersion:
      return "unsupported protocol version (expected 1)";
    case FrameError::kOversize:
      return "frame length exceeds 65536 payload bytes";
    case FrameError::kBadCrc:
      return "CRC32C mismatch";
    case FrameError::kUnknownOpcode:
      return "unknown opcode";
    case FrameError::kTrailingBytes:
      return "bytes after the announced payload";
  }
  return "frame error";
}

uint32_t announced_length(std::span<const uint8_t> bytes) {
  uint32_t length = 0;
  std::memcpy(&length, bytes.data() + kOffsetLength, sizeof length);
  return length;
}

uint32_t crc32c(std::span<const uint8_t> data) {
  Crc32c crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

std::vector<uint8_t> encode_frame(Opcode op, uint16_t flags, uint32_t seq,
                                  std::span<const uint8_t> payload) {
  ByteWriter w;
  w.reserve(kHeaderSize + payload.size());
  w.put<uint32_t>(kMagic);
  w.put<uint8_t>(kVersion);
  w.put<uint8_t>(static_cast<uint8_t>(op));
  w.put<uint16_t>(flags);
  w.put<uint32_t>(seq);
  w.put<uint32_t>(static_cast<uint32_t>(payload.size()));
  w.put<uint32_t>(0);  // CRC placeholder
  w.put_bytes(payload);
  std::vector<uint8_t> out = w.take();
  const uint32_t crc = crc32c(out);
  std::memcpy(out.data() + kOffsetCrc, &crc, sizeof crc);
  return out;
}

std::expected<Header, FrameError> decode_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) return std::unexpected(FrameError::kTruncated);
  Header h = read_header_fields(bytes);
  if (h.magic != kMagic) return std::unexpected(FrameError::kBadMagic);
  if (h.version != kVersion) return std::unexpected(FrameError::kBadVersion);
  if (h.length > kMaxPayload) return std::unexpected(FrameError::kOversize);
  if (!is_known_opcode(static_cast<uint8_t>(h.opcode))) {
    return std::unexpected(FrameError::kUnknownOpcode);
  }
  return h;
}

std::expected<Frame, FrameError> decode_frame(std::span<const uint8_t> bytes) {
  auto h = decode_header(bytes);
  // An unknown opcode is reported only once the CRC proves the byte was sent as such.
  if (!h && h.error() != FrameError::kUnknownOpcode) return std::unexpected(h.error());
  const Header hdr = h ? *h : read_header_fields(bytes);
  const size_t total = kHeaderSize + hdr.length;
  if (bytes.size() < total) return std::unexpected(FrameError::kTruncated);
  if (bytes.size() > total) return std::unexpected(FrameError::kTrailingBytes);
  Crc32c crc;  // header with the crc field read as zero, then the payload
  crc.process_bytes(bytes.data(), kOffsetCrc);
  const uint8_t zeros[4] = {0, 0, 0, 0};
  crc.process_bytes(zeros, sizeof zeros);
  crc.process_bytes(bytes.data() + kHeaderSize, hdr.length);
  if (crc.checksum() != hdr.crc32c) return std::unexpected(FrameError::kBadCrc);
  // An error reply echoes the request's opcode byte, even one protocol v1 does not define.
  const bool error_reply = (hdr.flags & (kFlagReply | kFlagError)) == (kFlagReply | kFlagError);
  if (!h && !error_reply) return std::unexpected(h.error());
  return Frame{hdr, std::vector<uint8_t>(bytes.begin() + kHeaderSize, bytes.end())};
}

}  // namespace xbar::wire
