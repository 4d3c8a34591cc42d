// The protocol v1 codec (protocol/), host side and shared payload codecs.
//
// Input: one selector byte, then the case's bytes.
//   selector % 32 == 0: the bytes are a frame: decode_frame and decode_header are compared with
//     a reference decoder written from docs/protocol.md §2 (its check order, a bitwise CRC32C);
//     an accepted frame re-encodes to exactly the same bytes, and single-bit flips of it (up to
//     24, positions from its CRC) are all rejected.
//   == 1: the bytes are (u8 opcode, u16 flags, u32 seq, payload): encode_frame, then
//     decode_frame gives back every field (or kUnknownOpcode for an opcode v1 does not define,
//     unless the flags say error reply), and the CRC equals the reference CRC.
//   else: one payload codec (messages.h, loop_program.h), some with geometry bytes first. An
//   accepted
//     payload re-encodes to as many bytes; decoding the re-encoding succeeds and encodes to the
//     same bytes; for layouts without reserved or padded fields the re-encoding is the input.
//     Plus each message's own invariants (masks, modes, loop programs run in bounds).
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "fuzz_util.h"
#include "xbar/wire/frame.h"
#include "xbar/wire/loop_program.h"
#include "xbar/wire/messages.h"

using namespace xbar::wire;
using xbar::fuzz::Input;

namespace {

// ---- reference frame decoder (docs/protocol.md §2), independent of frame.cc ----

uint32_t ref_crc32c(std::span<const uint8_t> data, size_t zero_from, size_t zero_to) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < data.size(); ++i) {
    crc ^= (i >= zero_from && i < zero_to) ? 0u : data[i];
    for (int k = 0; k < 8; ++k) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return crc ^ 0xFFFFFFFFu;
}

uint32_t le32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 | uint32_t{b[at + 2]} << 16 |
         uint32_t{b[at + 3]} << 24;
}

// The opcodes of docs/protocol.md §3. An opcode the codec knows and this table does not (or the
// reverse) is reported once at start-up and then judged as the codec does, so that a protocol
// extension landing before this table is updated does not stop every fuzz run.
bool spec_opcode(uint8_t op) {
  return (op >= 0x01 && op <= 0x07) || op == 0x10 || op == 0x11 || (op >= 0x80 && op <= 0x84);
}

bool g_known[256];

bool ref_known_opcode(uint8_t op) { return g_known[op]; }

// nullopt: accepted.
std::optional<FrameError> ref_decode(std::span<const uint8_t> b, bool header_only) {
  if (b.size() < 20) return FrameError::kTruncated;
  if (le32(b, 0) != 0x52414258u) return FrameError::kBadMagic;
  if (b[4] != 1) return FrameError::kBadVersion;
  const uint32_t len = le32(b, 12);
  if (len > 65536) return FrameError::kOversize;
  const uint16_t flags = static_cast<uint16_t>(b[6] | b[7] << 8);
  if (header_only) {
    if (!ref_known_opcode(b[5])) return FrameError::kUnknownOpcode;
    return std::nullopt;
  }
  if (b.size() < 20 + size_t{len}) return FrameError::kTruncated;
  if (b.size() > 20 + size_t{len}) return FrameError::kTrailingBytes;
  if (ref_crc32c(b, 16, 20) != le32(b, 16)) return FrameError::kBadCrc;
  if (!ref_known_opcode(b[5]) && (flags & 3u) != 3u) return FrameError::kUnknownOpcode;
  return std::nullopt;
}

std::string err_name(std::optional<FrameError> e) {
  return e ? std::string(frame_error_name(*e)) : std::string("accepted");
}

