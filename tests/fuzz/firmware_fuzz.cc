// The board side of protocol v1: the twin's firmware (twin/src/firmware.cc),
// Firmware::handle with a sequence of request frames from up to three host sessions.
//
// Input: u8 variant (bits 0-1: the board geometry, make_profile), then records
//   u8 kind, u16 length, `length` bytes
// kind bits 0-1: session (0..2); bits 2-3: 0 raw bytes as the frame, 1 a frame built with
// encode_frame from (u8 opcode, u8 flags, u32 seq, payload), 2 the same sent twice, 3 the same
// with one bit flipped (position from the payload's first bytes). At most 48 records.
//
// A reference model of docs/protocol.md §2 and §5 runs alongside: which frames are rejected
// (BAD_FRAME / UNKNOWN_OPCODE, echoing opcode byte and seq), the per-session cache of the last 8
// executed requests (a byte-identical retry gets the cached reply byte for byte, another frame
// with a cached seq gets SEQ_REUSED), BUSY while a loop run is open, and the STATUS counters
// (ops_executed, replays_served, last_error, state). Every reply must decode, with the payload
// layout of its opcode, and its values inside the converters' ranges.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "fuzz_util.h"
#include "xbar/twin/firmware.h"
#include "xbar/twin/profile.h"
#include "xbar/wire/frame.h"
#include "xbar/wire/loop_program.h"
#include "xbar/wire/messages.h"

using namespace xbar;
using namespace xbar::wire;
using xbar::fuzz::Input;

