#include "xbar/twin/firmware.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "xbar/wire/bytes.h"

namespace xbar::twin {

namespace {

using wire::BoardErrorCode;
using wire::Opcode;

constexpr const char* kFirmwareVersion = "twin-0.3.0";
constexpr uint16_t kMaxVmmVectors = 128;
constexpr uint8_t kMaxReadAvg = 64;

uint16_t to_mV(double v) { return static_cast<uint16_t>(std::lround(v * 1000.0)); }

}  // namespace

std::string Firmware::serial_for_seed(uint64_t chip_seed) {
  return fmt::format("XS{:014X}", chip_seed & 0x00FFFFFFFFFFFFFFull);
}

Firmware::Firmware(ChipProfile profile, FirmwareOptions options)
    : profile_(std::move(profile)),
      chip_(profile_, options.chip_seed, options.noise_seed),
      link_(options.link) {
  const ChipProfile& p = profile_;
  info_.protocol_version = wire::kVersion;
  info_.n_arrays = static_cast<uint8_t>(p.arrays);
  info_.rows = static_cast<uint8_t>(p.rows);
  info_.cols = static_cast<uint8_t>(p.cols);
  info_.serial = serial_for_seed(options.chip_seed);
  info_.firmware_version = kFirmwareVersion;
  info_.adc_bits = static_cast<uint8_t>(p.adc_bits);
  info_.dac_bits = static_cast<uint8_t>(p.dac_bits);
  info_.capabilities = wire::kCapSim | wire::kCapLoop | wire::kCapLoopResume;
  info_.adc_v_lo_mV = to_mV(p.adc_v_lo_V);
  info_.adc_v_hi_mV = to_mV(p.adc_v_hi_V);
  info_.tia_v_ref_mV = to_mV(p.tia_v_ref_V);
  info_.v_read_mV = to_mV(p.v_read_V);
  info_.read_gate_mV = to_mV(p.read_gate_V);
  info_.dac_v_min_mV = static_cast<int16_t>(std::lround(p.dac_v_min_V * 1000));
  info_.dac_v_max_mV = static_cast<int16_t>(std::lround(p.dac_v_max_V * 1000));
  for (double g : p.tia_gains_ohm) info_.tia_gains_ohm.push_back(static_cast<uint32_t>(g));
  info_.width_step_ns = static_cast<uint16_t>(p.width_step_ns);
  info_.width_max_code = static_cast<uint16_t>(p.width_max_code);
  info_.set_v_min_mV = to_mV(p.set_v_V.lo);
  info_.set_v_max_mV = to_mV(p.set_v_V.hi);
  info_.set_gate_min_mV = to_mV(p.set_gate_V.lo);
  info_.set_gate_max_mV = to_mV(p.set_gate_V.hi);
  info_.reset_v_min_mV = to_mV(p.reset_v_V.lo);
  info_.reset_v_max_mV = to_mV(p.reset_v_V.hi);
  info_.reset_gate_min_mV = to_mV(p.reset_gate_V.lo);
  info_.reset_gate_max_mV = to_mV(p.reset_gate_V.hi);
  info_.max_payload = static_cast<uint32_t>(wire::kMaxPayload);
  info_.max_vmm_vectors = kMaxVmmVectors;
  info_.max_read_avg = kMaxReadAvg;
}

Firmware::SessionId Firmware::open_session() {
  std::lock_guard lock(mu_);
  const SessionId id = next_session_++;
  sessions_[id];
  return id;
}

void Firmware::close_session(SessionId id) {
  std::lock_guard lock(mu_);
  sessions_.erase(id);
}

std::vector<uint8_t> Firmware::error_reply(const wire::Header& req, BoardErrorCode code,
                                           std::string msg) {
  last_error_ = static_cast<uint16_t>(code);
  const wire::ErrorReply e{code, std::move(msg)};
  return wire::encode_frame(req.opcode, wire::kFlagReply | wire::kFlagError, req.seq, e.encode());
}

std::vector<uint8_t> Firmware::ok_reply(const wire::Header& req, std::span<const uint8_t> payload) {
  return wire::encode_frame(req.opcode, wire::kFlagReply, req.seq, payload);
}

std::vector<uint8_t> Firmware::handle(SessionId id, std::span<const uint8_t> request) {
  std::lock_guard lock(mu_);
  return handle_locked(id, request);
}

void Firmware::restart() {
  std::lock_guard lock(mu_);
  restart_locked();
}

void Firmware::restart_locked() {
  for (auto& [id, s] : sessions_) {
    s.cache.clear();
    s.held.clear();
    s.restarted = true;
  }
  loop_.reset();
  last_error_ = 0;
  ++link_.counts().restarts;
}

void Firmware::unplug_locked() {
  restart_locked();  // bus-powered: the board loses power with the cable
  link_.unplug();
  for (auto& [sid, s] : sessions_) s.cut = true;
}

bool Firmware::link_cut(SessionId id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  return it != sessions_.end() && it->second.cut;
}

bool Firmware::present() {
  std::lock_guard lock(mu_);
  return link_.present();
}

void Firmware::plug_in() {
  std::lock_guard lock(mu_);
  link_.plug_in();
}

std::vector<std::vector<uint8_t>> Firmware::exchange(SessionId id,
                                                     std::span<const uint8_t> request) {
  std::lock_guard lock(mu_);
  std::vector<std::vector<uint8_t>> out;
  if (!link_.faults().any()) {
    out.push_back(handle_locked(id, request));
    return out;
  }
  auto sit = sessions_.find(id);
  if (sit == sessions_.end()) sit = sessions_.emplace(id, Session{}).first;
  if (sit->second.cut || !link_.present()) {
    sit->second.cut = true;  // nothing reaches a board that is not there
    return out;
  }
  std::vector<std::vector<uint8_t>> held = std::move(sit->second.held);
  sit->second.held.clear();
  auto finish = [&] {
    for (auto& h : held) out.push_back(std::move(h));
    return std::move(out);
  };
  if (link_.draw(link_.faults().drop_request)) {
    ++link_.counts().requests_dropped;
    return finish();
  }
  std::vector<uint8_t> req(request.begin(), request.end());
  if (link_.draw(link_.faults().corrupt_request)) {
    ++link_.counts().requests_corrupted;
    link_.corrupt(req);
  }
  const bool restart_before = link_.draw(link_.faults().restart / 2);
  const bool restart_after = link_.draw(link_.faults().restart / 2);
  if (link_.draw(link_.faults().unplug / 2)) {  // pulled before the request arrived
    unplug_locked();
    return out;  // replies held back are lost with the link
  }
  const bool unplug_after = link_.draw(link_.faults().unplug / 2);
  if (restart_before) restart_locked();
  std::vector<uint8_t> reply = handle_locked(id, req);
  if (unplug_after) {  // executed, then pulled: the reply never leaves
    unplug_locked();
    return out;
  }
  if (restart_after) {
    restart_locked();  // the reply was lost with the power
    return finish();
  }
  sit = sessions_.find(id);
  if (link_.draw(link_.faults().drop_reply)) {
    ++link_.counts().replies_dropped;
    return finish();
  }
  if (link_.draw(link_.faults().corrupt_reply)) {
    ++link_.counts().replies_corrupted;
    link_.corrupt(reply);
  }
  const bool dup = link_.draw(link_.faults().duplicate_reply);
  if (dup) ++link_.counts().replies_duplicated;
  if (link_.draw(link_.faults().delay_reply)) {
    ++link_.counts().replies_delayed;
    if (dup) out.push_back(reply);
    sit->second.held.push_back(std::move(reply));
    return finish();
  }
  out.push_back(reply);
  if (dup) out.push_back(std::move(reply));
  return finish();
}

std::vector<uint8_t> Firmware::handle_locked(SessionId id, std::span<const uint8_t> request) {
  auto frame = wire::decode_frame(request);
  if (!frame) {
    // Not executed, not cached. Echo what can be read of the header so the host can match it.
    wire::Header h;
    if (request.size() >= wire::kOffsetSeq + sizeof h.seq) {
      h.opcode = static_cast<Opcode>(request[wire::kOffsetOpcode]);
      std::memcpy(&h.seq, request.data() + wire::kOffsetSeq, sizeof h.seq);
    }
    const BoardErrorCode code = frame.error() == wire::FrameError::kUnknownOpcode
                                    ? BoardErrorCode::kUnknownOpcode
                                    : BoardErrorCode::kBadFrame;
    std::string msg = fmt::format("{}", wire::frame_error_name(frame.error()));
    if (code == BoardErrorCode::kUnknownOpcode) {
      msg =
          fmt::format("opcode 0x{:02x}: not defined by protocol v1", request[wire::kOffsetOpcode]);
    }
    return error_reply(h, code, std::move(msg));
  }
  if (frame->header.flags & wire::kFlagReply) {
    return error_reply(frame->header, BoardErrorCode::kBadFrame,
                       "flags: REPLY bit set on a host->board frame");
  }

  auto sit = sessions_.find(id);
  if (sit == sessions_.end()) sit = sessions_.emplace(id, Session{}).first;
  const Opcode op = frame->header.opcode;
  if (sit->second.restarted && (frame->header.flags & wire::kFlagAckRestart)) {
    sit->second.restarted = false;  // the host knows; this request is a new one
  }
  if (sit->second.restarted && op != Opcode::kInfo && op != Opcode::kStatus &&
      !wire::is_sim_opcode(op)) {
    // A request that may depend on state lost in the restart (a retry of an executed pulse
    // batch whose reply was lost, a loop run) is refused, until the host acknowledges the
    // restart (a request with ACK_RESTART): a refusal lost on the link is sent again.
    return error_reply(frame->header, BoardErrorCode::kRestarted,
                       "the board restarted: reply cache, loop programs and any open run are "
                       "lost, conductances kept; this request was not executed");
  }
  ReplyCache& cache = sit->second.cache;
  const std::vector<uint8_t>* cached = nullptr;
  switch (cache.find(frame->header.seq, request, &cached)) {
    case ReplyCache::Lookup::kReplay:
      ++replays_served_;
      return *cached;  // the retry rule: answered from the cache, never executed twice
    case ReplyCache::Lookup::kSeqReused:
      return error_reply(frame->header, BoardErrorCode::kSeqReused,
                         fmt::format("seq {}: reused for a different request within the last {}",
                                     frame->header.seq, ReplyCache::kDepth));
    case ReplyCache::Lookup::kMiss:
      break;
  }

  ++ops_executed_;
  if (op == Opcode::kPulseBatch) link_.note_pulse_batch(request);
  std::vector<uint8_t> reply = execute(id, *frame);
  cache.store(frame->header.seq, request, reply);
  return reply;
}

std::vector<uint8_t> Firmware::execute(SessionId session, const wire::Frame& f) {
  const Opcode op = f.header.opcode;
  if (loop_.run_open() && !(op == Opcode::kStatus || op == Opcode::kAbort ||
                            (op == Opcode::kLoopRun && session == loop_.owner()))) {
    return error_reply(f.header, BoardErrorCode::kBusy,
                       "the board is running a loop; only STATUS/ABORT are served");
  }
  switch (op) {
    case Opcode::kInfo:
      return do_info(f);
    case Opcode::kStatus:
      return do_status(f);
    case Opcode::kRead:
      return do_read(f);
    case Opcode::kPulseBatch:
      return do_pulse_batch(f);
    case Opcode::kVmm:
      return do_vmm(f);
    case Opcode::kAbort: {
      if (!f.payload.empty()) {
        return error_reply(
            f.header, BoardErrorCode::kBadLength,
            fmt::format("ABORT: payload must be empty, is {} bytes", f.payload.size()));
      }
      wire::AbortReply r;
      r.was_running = loop_.abort() ? 1 : 0;
      return ok_reply(f.header, r.encode());
    }
    case Opcode::kWait:
      return do_wait(f);
    case Opcode::kLoopLoad:
      return do_loop_load(f);
    case Opcode::kLoopRun:
      return do_loop_run(session, f);
    case Opcode::kSimFaultMap:
      return do_sim_fault_map(f);
    case Opcode::kSimGroundTruth:
      return do_sim_ground_truth(f);
    case Opcode::kSimInjectFault:
      return do_sim_inject_fault(f);
    case Opcode::kSimClock:
      return do_sim_clock(f);
    case Opcode::kSimLink:
      return do_sim_link(f);
  }
  return error_reply(f.header, BoardErrorCode::kUnknownOpcode, "opcode not handled");
}

std::vector<uint8_t> Firmware::do_info(const wire::Frame& f) {
  if (!f.payload.empty()) {
    return error_reply(f.header, BoardErrorCode::kBadLength,
                       fmt::format("INFO: payload must be empty, is {} bytes", f.payload.size()));
  }
  return ok_reply(f.header, info_.encode());
}

std::vector<uint8_t> Firmware::do_status(const wire::Frame& f) {
  if (!f.payload.empty()) {
    return error_reply(f.header, BoardErrorCode::kBadLength,
                       fmt::format("STATUS: payload must be empty, is {} bytes", f.payload.size()));
  }
  wire::StatusReply s;
  s.state = loop_.run_open() ? wire::BoardState::kLoopRunning : wire::BoardState::kIdle;
  s.last_error = last_error_;
  s.uptime_ns = chip_.now_ns();
  s.ops_executed = ops_executed_;
  s.pulses_applied = chip_.pulses_applied();
  s.replays_served = replays_served_;
  return ok_reply(f.header, s.encode());
}

std::vector<uint8_t> Firmware::do_read(const wire::Frame& f) {
  auto q = wire::decode_read_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  const ChipProfile& p = profile_;
  if (q->array >= p.arrays) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("READ.array = {}: allowed 0..{}", q->array, p.arrays - 1));
  }
  if (q->gain_index >= p.tia_gains_ohm.size()) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("READ.gain_index = {}: allowed 0..{}", q->gain_index,
                                   p.tia_gains_ohm.size() - 1));
  }
  if (q->n_avg < 1 || q->n_avg > kMaxReadAvg) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("READ.n_avg = {}: allowed 1..{}", q->n_avg, kMaxReadAvg));
  }
  if (q->settle_ms > wire::ReadRequest::kMaxSettleMs) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("READ.settle_ms = {}: allowed 0..{}", q->settle_ms,
                                   wire::ReadRequest::kMaxSettleMs));
  }
  const size_t cells = static_cast<size_t>(p.rows) * p.cols;
  if (q->cells.size() > cells) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("READ.n_cells = {}: allowed 1..{}", q->cells.size(), cells));
  }
  for (size_t i = 0; i < q->cells.size(); ++i) {
    const wire::Cell c = q->cells[i];
    if (c.row >= p.rows || c.col >= p.cols) {
      return error_reply(f.header, BoardErrorCode::kOutOfRange,
                         fmt::format("READ.cells[{}] = (row {}, col {}): allowed rows 0..{}, "
                                     "cols 0..{}",
                                     i, c.row, c.col, p.rows - 1, p.cols - 1));
    }
  }

  chip_.advance_ns(uint64_t{q->settle_ms} * 1'000'000);  // idle first, then read
  wire::ReadReply r;
  r.array = q->array;
  r.gain_index = q->gain_index;
  r.n_avg = q->n_avg;
  r.mode = q->mode;
  const uint64_t op = ops_executed_;
  // `first_read` numbers the reads of this operation so that a cell listed twice in one
  // READ gets independent noise (the device index alone would repeat the draws).
  auto read_sum = [&](int row, int col, uint32_t first_read) {
    uint32_t sum = 0;
    for (uint32_t k = 0; k < q->n_avg; ++k) {
      sum += chip_.read_code(q->array, row, col, q->gain_index, op, first_read + k);
    }
    return sum;
  };
  if (q->mode == wire::ReadMode::kWholeArray) {
    r.code_sums.reserve(cells);
    for (int row = 0; row < p.rows; ++row) {
      for (int col = 0; col < p.cols; ++col) r.code_sums.push_back(read_sum(row, col, 0));
    }
    chip_.advance_ns(static_cast<uint64_t>(q->n_avg * p.rows * p.read_row_us * 1000.0));
  } else {
    r.code_sums.reserve(q->cells.size());
    for (size_t i = 0; i < q->cells.size(); ++i) {
      const wire::Cell c = q->cells[i];
      r.code_sums.push_back(read_sum(c.row, c.col, static_cast<uint32_t>(i) * q->n_avg));
    }
    chip_.advance_ns(static_cast<uint64_t>(q->n_avg * q->cells.size() * p.read_row_us * 1000.0));
  }
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_pulse_batch(const wire::Frame& f) {
  const ChipProfile& p = profile_;
  const size_t cells = static_cast<size_t>(p.rows) * p.cols;
  auto q = wire::decode_pulse_batch_request(f.payload, (cells + 7) / 8);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  if (q->array >= p.arrays) {
    return error_reply(
        f.header, BoardErrorCode::kOutOfRange,
        fmt::format("PULSE_BATCH.array = {}: allowed 0..{}", q->array, p.arrays - 1));
  }
  const double lsb_V = (p.dac_v_max_V - p.dac_v_min_V) / ((1u << p.dac_bits) - 1);
  auto volts = [&](uint16_t code) { return p.dac_v_min_V + code * lsb_V; };
  auto in_range = [&](double v, Range r) { return v >= r.lo - lsb_V / 2 && v <= r.hi + lsb_V / 2; };

  // The mask's last byte may have bits past R*C (5 x 12 devices: 60 of 64 bits); they select
  // no device. Counted in n_devices but never pulsed, they made n_pulsed < n_devices.
  for (size_t i = cells; i < q->mask.size() * 8; ++i) {
    if (wire::mask_test(q->mask, i)) {
      return error_reply(f.header, BoardErrorCode::kOutOfRange,
                         fmt::format("PULSE_BATCH.mask bit {}: no such device ({} rows x {} cols)",
                                     i, p.rows, p.cols));
    }
  }

  // Validate every device before touching any: a rejected batch changes nothing.
  struct Planned {
    int row, col;
    wire::Polarity polarity;
    double v_V, gate_V, width_ns;
  };
  std::vector<Planned> plan;
  plan.reserve(q->codes.size());
  size_t k = 0;
  for (size_t i = 0; i < cells; ++i) {
    if (!wire::mask_test(q->mask, i)) continue;
    const wire::PulseCodes c = q->codes[k];
    const int row = static_cast<int>(i) / p.cols, col = static_cast<int>(i) % p.cols;
    const bool set = q->polarity == wire::Polarity::kSet ||
                     (q->polarity == wire::Polarity::kMixed && !wire::mask_test(q->reset_mask, i));
    const Range v_range = set ? p.set_v_V : p.reset_v_V;
    const Range g_range = set ? p.set_gate_V : p.reset_gate_V;
    const char* pol = set ? "SET" : "RESET";
    const double v = volts(c.v_code), g = volts(c.gate_code);
    if (c.v_code >= (1u << p.dac_bits) || !in_range(v, v_range)) {
      return error_reply(f.header, BoardErrorCode::kOutOfRange,
                         fmt::format("PULSE_BATCH.v_code[{}] (row {}, col {}) = {} -> {:.3f} V: "
                                     "{} voltage allowed {:.3f}..{:.3f} V",
                                     k, row, col, c.v_code, v, pol, v_range.lo, v_range.hi));
    }
    if (c.gate_code >= (1u << p.dac_bits) || !in_range(g, g_range)) {
      return error_reply(f.header, BoardErrorCode::kOutOfRange,
                         fmt::format("PULSE_BATCH.gate_code[{}] (row {}, col {}) = {} -> {:.3f} V: "
                                     "{} gate allowed {:.3f}..{:.3f} V",
                                     k, row, col, c.gate_code, g, pol, g_range.lo, g_range.hi));
    }
    if (c.width_code < 1 || c.width_code > p.width_max_code) {
      return error_reply(f.header, BoardErrorCode::kOutOfRange,
                         fmt::format("PULSE_BATCH.width_code[{}] (row {}, col {}) = {}: allowed "
                                     "1..{} (x {} ns)",
                                     k, row, col, c.width_code, p.width_max_code, p.width_step_ns));
    }
    plan.push_back({row, col, set ? wire::Polarity::kSet : wire::Polarity::kReset, v, g,
                    static_cast<double>(c.width_code) * p.width_step_ns});
    ++k;
  }

  const uint64_t op = ops_executed_;
  double duration_us = 0;
  for (const Planned& d : plan) {
    chip_.pulse(q->array, d.row, d.col, d.polarity, d.v_V, d.gate_V, d.width_ns, op);
    duration_us += d.width_ns * 1e-3 + p.pulse_overhead_us;
  }
  chip_.advance_ns(static_cast<uint64_t>(duration_us * 1000.0));
  wire::PulseBatchReply r;
  r.n_pulsed = static_cast<uint16_t>(plan.size());
  r.duration_us = static_cast<uint32_t>(std::ceil(duration_us));
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_vmm(const wire::Frame& f) {
  const ChipProfile& p = profile_;
  auto q = wire::decode_vmm_request(f.payload, static_cast<size_t>(p.rows));
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  if (q->array >= p.arrays) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("VMM.array = {}: allowed 0..{}", q->array, p.arrays - 1));
  }
  if (q->gain_index >= p.tia_gains_ohm.size()) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("VMM.gain_index = {}: allowed 0..{}", q->gain_index,
                                   p.tia_gains_ohm.size() - 1));
  }
  if (q->n_vectors < 1 || q->n_vectors > kMaxVmmVectors) {
    return error_reply(
        f.header, BoardErrorCode::kOutOfRange,
        fmt::format("VMM.n_vectors = {}: allowed 1..{}", q->n_vectors, kMaxVmmVectors));
  }
  wire::VmmReply r;
  r.array = q->array;
  r.gain_index = q->gain_index;
  r.n_vectors = q->n_vectors;
  r.acc.resize(static_cast<size_t>(q->n_vectors) * p.cols);
  if (q->has_noise_tag) {  // the host-stepped loop reference: draw as that loop step
    chip_.vmm(q->array, q->gain_index, q->inputs, q->noise_op, r.acc, q->first_vector);
  } else {
    chip_.vmm(q->array, q->gain_index, q->inputs, ops_executed_, r.acc);
  }
  chip_.advance_ns(static_cast<uint64_t>(q->n_vectors * 8 * p.vmm_plane_us * 1000.0));
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_loop_load(const wire::Frame& f) {
  const ChipProfile& p = profile_;
  auto q = wire::decode_loop_load_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  if (auto e = wire::check_loop_programs(q->programs, p.arrays, p.rows, p.cols,
                                         static_cast<int>(p.tia_gains_ohm.size()));
      !e.empty()) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange, e);
  }
  wire::LoopLoadReply r;
  r.max_block_steps = loop_.load(std::move(q->programs));
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_loop_run(SessionId session, const wire::Frame& f) {
  auto q = wire::decode_loop_run_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  auto r = loop_.run(session, *q, chip_, profile_);
  if (!r) return error_reply(f.header, r.error().code, std::move(r.error().message));
  return ok_reply(f.header, r->encode());
}