void frame_case(std::span<const uint8_t> b) {
  auto f = decode_frame(b);
  const auto ref = ref_decode(b, false);
  const std::optional<FrameError> got = f ? std::nullopt : std::optional<FrameError>(f.error());
  FUZZ_CHECK(got == ref, fmt::format("decode_frame: {}, reference: {} ({} bytes)", err_name(got),
                                     err_name(ref), b.size()));
  auto h = decode_header(b);
  const auto href = ref_decode(b, true);
  const std::optional<FrameError> hgot = h ? std::nullopt : std::optional<FrameError>(h.error());
  FUZZ_CHECK(hgot == href,
             fmt::format("decode_header: {}, reference: {}", err_name(hgot), err_name(href)));
  if (h) {
    FUZZ_CHECK(h->magic == kMagic && h->version == kVersion && h->length <= kMaxPayload,
               "decode_header accepted a header outside its checks");
  }
  if (!f) return;
  const Header& hd = f->header;
  FUZZ_CHECK(hd.length == f->payload.size(), "payload size != header.length");
  if (h) {
    FUZZ_CHECK(h->opcode == hd.opcode && h->flags == hd.flags && h->seq == hd.seq &&
                   h->length == hd.length && h->crc32c == hd.crc32c,
               "decode_header and decode_frame disagree on the header");
  }
  const auto again = encode_frame(hd.opcode, hd.flags, hd.seq, f->payload);
  FUZZ_CHECK(std::equal(again.begin(), again.end(), b.begin(), b.end()),
             "an accepted frame does not re-encode to its own bytes");
  // Every single-bit error is caught (CRC32C detects all of them; the structural fields are
  // checked before the CRC or change what it covers).
  std::vector<uint8_t> m(b.begin(), b.end());
  const size_t bits = m.size() * 8;
  uint32_t x = hd.crc32c | 1u;
  for (int k = 0; k < 24; ++k) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const size_t bit = x % bits;
    m[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    FUZZ_CHECK(!decode_frame(m).has_value(),
               fmt::format("a frame with bit {} flipped was accepted", bit));
    m[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
}

void encode_case(Input& in) {
  const uint8_t op = in.get<uint8_t>();
  const uint16_t flags = in.get<uint16_t>();
  const uint32_t seq = in.get<uint32_t>();
  const auto payload = in.rest();
  const auto frame = encode_frame(static_cast<Opcode>(op), flags, seq, payload);
  FUZZ_CHECK(frame.size() == kHeaderSize + payload.size(), "encoded frame size");
  FUZZ_CHECK(ref_crc32c(frame, 16, 20) == le32(frame, 16), "encode_frame's CRC != reference");
  FUZZ_CHECK(crc32c(std::span(frame).first(16)) == ref_crc32c(std::span(frame).first(16), 0, 0),
             "crc32c() != reference CRC");
  auto d = decode_frame(frame);
  const bool error_reply = (flags & 3u) == 3u;
  if (!ref_known_opcode(op) && !error_reply) {
    FUZZ_CHECK(!d && d.error() == FrameError::kUnknownOpcode,
               fmt::format("opcode 0x{:02x} (flags 0x{:04x}) not rejected as unknown", op, flags));
    return;
  }
  FUZZ_CHECK(d.has_value(),
             fmt::format("decode(encode(x)) failed: {}",
                         d ? std::string() : std::string(frame_error_name(d.error()))));
  FUZZ_CHECK(static_cast<uint8_t>(d->header.opcode) == op && d->header.flags == flags &&
                 d->header.seq == seq && d->header.length == payload.size(),
             "decode(encode(x)) header != x");
  FUZZ_CHECK(std::equal(d->payload.begin(), d->payload.end(), payload.begin(), payload.end()),
             "decode(encode(x)) payload != x");
}

// ---- payload codecs ----

template <typename Decode>
void roundtrip(const char* name, std::span<const uint8_t> p, bool strict, Decode decode) {
  auto v = decode(p);
  if (!v) {
    FUZZ_CHECK(!v.error().empty(), fmt::format("{}: rejected without a message", name));
    return;
  }
  const std::vector<uint8_t> e1 = v->encode();
  FUZZ_CHECK(e1.size() == p.size(),
             fmt::format("{}: {} bytes decoded, re-encoded to {}", name, p.size(), e1.size()));
  if (strict) {
    FUZZ_CHECK(std::equal(e1.begin(), e1.end(), p.begin(), p.end()),
               fmt::format("{}: encode(decode(p)) != p", name));
  }
  auto v2 = decode(e1);
  FUZZ_CHECK(v2.has_value(),
             fmt::format("{}: its own encoding is rejected: {}", name, v2 ? "" : v2.error()));
  const std::vector<uint8_t> e2 = v2->encode();
  FUZZ_CHECK(e1 == e2, fmt::format("{}: encode(decode(encode(decode(p)))) differs", name));
}

int dim(uint8_t b) { return b == 0 ? 64 : b; }  // 1..255; 0 means the board's 64

void loop_load_case(Input& in) {
  const int arrays = 1 + in.get<uint8_t>() % 8, rows = dim(in.get<uint8_t>()),
            cols = dim(in.get<uint8_t>()), n_gains = 1 + in.get<uint8_t>() % 8;
  const auto p = in.rest();
  roundtrip("LOOP_LOAD request", p, false, [](auto b) { return decode_loop_load_request(b); });
  auto q = decode_loop_load_request(p);
  if (!q) return;
  auto again = decode_loop_load_request(q->encode());
  FUZZ_CHECK(again && again->programs == q->programs, "LOOP_LOAD: decode(encode(x)) != x");
  const std::string err = check_loop_programs(q->programs, arrays, rows, cols, n_gains);
  if (!err.empty()) return;
  // Accepted by the board's check: the step arithmetic stays inside the rows and columns and
  // the state inside +-clamp, whatever the codes.
  const uint16_t k_max = loop_max_block_steps(q->programs);
  size_t n_in = 0, n_out = 0;
  for (const LoopProgram& prog : q->programs) {
    n_in += prog.taps.size();
    n_out += prog.outputs.size();
  }
  FUZZ_CHECK(k_max >= 1 && k_max <= 4096, fmt::format("max_block_steps {}", k_max));
  FUZZ_CHECK(
      16 + 2 * size_t{k_max} * n_in <= kMaxLoopPayload &&
          16 + 4 * size_t{k_max} * n_out <= kMaxLoopPayload,
      fmt::format("max_block_steps {} does not fit: {} taps, {} outputs", k_max, n_in, n_out));
  uint32_t seed = 0x9E3779B9u;
  for (const LoopProgram& prog : q->programs) {
    FUZZ_CHECK(prog.array < arrays && prog.gain_index < n_gains && prog.clamp >= 1,
               "check_loop_programs accepted a program outside the geometry");
    LoopState st(prog);
    std::vector<uint8_t> m(static_cast<size_t>(rows));
    std::vector<uint32_t> acc(static_cast<size_t>(cols));
    std::vector<int32_t> outputs(prog.outputs.size());
    std::vector<int16_t> inputs(prog.taps.size());
    for (int step = 0; step < 3; ++step) {
      for (auto& v : inputs) {
        seed = seed * 1664525u + 1013904223u;
        v = static_cast<int16_t>(seed >> 16);
      }
      loop_rows(prog, inputs, st, m);
      for (uint8_t v : m) {
        FUZZ_CHECK(v <= prog.clamp, fmt::format("row magnitude {} > clamp {}", v, prog.clamp));
      }
      for (auto& a : acc) {
        seed = seed * 1664525u + 1013904223u;
        a = seed % (255u * 1023u * 256u);  // up to every row at 255, 10-bit codes, 8 planes
      }
      loop_update(prog, acc, m, st, outputs);
      for (int32_t x : st.x) {
        FUZZ_CHECK(x >= -prog.clamp && x <= prog.clamp,
                   fmt::format("state {} outside +-{}", x, prog.clamp));
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string differ;
  for (int op = 0; op < 256; ++op) {
    const auto o = static_cast<uint8_t>(op);
    g_known[op] = spec_opcode(o);
    if (is_known_opcode(o) != spec_opcode(o)) {
      differ += fmt::format(" 0x{:02x}", op);
      g_known[op] = is_known_opcode(o);
    }
  }
  if (!differ.empty()) {
    std::fprintf(stderr,
                 "wire_codec_fuzz: is_known_opcode and the harness's table of docs/protocol.md "
                 "section 3 disagree on%s: update the table (the codec is followed for these)\n",
                 differ.c_str());
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Input in(data, size);
  const uint8_t selector = in.get<uint8_t>() % 32;
  switch (selector) {
    case 0:
      frame_case(in.rest());
      break;
    case 1:
      encode_case(in);
      break;
    case 2:
      roundtrip("ERROR", in.rest(), true, [](auto b) { return decode_error_reply(b); });
      break;
    case 3:
      roundtrip("INFO reply", in.rest(), false, [](auto b) { return decode_info_reply(b); });
      break;
    case 4:
      roundtrip("STATUS reply", in.rest(), false, [](auto b) { return decode_status_reply(b); });
      break;
    case 5: {
      const auto p = in.rest();
      roundtrip("READ request", p, true, [](auto b) { return decode_read_request(b); });
      if (auto q = decode_read_request(p)) {
        FUZZ_CHECK(q->mode == ReadMode::kWholeArray ? q->cells.empty() : !q->cells.empty(),
                   "READ: mode and cells disagree");
      }
      break;
    }
    case 6:
      roundtrip("READ reply", in.rest(), false, [](auto b) { return decode_read_reply(b); });
      break;
    case 7: {
      const size_t cells = static_cast<size_t>(dim(in.get<uint8_t>())) * dim(in.get<uint8_t>());
      const size_t mask_bytes = (cells + 7) / 8;
      const auto p = in.rest();
      auto dec = [&](auto b) { return decode_pulse_batch_request(b, mask_bytes); };
      roundtrip("PULSE_BATCH request", p, true, dec);
      if (auto q = dec(p)) {
        FUZZ_CHECK(q->mask.size() == mask_bytes, "PULSE_BATCH: mask size");
        FUZZ_CHECK(mask_popcount(q->mask) == q->codes.size(), "PULSE_BATCH: codes != mask bits");
        FUZZ_CHECK(q->polarity == Polarity::kMixed ? q->reset_mask.size() == mask_bytes
                                                   : q->reset_mask.empty(),
                   "PULSE_BATCH: reset mask size");
        for (size_t i = 0; i < q->reset_mask.size(); ++i) {
          FUZZ_CHECK((q->reset_mask[i] & ~q->mask[i]) == 0, "PULSE_BATCH: reset_mask not in mask");
        }
      }
      break;
    }
    case 8:
      roundtrip("PULSE_BATCH reply", in.rest(), false,
                [](auto b) { return decode_pulse_batch_reply(b); });
      break;
    case 9: {
      const size_t rows = static_cast<size_t>(dim(in.get<uint8_t>()));
      const auto p = in.rest();
      auto dec = [&](auto b) { return decode_vmm_request(b, rows); };
      roundtrip("VMM request", p, true, dec);
      if (auto q = dec(p)) {
        FUZZ_CHECK(q->inputs.size() == size_t{q->n_vectors} * rows, "VMM: inputs != n x rows");
      }
      break;
    }
    case 10: {
      const size_t cols = static_cast<size_t>(dim(in.get<uint8_t>()));
      const auto p = in.rest();
      // decode_vmm_reply sizes its result from n_vectors before it checks the length: a 4-byte
      // reply announcing 65535 vectors of 255 columns allocates 67 MB (bounded, but 0.2 s per
      // input). Only announcements near the real length are decoded here.
      const size_t n = p.size() >= 4 ? size_t{p[2]} | size_t{p[3]} << 8 : 0;
      if (4 + 4 * n * cols > p.size() + 4096) break;
      roundtrip("VMM reply", p, true, [&](auto b) { return decode_vmm_reply(b, cols); });
      break;
    }
    case 11:
      roundtrip("ABORT reply", in.rest(), true, [](auto b) { return decode_abort_reply(b); });
      break;
    case 12: {
      const auto p = in.rest();
      roundtrip("WAIT request", p, true, [](auto b) { return decode_wait_request(b); });
      if (auto q = decode_wait_request(p)) {
        FUZZ_CHECK(q->duration_us <= WaitRequest::kMaxUs, "WAIT: duration over the limit");
      }
      break;
    }
    case 13:
      roundtrip("WAIT reply", in.rest(), true, [](auto b) { return decode_wait_reply(b); });
      break;
    case 14:
      roundtrip("array request", in.rest(), true, [](auto b) { return decode_array_request(b); });
      break;
    case 15: {
      const size_t cells = static_cast<size_t>(dim(in.get<uint8_t>())) * dim(in.get<uint8_t>());
      roundtrip("SIM_FAULT_MAP reply", in.rest(), true,
                [&](auto b) { return decode_sim_fault_map_reply(b, cells); });
      break;
    }
    case 16: {
      const size_t cells = static_cast<size_t>(dim(in.get<uint8_t>())) * dim(in.get<uint8_t>());
      roundtrip("SIM_GROUND_TRUTH reply", in.rest(), false,
                [&](auto b) { return decode_sim_ground_truth_reply(b, cells); });
      break;
    }
    case 17:
      roundtrip("SIM_INJECT_FAULT request", in.rest(), true,
                [](auto b) { return decode_sim_inject_fault_request(b); });
      break;
    case 18:
      roundtrip("SIM_CLOCK request", in.rest(), false,
                [](auto b) { return decode_sim_clock_request(b); });
      break;
    case 19:
      roundtrip("SIM_CLOCK reply", in.rest(), true,
                [](auto b) { return decode_sim_clock_reply(b); });
      break;
    case 20:
      loop_load_case(in);
      break;
    case 21:
      roundtrip("LOOP_LOAD reply", in.rest(), false,
                [](auto b) { return decode_loop_load_reply(b); });
      break;
    case 22: {
      const auto p = in.rest();
      roundtrip("LOOP_RUN request", p, false, [](auto b) { return decode_loop_run_request(b); });
      if (auto q = decode_loop_run_request(p)) {
        FUZZ_CHECK((q->flags & kLoopResume) || q->state.empty(), "LOOP_RUN: state without RESUME");
      }
      break;
    }
    case 23:
      roundtrip("LOOP_RUN reply", in.rest(), false,
                [](auto b) { return decode_loop_run_reply(b); });
      break;
    case 24:
      roundtrip("SIM_LINK request", in.rest(), false,
                [](auto b) { return decode_sim_link_request(b); });
      break;
    case 25:
      roundtrip("SIM_LINK reply", in.rest(), false,  // a reserved u16 after unplug_ms
                [](auto b) { return decode_sim_link_reply(b); });
      break;
    default:  // 26..31: more weight on whole frames, the most exposed input
      frame_case(in.rest());
      break;
  }
  return 0;
}