namespace {

// Small geometries keep every request cheap (a 4096-step loop run on three 64x64 arrays takes
// seconds under ASan); variant 3 keeps the board's 64x64 and skips the expensive requests.
twin::ChipProfile make_profile(int variant) {
  auto p = twin::load_profile(variant == 2 ? "imssa" : "typical");
  if (!p) std::abort();
  switch (variant) {
    case 0:
      p->arrays = 2, p->rows = 8, p->cols = 8;
      break;
    case 1:  // a mask that does not fill its last byte, columns != rows
      p->arrays = 3, p->rows = 5, p->cols = 12;
      p->vmm_noise = "per_device";
      break;
    case 2:
      p->arrays = 1, p->rows = 16, p->cols = 4;
      p->read_noise = false;
      p->relaxation = false;
      break;
    default:
      break;
  }
  if (!twin::validate_profile(*p)) std::abort();
  return *p;
}

uint32_t le32(std::span<const uint8_t> b, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

struct Cached {
  uint32_t seq;
  std::vector<uint8_t> request, reply;
};

struct Model {
  std::map<int, std::deque<Cached>> cache;
  uint64_t ops = 0;
  uint32_t replays = 0;
  uint16_t last_error = 0;
  bool run_open = false;
  int run_owner = -1;
  size_t loop_in = 0, loop_out = 0;  // taps and outputs of the loaded programs
  bool loaded = false;
  uint64_t uptime = 0;
};

// True if running this (decoded) request on the 64x64 board would take too long for fuzzing.
bool expensive(const Frame& f, int variant, const twin::ChipProfile& p) {
  const bool big = p.rows * p.cols > 1024;
  switch (f.header.opcode) {
    case Opcode::kRead:
      if (f.payload.size() >= 3 && big) {
        const size_t cells = f.payload.size() > 8 ? (f.payload.size() - 8) / 2 : 4096;
        return cells * f.payload[2] > 8192;
      }
      return false;
    case Opcode::kVmm:
      return big && f.payload.size() >= 4 && (f.payload[2] | f.payload[3] << 8) > 8;
    case Opcode::kLoopRun: {
      if (f.payload.size() < 4) return false;
      const unsigned k = f.payload[2] | f.payload[3] << 8;
      return k > (big ? 16u : variant == 1 ? 128u : 4096u);  // variant 1: per-device noise
    }
    default:
      return false;
  }
}

void check_ok_payload(const Frame& req, std::span<const uint8_t> p, const twin::Firmware& fw,
                      const twin::ChipProfile& prof, Model& model) {
  const uint32_t adc_max = (1u << prof.adc_bits) - 1;
  const size_t cells = static_cast<size_t>(prof.rows) * prof.cols;
  switch (req.header.opcode) {
    case Opcode::kInfo: {
      auto r = decode_info_reply(p);
      FUZZ_CHECK(r.has_value(), "INFO reply does not decode");
      FUZZ_CHECK(r->encode() == fw.info().encode(), "INFO reply != Firmware::info()");
      FUZZ_CHECK(r->rows == prof.rows && r->cols == prof.cols && r->n_arrays == prof.arrays,
                 "INFO geometry");
      break;
    }
    case Opcode::kStatus: {
      auto s = decode_status_reply(p);
      FUZZ_CHECK(s.has_value(), "STATUS reply does not decode");
      FUZZ_CHECK(s->ops_executed == model.ops,
                 fmt::format("STATUS.ops_executed {} != {} executed", s->ops_executed, model.ops));
      FUZZ_CHECK(s->replays_served == model.replays,
                 fmt::format("STATUS.replays_served {} != {}", s->replays_served, model.replays));
      FUZZ_CHECK(s->last_error == model.last_error,
                 fmt::format("STATUS.last_error {} != {}", s->last_error, model.last_error));
      FUZZ_CHECK((s->state == BoardState::kLoopRunning) == model.run_open, "STATUS.state");
      FUZZ_CHECK(s->uptime_ns >= model.uptime,
                 fmt::format("board clock went back: {} after {}", s->uptime_ns, model.uptime));
      model.uptime = s->uptime_ns;
      break;
    }
    case Opcode::kRead: {
      auto q = decode_read_request(req.payload);
      auto r = decode_read_reply(p);
      FUZZ_CHECK(q && r, "READ accepted but request or reply does not decode");
      const size_t want = q->mode == ReadMode::kWholeArray ? cells : q->cells.size();
      FUZZ_CHECK(r->code_sums.size() == want, "READ reply: wrong number of codes");
      FUZZ_CHECK(r->array == q->array && r->n_avg == q->n_avg && r->mode == q->mode,
                 "READ reply does not echo the request");
      for (uint32_t v : r->code_sums) {
        FUZZ_CHECK(v <= q->n_avg * adc_max,
                   fmt::format("READ sum {} > {} x {}", v, q->n_avg, adc_max));
      }
      break;
    }
    case Opcode::kPulseBatch: {
      auto q = decode_pulse_batch_request(req.payload, (cells + 7) / 8);
      auto r = decode_pulse_batch_reply(p);
      FUZZ_CHECK(q && r, "PULSE_BATCH accepted but request or reply does not decode");
      FUZZ_CHECK(r->n_pulsed == q->codes.size(), "PULSE_BATCH: n_pulsed != devices");
      break;
    }
    case Opcode::kVmm: {
      auto q = decode_vmm_request(req.payload, static_cast<size_t>(prof.rows));
      auto r = decode_vmm_reply(p, static_cast<size_t>(prof.cols));
      FUZZ_CHECK(q && r, "VMM accepted but request or reply does not decode");
      FUZZ_CHECK(r->n_vectors == q->n_vectors && r->array == q->array, "VMM reply echo");
      for (uint32_t v : r->acc) {
        FUZZ_CHECK(v <= adc_max * 255u, fmt::format("VMM accumulator {} > {} x 255", v, adc_max));
      }
      break;
    }
    case Opcode::kAbort: {
      auto r = decode_abort_reply(p);
      FUZZ_CHECK(r.has_value(), "ABORT reply does not decode");
      FUZZ_CHECK(r->was_running == (model.run_open ? 1 : 0), "ABORT.was_running");
      model.run_open = false;
      break;
    }
    case Opcode::kWait: {
      auto r = decode_wait_reply(p);
      FUZZ_CHECK(r.has_value(), "WAIT reply does not decode");
      FUZZ_CHECK(r->uptime_ns >= model.uptime, "WAIT: board clock went back");
      model.uptime = r->uptime_ns;
      break;
    }
    case Opcode::kLoopLoad: {
      auto q = decode_loop_load_request(req.payload);
      auto r = decode_loop_load_reply(p);
      FUZZ_CHECK(q && r, "LOOP_LOAD accepted but request or reply does not decode");
      FUZZ_CHECK(r->max_block_steps == loop_max_block_steps(q->programs),
                 "LOOP_LOAD.max_block_steps");
      model.loop_in = model.loop_out = 0;
      for (const LoopProgram& prog : q->programs) {
        model.loop_in += prog.taps.size();
        model.loop_out += prog.outputs.size();
      }
      model.loaded = true;
      break;
    }
    case Opcode::kLoopRun: {
      auto q = decode_loop_run_request(req.payload);
      auto r = decode_loop_run_reply(p);
      FUZZ_CHECK(q && r, "LOOP_RUN accepted but request or reply does not decode");
      FUZZ_CHECK(model.loaded, "LOOP_RUN accepted with no program loaded");
      FUZZ_CHECK(q->inputs.size() == size_t{q->n_steps} * model.loop_in, "LOOP_RUN inputs");
      FUZZ_CHECK(r->outputs.size() == size_t{q->n_steps} * model.loop_out,
                 fmt::format("LOOP_RUN: {} outputs for {} steps x {}", r->outputs.size(),
                             q->n_steps, model.loop_out));
      FUZZ_CHECK(r->block_index == q->block_index && r->n_steps == q->n_steps, "LOOP_RUN echo");
      for (int32_t v : r->outputs) {
        FUZZ_CHECK(v >= -int64_t{adc_max} * 255 && v <= int64_t{adc_max} * 255,
                   "LOOP_RUN output outside the accumulator range");
      }
      model.run_open = r->run_open != 0;
      break;
    }
    case Opcode::kSimFaultMap: {
      auto r = decode_sim_fault_map_reply(p, cells);
      FUZZ_CHECK(r.has_value(), "SIM_FAULT_MAP reply does not decode");
      for (FaultKind k : r->faults) FUZZ_CHECK(static_cast<int>(k) <= 3, "fault kind");
      break;
    }
    case Opcode::kSimGroundTruth: {
      auto r = decode_sim_ground_truth_reply(p, cells);
      FUZZ_CHECK(r.has_value(), "SIM_GROUND_TRUTH reply does not decode");
      for (float g : r->g_uS) {
        FUZZ_CHECK(std::isfinite(g) && g >= 0, fmt::format("true conductance {} uS", g));
      }
      break;
    }
    case Opcode::kSimInjectFault:
      FUZZ_CHECK(p.empty(), "SIM_INJECT_FAULT reply is not empty");
      break;
    case Opcode::kSimClock: {
      auto r = decode_sim_clock_reply(p);
      FUZZ_CHECK(r.has_value(), "SIM_CLOCK reply does not decode");
      FUZZ_CHECK(r->now_ns >= model.uptime,
                 fmt::format("board clock went back: {} after {}", r->now_ns, model.uptime));
      model.uptime = r->now_ns;
      break;
    }
    case Opcode::kSimLink:  // the link's faults act in Firmware::exchange, not in handle()
      FUZZ_CHECK(decode_sim_link_reply(p).has_value(), "SIM_LINK reply does not decode");
      break;
    default:  // an opcode this harness does not model (a protocol extension): decoded only
      break;
  }
}

// Sends one frame and checks the reply against the model.
void exchange(twin::Firmware& fw, const twin::ChipProfile& prof, Model& model,
              twin::Firmware::SessionId sid, int session, const std::vector<uint8_t>& req) {
  const std::vector<uint8_t> reply = fw.handle(sid, req);
  auto rf = decode_frame(reply);
  FUZZ_CHECK(rf.has_value(), "the reply frame does not decode");
  const Header& rh = rf->header;
  FUZZ_CHECK(rh.flags & kFlagReply, "reply without the REPLY flag");
  const uint8_t echo_op = req.size() >= 12 ? req[5] : 0x01;
  const uint32_t echo_seq = req.size() >= 12 ? le32(req, 8) : 0;
  FUZZ_CHECK(static_cast<uint8_t>(rh.opcode) == echo_op && rh.seq == echo_seq,
             fmt::format("reply echoes opcode 0x{:02x} seq {}, request had 0x{:02x} seq {}",
                         static_cast<uint8_t>(rh.opcode), rh.seq, echo_op, echo_seq));
  std::optional<ErrorReply> err;
  if (rh.flags & kFlagError) {
    auto e = decode_error_reply(rf->payload);
    FUZZ_CHECK(e.has_value(), "malformed error reply");
    const auto code = static_cast<uint16_t>(e->code);
    FUZZ_CHECK(code >= 1 && code <= 8, fmt::format("error code {} (the twin never sends 9)", code));
    FUZZ_CHECK(!e->message.empty(), "error reply without a message");
    err = *e;
  }
  auto code_is = [&](BoardErrorCode c) { return err && err->code == c; };

  auto f = decode_frame(req);
  if (!f) {
    const BoardErrorCode want = f.error() == FrameError::kUnknownOpcode
                                    ? BoardErrorCode::kUnknownOpcode
                                    : BoardErrorCode::kBadFrame;
    FUZZ_CHECK(code_is(want), fmt::format("a frame failing decode ({}) was answered otherwise",
                                          frame_error_name(f.error())));
    model.last_error = static_cast<uint16_t>(want);
    return;
  }
  if (f->header.flags & kFlagReply) {
    FUZZ_CHECK(code_is(BoardErrorCode::kBadFrame),
               "a request with the REPLY bit was not BAD_FRAME");
    model.last_error = static_cast<uint16_t>(BoardErrorCode::kBadFrame);
    return;
  }
  std::deque<Cached>& cache = model.cache[session];
  for (const Cached& c : cache) {
    if (c.seq != f->header.seq) continue;
    if (c.request == req) {
      FUZZ_CHECK(reply == c.reply, "a retry was not answered with the cached reply");
      ++model.replays;
    } else {
      FUZZ_CHECK(code_is(BoardErrorCode::kSeqReused),
                 fmt::format("seq {} reused with other bytes: not SEQ_REUSED", c.seq));
      model.last_error = static_cast<uint16_t>(BoardErrorCode::kSeqReused);
    }
    return;
  }
  // Executed.
  ++model.ops;
  cache.push_back({f->header.seq, req, reply});
  if (cache.size() > twin::Firmware::kReplyCacheDepth) cache.pop_front();
  const Opcode op = f->header.opcode;
  const bool busy = model.run_open && op != Opcode::kStatus && op != Opcode::kAbort &&
                    !(op == Opcode::kLoopRun && session == model.run_owner);
  if (busy) {
    FUZZ_CHECK(code_is(BoardErrorCode::kBusy), "a request during an open loop run was not BUSY");
  } else {
    FUZZ_CHECK(!code_is(BoardErrorCode::kBusy),
               "BUSY while no loop run is open (for this session)");
  }
  if (err) {
    FUZZ_CHECK(!code_is(BoardErrorCode::kBadFrame) && !code_is(BoardErrorCode::kSeqReused) &&
                   !code_is(BoardErrorCode::kUnknownOpcode),
               "a frame-level error for an executed request");
    model.last_error = static_cast<uint16_t>(err->code);
    return;
  }
  if (op == Opcode::kLoopRun) {
    auto q = decode_loop_run_request(f->payload);
    if (q && (q->flags & kLoopFirst)) model.run_owner = session;
  }
  check_ok_payload(*f, rf->payload, fw, prof, model);
}

// Building a Firmware takes 10-30 ms under ASan (the chip's Gauss-Hermite tables), too slow to do
// per input. Each variant's board is built once and reset before every input: the chip (devices,
// clock, pulse count) from a pristine copy, fresh sessions, and over a control session ABORT
// (closes a run), a fixed LOOP_LOAD (known programs, clears "aborted") and STATUS (the counters
// the model starts from). What carries over is only the operation counter, which keys the
// noise: values may differ between runs of one input, the control flow does not.
struct Board {
  twin::ChipProfile profile;
  std::unique_ptr<twin::Firmware> fw;
  twin::Chip pristine;
  std::vector<twin::Firmware::SessionId> sessions;

  explicit Board(int variant)
      : profile(make_profile(variant)),
        fw(std::make_unique<twin::Firmware>(
            profile, twin::FirmwareOptions{.chip_seed = uint64_t(variant) + 7, .noise_seed = 1})),
        pristine(fw->chip_for_testing()) {}

  // Returns the model of the board after the reset.
  Model reset() {
    fw->chip_for_testing() = pristine;
    for (auto id : sessions) fw->close_session(id);
    sessions.clear();
    for (int i = 0; i < 4; ++i) sessions.push_back(fw->open_session());
    const auto control = sessions[3];
    (void)fw->handle(control, encode_frame(Opcode::kAbort, 0, 1, {}));
    LoopProgram prog;
    prog.taps = {LoopTap{0, 1, 1, 0}};
    prog.routes = {LoopRoute{0, 1, 2, 3, 1, 1}};
    prog.outputs = {LoopOutput{2, 3}};
    auto load = decode_frame(fw->handle(
        control, encode_frame(Opcode::kLoopLoad, 0, 2, LoopLoadRequest{{prog}}.encode())));
    if (!load || (load->header.flags & kFlagError)) std::abort();
    auto st = decode_frame(fw->handle(control, encode_frame(Opcode::kStatus, 0, 3, {})));
    if (!st || (st->header.flags & kFlagError)) std::abort();
    auto s = decode_status_reply(st->payload);
    if (!s) std::abort();
    Model m;
    m.ops = s->ops_executed;
    m.replays = s->replays_served;
    m.last_error = s->last_error;
    m.uptime = s->uptime_ns;
    m.loaded = true;
    m.loop_in = m.loop_out = 1;
    return m;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<Board> boards[4];
  Input in(data, size);
  const int variant = in.get<uint8_t>() & 3;
  if (!boards[variant]) boards[variant] = std::make_unique<Board>(variant);
  Board& board = *boards[variant];
  Model model = board.reset();
  twin::Firmware& fw = *board.fw;
  const twin::ChipProfile& prof = board.profile;

  for (int records = 0; records < 48 && !in.empty(); ++records) {
    const uint8_t kind = in.get<uint8_t>();
    const uint16_t len = in.get<uint16_t>();
    Input body(in.bytes(len));
    const int session = (kind & 3) % 3;
    const int mode = (kind >> 2) & 3;
    std::vector<uint8_t> req;
    if (mode == 0) {
      auto b = body.rest();
      req.assign(b.begin(), b.end());
    } else {
      const auto op = static_cast<Opcode>(body.get<uint8_t>());
      const uint16_t flags = body.get<uint8_t>();
      const uint32_t seq = body.get<uint32_t>();
      auto payload = body.rest();
      req = encode_frame(op, flags, seq, payload);
      if (mode == 3) {
        const size_t bit =
            (payload.size() >= 2 ? (payload[0] | payload[1] << 8) : seq) % (req.size() * 8);
        req[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      }
    }
    if (auto f = decode_frame(req); f && expensive(*f, variant, prof)) continue;
    const auto sid = board.sessions[static_cast<size_t>(session)];
    exchange(fw, prof, model, sid, session, req);
    if (mode == 2) exchange(fw, prof, model, sid, session, req);
  }
  return 0;
}