std::vector<uint8_t> Firmware::do_wait(const wire::Frame& f) {
  auto q = wire::decode_wait_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kOutOfRange, q.error());
  chip_.advance_ns(uint64_t{q->duration_us} * 1000);
  wire::WaitReply r;
  r.uptime_ns = chip_.now_ns();
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_sim_fault_map(const wire::Frame& f) {
  auto q = wire::decode_array_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  if (q->array >= profile_.arrays) {
    return error_reply(
        f.header, BoardErrorCode::kOutOfRange,
        fmt::format("SIM_FAULT_MAP.array = {}: allowed 0..{}", q->array, profile_.arrays - 1));
  }
  wire::SimFaultMapReply r;
  r.array = q->array;
  for (int row = 0; row < profile_.rows; ++row) {
    for (int col = 0; col < profile_.cols; ++col) {
      r.faults.push_back(chip_.device(q->array, row, col).fault);
    }
  }
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_sim_ground_truth(const wire::Frame& f) {
  auto q = wire::decode_array_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  if (q->array >= profile_.arrays) {
    return error_reply(
        f.header, BoardErrorCode::kOutOfRange,
        fmt::format("SIM_GROUND_TRUTH.array = {}: allowed 0..{}", q->array, profile_.arrays - 1));
  }
  wire::SimGroundTruthReply r;
  r.array = q->array;
  for (int row = 0; row < profile_.rows; ++row) {
    for (int col = 0; col < profile_.cols; ++col) {
      r.g_uS.push_back(static_cast<float>(chip_.true_g_uS(q->array, row, col)));
    }
  }
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_sim_inject_fault(const wire::Frame& f) {
  auto q = wire::decode_sim_inject_fault_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  const ChipProfile& p = profile_;
  if (q->array >= p.arrays || q->row >= p.rows || q->col >= p.cols) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("SIM_INJECT_FAULT: (array {}, row {}, col {}) outside "
                                   "{} arrays x {} rows x {} cols",
                                   q->array, q->row, q->col, p.arrays, p.rows, p.cols));
  }
  if (!std::isnan(q->g_uS) && !(q->g_uS >= 0 && q->g_uS <= 10000)) {
    return error_reply(f.header, BoardErrorCode::kOutOfRange,
                       fmt::format("SIM_INJECT_FAULT.g_uS = {}: allowed 0..10000 or NaN", q->g_uS));
  }
  chip_.inject_fault(q->array, q->row, q->col, q->fault, q->g_uS);
  return ok_reply(f.header, {});
}

std::vector<uint8_t> Firmware::do_sim_clock(const wire::Frame& f) {
  auto q = wire::decode_sim_clock_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  if (q->op == wire::ClockOp::kAdvance) chip_.advance_ns(q->advance_ns);
  wire::SimClockReply r;
  r.now_ns = chip_.now_ns();
  return ok_reply(f.header, r.encode());
}

std::vector<uint8_t> Firmware::do_sim_link(const wire::Frame& f) {
  auto q = wire::decode_sim_link_request(f.payload);
  if (!q) return error_reply(f.header, BoardErrorCode::kBadLength, q.error());
  if (q->op == wire::LinkOp::kSet) link_.set(q->faults);
  return ok_reply(f.header, link_.report().encode());
}

}  // namespace xbar::twin
