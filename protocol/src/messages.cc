#include "xbar/wire/messages.h"

#include <fmt/format.h>

#include <bit>

#include "xbar/wire/bytes.h"

namespace xbar::wire {

namespace {

std::unexpected<std::string> bad(std::string_view what, size_t got) {
  return std::unexpected(fmt::format("{}: payload is {} bytes", what, got));
}

void put_fixed_string(ByteWriter& w, const std::string& s, size_t n) {
  std::vector<uint8_t> buf(n, 0);
  for (size_t i = 0; i < s.size() && i < n; ++i) buf[i] = static_cast<uint8_t>(s[i]);
  w.put_bytes(buf);
}

std::string get_fixed_string(ByteReader& r, size_t n) {
  auto b = r.get_bytes(n);
  std::string s;
  for (uint8_t c : b) {
    if (c == 0) break;
    s.push_back(static_cast<char>(c));
  }
  return s;
}

constexpr size_t kSerialBytes = 16;
constexpr size_t kMaxGains = 8;

}  // namespace

std::string_view board_error_code_name(BoardErrorCode c) {
  switch (c) {
    case BoardErrorCode::kBadFrame:
      return "BAD_FRAME";
    case BoardErrorCode::kUnknownOpcode:
      return "UNKNOWN_OPCODE";
    case BoardErrorCode::kBadLength:
      return "BAD_LENGTH";
    case BoardErrorCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case BoardErrorCode::kBusy:
      return "BUSY";
    case BoardErrorCode::kSeqReused:
      return "SEQ_REUSED";
    case BoardErrorCode::kUnsupported:
      return "UNSUPPORTED";
    case BoardErrorCode::kAborted:
      return "ABORTED";
    case BoardErrorCode::kInternal:
      return "INTERNAL";
    case BoardErrorCode::kRestarted:
      return "RESTARTED";
  }
  return "UNKNOWN_ERROR";
}

std::string_view fault_kind_name(FaultKind k) {
  switch (k) {
    case FaultKind::kNone:
      return "ok";
    case FaultKind::kStuckHigh:
      return "stuck_high";
    case FaultKind::kStuckLow:
      return "stuck_low";
    case FaultKind::kSlow:
      return "slow";
  }
  return "unknown";
}

size_t mask_popcount(std::span<const uint8_t> mask) {
  size_t n = 0;
  for (uint8_t b : mask) n += static_cast<size_t>(std::popcount(b));
  return n;
}

// ---- ErrorReply: u16 code, u16 message_len, message ----
std::vector<uint8_t> ErrorReply::encode() const {
  ByteWriter w;
  const size_t n = std::min(message.size(), kMaxErrorMessage);
  w.put<uint16_t>(static_cast<uint16_t>(code));
  w.put<uint16_t>(static_cast<uint16_t>(n));
  w.put_bytes({reinterpret_cast<const uint8_t*>(message.data()), n});
  return w.take();
}
Decoded<ErrorReply> decode_error_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  ErrorReply e;
  e.code = static_cast<BoardErrorCode>(r.get<uint16_t>());
  const uint16_t n = r.get<uint16_t>();
  if (n > ErrorReply::kMaxErrorMessage) return bad("ERROR.message_len > 1024", p.size());
  auto m = r.get_bytes(n);
  if (!r.done()) return bad("ERROR", p.size());
  e.message.assign(m.begin(), m.end());
  return e;
}

// ---- INFO ----
std::vector<uint8_t> InfoReply::encode() const {
  ByteWriter w;
  w.put(protocol_version);
  w.put(n_arrays);
  w.put(rows);
  w.put(cols);
  put_fixed_string(w, serial, kSerialBytes);
  put_fixed_string(w, firmware_version, kSerialBytes);
  w.put(adc_bits);
  w.put(dac_bits);
  w.put(capabilities);
  w.put<uint8_t>(static_cast<uint8_t>(std::min(tia_gains_ohm.size(), kMaxGains)));
  w.put(adc_v_lo_mV);
  w.put(adc_v_hi_mV);
  w.put(tia_v_ref_mV);
  w.put(v_read_mV);
  w.put(read_gate_mV);
  w.put(dac_v_min_mV);
  w.put(dac_v_max_mV);
  for (size_t i = 0; i < tia_gains_ohm.size() && i < kMaxGains; ++i) w.put(tia_gains_ohm[i]);
  w.put(width_step_ns);
  w.put(width_max_code);
  for (uint16_t v : {set_v_min_mV, set_v_max_mV, set_gate_min_mV, set_gate_max_mV, reset_v_min_mV,
                     reset_v_max_mV, reset_gate_min_mV, reset_gate_max_mV}) {
    w.put(v);
  }
  w.put(max_payload);
  w.put(max_vmm_vectors);
  w.put(max_read_avg);
  return w.take();
}
Decoded<InfoReply> decode_info_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  InfoReply i;
  i.protocol_version = r.get<uint8_t>();
  i.n_arrays = r.get<uint8_t>();
  i.rows = r.get<uint8_t>();
  i.cols = r.get<uint8_t>();
  i.serial = get_fixed_string(r, kSerialBytes);
  i.firmware_version = get_fixed_string(r, kSerialBytes);
  i.adc_bits = r.get<uint8_t>();
  i.dac_bits = r.get<uint8_t>();
  i.capabilities = r.get<uint8_t>();
  const uint8_t n_gains = r.get<uint8_t>();
  if (n_gains > kMaxGains) return bad("INFO.n_gains > 8", p.size());
  i.adc_v_lo_mV = r.get<uint16_t>();
  i.adc_v_hi_mV = r.get<uint16_t>();
  i.tia_v_ref_mV = r.get<uint16_t>();
  i.v_read_mV = r.get<uint16_t>();
  i.read_gate_mV = r.get<uint16_t>();
  i.dac_v_min_mV = r.get<int16_t>();
  i.dac_v_max_mV = r.get<int16_t>();
  i.tia_gains_ohm.resize(n_gains);
  for (auto& g : i.tia_gains_ohm) g = r.get<uint32_t>();
  i.width_step_ns = r.get<uint16_t>();
  i.width_max_code = r.get<uint16_t>();
  for (uint16_t* v :
       {&i.set_v_min_mV, &i.set_v_max_mV, &i.set_gate_min_mV, &i.set_gate_max_mV, &i.reset_v_min_mV,
        &i.reset_v_max_mV, &i.reset_gate_min_mV, &i.reset_gate_max_mV}) {
    *v = r.get<uint16_t>();
  }
  i.max_payload = r.get<uint32_t>();
  i.max_vmm_vectors = r.get<uint16_t>();
  i.max_read_avg = r.get<uint8_t>();
  if (!r.done()) return bad("INFO reply", p.size());
  return i;
}

// ---- STATUS ----
std::vector<uint8_t> StatusReply::encode() const {
  ByteWriter w;
  w.put<uint8_t>(static_cast<uint8_t>(state));
  w.put<uint8_t>(0);
  w.put(last_error);
  w.put(uptime_ns);
  w.put(ops_executed);
  w.put(pulses_applied);
  w.put(replays_served);
  return w.take();
}
Decoded<StatusReply> decode_status_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  StatusReply s;
  s.state = static_cast<BoardState>(r.get<uint8_t>());
  r.get<uint8_t>();
  s.last_error = r.get<uint16_t>();
  s.uptime_ns = r.get<uint64_t>();
  s.ops_executed = r.get<uint64_t>();
  s.pulses_applied = r.get<uint64_t>();
  s.replays_served = r.get<uint32_t>();
  if (!r.done()) return bad("STATUS reply", p.size());
  return s;
}

// ---- READ: u8 array, u8 gain_index, u8 n_avg, u8 mode, u16 n_cells, u16 settle_ms, cells ----
std::vector<uint8_t> ReadRequest::encode() const {
  ByteWriter w;
  w.put(array);
  w.put(gain_index);
  w.put(n_avg);
  w.put<uint8_t>(static_cast<uint8_t>(mode));
  w.put<uint16_t>(static_cast<uint16_t>(cells.size()));
  w.put<uint16_t>(settle_ms);
  for (const Cell& c : cells) {
    w.put(c.row);
    w.put(c.col);
  }
  return w.take();
}
Decoded<ReadRequest> decode_read_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  ReadRequest q;
  q.array = r.get<uint8_t>();
  q.gain_index = r.get<uint8_t>();
  q.n_avg = r.get<uint8_t>();
  const uint8_t mode = r.get<uint8_t>();
  const uint16_t n = r.get<uint16_t>();
  q.settle_ms = r.get<uint16_t>();
  if (!r.ok()) return bad("READ request header (8 bytes)", p.size());
  if (mode > 1)
    return std::unexpected(fmt::format("READ.mode = {}: allowed 0 (whole) or 1 (cells)", mode));
  q.mode = static_cast<ReadMode>(mode);
  if (q.mode == ReadMode::kWholeArray && n != 0) {
    return std::unexpected(fmt::format("READ.n_cells = {}: must be 0 for mode 0 (whole array)", n));
  }
  if (q.mode == ReadMode::kCells && n == 0) {
    return std::unexpected("READ.n_cells = 0: mode 1 (cells) needs 1..4096 cells");
  }
  q.cells.resize(n);
  for (Cell& c : q.cells) {
    c.row = r.get<uint8_t>();
    c.col = r.get<uint8_t>();
  }
  if (!r.done()) {
    return std::unexpected(fmt::format("READ: payload is {} bytes, n_cells = {} needs {}", p.size(),
                                       n, 8 + 2 * size_t{n}));
  }
  return q;
}

std::vector<uint8_t> ReadReply::encode() const {
  ByteWriter w;
  w.reserve(8 + 4 * code_sums.size());
  w.put(array);
  w.put(gain_index);
  w.put(n_avg);
  w.put<uint8_t>(static_cast<uint8_t>(mode));
  w.put<uint16_t>(static_cast<uint16_t>(code_sums.size()));
  w.put<uint16_t>(0);
  w.put_bytes({reinterpret_cast<const uint8_t*>(code_sums.data()), code_sums.size() * 4});
  return w.take();
}
Decoded<ReadReply> decode_read_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  ReadReply q;
  q.array = r.get<uint8_t>();
  q.gain_index = r.get<uint8_t>();
  q.n_avg = r.get<uint8_t>();
  q.mode = static_cast<ReadMode>(r.get<uint8_t>());
  const uint16_t n = r.get<uint16_t>();
  r.get<uint16_t>();
  q.code_sums.resize(n);
  for (auto& v : q.code_sums) v = r.get<uint32_t>();
  if (!r.done()) return bad("READ reply", p.size());
  return q;
}

// ---- PULSE_BATCH: u8 array, u8 polarity, u16 n_devices, mask, [reset_mask], n x codes ----
std::vector<uint8_t> PulseBatchRequest::encode() const {
  ByteWriter w;
  w.reserve(4 + mask.size() + 6 * codes.size());
  w.put(array);
  w.put<uint8_t>(static_cast<uint8_t>(polarity));
  w.put<uint16_t>(static_cast<uint16_t>(codes.size()));
  w.put_bytes(mask);
  if (polarity == Polarity::kMixed) w.put_bytes(reset_mask);
  for (const PulseCodes& c : codes) {
    w.put(c.v_code);
    w.put(c.gate_code);
    w.put(c.width_code);
  }
  return w.take();
}
Decoded<PulseBatchRequest> decode_pulse_batch_request(std::span<const uint8_t> p,
                                                      size_t mask_bytes) {
  ByteReader r(p);
  PulseBatchRequest q;
  q.array = r.get<uint8_t>();
  const uint8_t pol = r.get<uint8_t>();
  const uint16_t n = r.get<uint16_t>();
  auto mask = r.get_bytes(mask_bytes);
  if (!r.ok()) {
    return std::unexpected(fmt::format("PULSE_BATCH: payload is {} bytes, header + mask need {}",
                                       p.size(), 4 + mask_bytes));
  }
  if (pol < 1 || pol > 3) {
    return std::unexpected(
        fmt::format("PULSE_BATCH.polarity = {}: allowed 1 (SET), 2 (RESET) or 3 (MIXED)", pol));
  }
  q.polarity = static_cast<Polarity>(pol);
  q.mask.assign(mask.begin(), mask.end());
  if (q.polarity == Polarity::kMixed) {
    auto reset = r.get_bytes(mask_bytes);
    if (!r.ok()) {
      return std::unexpected(
          fmt::format("PULSE_BATCH: payload is {} bytes, header + two masks need {}", p.size(),
                      4 + 2 * mask_bytes));
    }
    q.reset_mask.assign(reset.begin(), reset.end());
    for (size_t i = 0; i < mask_bytes; ++i) {
      if (q.reset_mask[i] & ~q.mask[i]) {
        return std::unexpected(fmt::format(
            "PULSE_BATCH.reset_mask byte {} selects devices that the mask does not", i));
      }
    }
  }
  const size_t set_bits = mask_popcount(q.mask);
  if (set_bits != n) {
    return std::unexpected(
        fmt::format("PULSE_BATCH.n_devices = {} but the mask selects {} devices", n, set_bits));
  }
  q.codes.resize(n);
  for (PulseCodes& c : q.codes) {
    c.v_code = r.get<uint16_t>();
    c.gate_code = r.get<uint16_t>();
    c.width_code = r.get<uint16_t>();
  }
  if (!r.done()) {
    const size_t masks = q.polarity == Polarity::kMixed ? 2 : 1;
    return std::unexpected(fmt::format("PULSE_BATCH: payload is {} bytes, {} devices need {}",
                                       p.size(), n, 4 + masks * mask_bytes + 6 * size_t{n}));
  }
  return q;
}

std::vector<uint8_t> PulseBatchReply::encode() const {
  ByteWriter w;
  w.put(n_pulsed);
  w.put<uint16_t>(0);
  w.put(duration_us);
  return w.take();
}
Decoded<PulseBatchReply> decode_pulse_batch_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  PulseBatchReply q;
  q.n_pulsed = r.get<uint16_t>();
  r.get<uint16_t>();
  q.duration_us = r.get<uint32_t>();
  if (!r.done()) return bad("PULSE_BATCH reply", p.size());
  return q;
}

// ---- VMM: u8 array, u8 gain_index, u16 n_vectors, inputs ----
std::vector<uint8_t> VmmRequest::encode() const {
  ByteWriter w;
  w.put(array);
  w.put(gain_index);
  w.put(n_vectors);
  w.put_bytes(inputs);
  if (has_noise_tag) {
    w.put(noise_op);
    w.put(first_vector);
  }
  return w.take();
}
Decoded<VmmRequest> decode_vmm_request(std::span<const uint8_t> p, size_t rows) {
  ByteReader r(p);
  VmmRequest q;
  q.array = r.get<uint8_t>();
  q.gain_index = r.get<uint8_t>();
  q.n_vectors = r.get<uint16_t>();
  auto in = r.get_bytes(size_t{q.n_vectors} * rows);
  if (r.ok() && r.remaining() == 12) {
    q.has_noise_tag = true;
    q.noise_op = r.get<uint64_t>();
    q.first_vector = r.get<uint32_t>();
  }
  if (!r.done()) {
    return std::unexpected(fmt::format("VMM: payload is {} bytes, n_vectors = {} needs {}",
                                       p.size(), q.n_vectors, 4 + size_t{q.n_vectors} * rows));
  }
  q.inputs.assign(in.begin(), in.end());
  return q;
}

std::vector<uint8_t> VmmReply::encode() const {
  ByteWriter w;
  w.reserve(4 + acc.size() * 4);
  w.put(array);
  w.put(gain_index);
  w.put(n_vectors);
  w.put_bytes({reinterpret_cast<const uint8_t*>(acc.data()), acc.size() * 4});
  return w.take();
}
Decoded<VmmReply> decode_vmm_reply(std::span<const uint8_t> p, size_t cols) {
  ByteReader r(p);
  VmmReply q;
  q.array = r.get<uint8_t>();
  q.gain_index = r.get<uint8_t>();
  q.n_vectors = r.get<uint16_t>();
  // The length first: a short reply announcing 65535 vectors must not allocate for them.
  if (p.size() != 4 + (size_t{q.n_vectors} * cols * 4)) return bad("VMM reply", p.size());
  q.acc.resize(size_t{q.n_vectors} * cols);
  for (auto& v : q.acc) v = r.get<uint32_t>();
  if (!r.done()) return bad("VMM reply", p.size());
  return q;
}

// ---- ABORT / WAIT ----
std::vector<uint8_t> AbortReply::encode() const {
  ByteWriter w;
  w.put(was_running);
  return w.take();
}
Decoded<AbortReply> decode_abort_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  AbortReply a;
  a.was_running = r.get<uint8_t>();
  if (!r.done()) return bad("ABORT reply", p.size());
  return a;
}

std::vector<uint8_t> WaitRequest::encode() const {
  ByteWriter w;
  w.put(duration_us);
  return w.take();
}
Decoded<WaitRequest> decode_wait_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  WaitRequest q;
  q.duration_us = r.get<uint32_t>();
  if (!r.done()) return bad("WAIT request (4 bytes)", p.size());
  if (q.duration_us > WaitRequest::kMaxUs) {
    return std::unexpected(
        fmt::format("WAIT.duration_us = {}: allowed 0..{}", q.duration_us, WaitRequest::kMaxUs));
  }
  return q;
}
std::vector<uint8_t> WaitReply::encode() const {
  ByteWriter w;
  w.put(uptime_ns);
  return w.take();
}
Decoded<WaitReply> decode_wait_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  WaitReply q;
  q.uptime_ns = r.get<uint64_t>();
  if (!r.done()) return bad("WAIT reply", p.size());
  return q;
}

// ---- SIM_* ----
std::vector<uint8_t> ArrayRequest::encode() const {
  ByteWriter w;
  w.put(array);
  return w.take();
}
Decoded<ArrayRequest> decode_array_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  ArrayRequest q;
  q.array = r.get<uint8_t>();
  if (!r.done()) return bad("array request (1 byte)", p.size());
  return q;
}

std::vector<uint8_t> SimFaultMapReply::encode() const {
  ByteWriter w;
  w.put(array);
  for (FaultKind f : faults) w.put<uint8_t>(static_cast<uint8_t>(f));
  return w.take();
}
Decoded<SimFaultMapReply> decode_sim_fault_map_reply(std::span<const uint8_t> p, size_t cells) {
  ByteReader r(p);
  SimFaultMapReply q;
  q.array = r.get<uint8_t>();
  q.faults.resize(cells);
  for (auto& f : q.faults) f = static_cast<FaultKind>(r.get<uint8_t>());
  if (!r.done()) return bad("SIM_FAULT_MAP reply", p.size());
  return q;
}

std::vector<uint8_t> SimGroundTruthReply::encode() const {
  ByteWriter w;
  w.reserve(4 + 4 * g_uS.size());
  w.put(array);
  w.put_zeros(3);
  for (float g : g_uS) w.put(g);
  return w.take();
}
Decoded<SimGroundTruthReply> decode_sim_ground_truth_reply(std::span<const uint8_t> p,
                                                           size_t cells) {
  ByteReader r(p);
  SimGroundTruthReply q;
  q.array = r.get<uint8_t>();
  r.get_bytes(3);
  q.g_uS.resize(cells);
  for (auto& g : q.g_uS) g = r.get<float>();
  if (!r.done()) return bad("SIM_GROUND_TRUTH reply", p.size());
  return q;
}

std::vector<uint8_t> SimInjectFaultRequest::encode() const {
  ByteWriter w;
  w.put(array);
  w.put(row);
  w.put(col);
  w.put<uint8_t>(static_cast<uint8_t>(fault));
  w.put(g_uS);
  return w.take();
}
Decoded<SimInjectFaultRequest> decode_sim_inject_fault_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  SimInjectFaultRequest q;
  q.array = r.get<uint8_t>();
  q.row = r.get<uint8_t>();
  q.col = r.get<uint8_t>();
  const uint8_t f = r.get<uint8_t>();
  q.g_uS = r.get<float>();
  if (!r.done()) return bad("SIM_INJECT_FAULT request (8 bytes)", p.size());
  if (f > 3) {
    return std::unexpected(fmt::format(
        "SIM_INJECT_FAULT.fault = {}: allowed 0 (none), 1 (stuck_high), 2 (stuck_low), 3 (slow)",
        f));
  }
  q.fault = static_cast<FaultKind>(f);
  return q;
}

std::vector<uint8_t> SimClockRequest::encode() const {
  ByteWriter w;
  w.put<uint8_t>(static_cast<uint8_t>(op));
  w.put_zeros(7);
  w.put(advance_ns);
  return w.take();
}
Decoded<SimClockRequest> decode_sim_clock_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  SimClockRequest q;
  const uint8_t op = r.get<uint8_t>();
  r.get_bytes(7);
  q.advance_ns = r.get<uint64_t>();
  if (!r.done()) return bad("SIM_CLOCK request (16 bytes)", p.size());
  if (op > 1)
    return std::unexpected(fmt::format("SIM_CLOCK.op = {}: allowed 0 (query) or 1 (advance)", op));
  q.op = static_cast<ClockOp>(op);
  return q;
}
std::vector<uint8_t> SimClockReply::encode() const {
  ByteWriter w;
  w.put(now_ns);
  return w.take();
}
Decoded<SimClockReply> decode_sim_clock_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  SimClockReply q;
  q.now_ns = r.get<uint64_t>();
  if (!r.done()) return bad("SIM_CLOCK reply", p.size());
  return q;
}

namespace {
void put_faults(ByteWriter& w, const LinkFaults& f) {
  for (uint16_t v : {f.drop_request, f.corrupt_request, f.drop_reply, f.corrupt_reply,
                     f.duplicate_reply, f.delay_reply, f.restart, f.unplug}) {
    w.put(v);
  }
  w.put(f.seed);
  w.put(f.unplug_ms);
  w.put(uint16_t{0});
}
LinkFaults get_faults(ByteReader& r) {
  LinkFaults f;
  for (uint16_t* v : {&f.drop_request, &f.corrupt_request, &f.drop_reply, &f.corrupt_reply,
                      &f.duplicate_reply, &f.delay_reply, &f.restart, &f.unplug}) {
    *v = r.get<uint16_t>();
  }
  f.seed = r.get<uint64_t>();
  f.unplug_ms = r.get<uint16_t>();
  r.get<uint16_t>();
  return f;
}
}  // namespace

std::vector<uint8_t> SimLinkRequest::encode() const {
  ByteWriter w;
  w.put(static_cast<uint8_t>(op));
  w.put_zeros(7);
  put_faults(w, faults);
  return w.take();
}
Decoded<SimLinkRequest> decode_sim_link_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  SimLinkRequest q;
  const uint8_t op = r.get<uint8_t>();
  r.get_bytes(7);
  q.faults = get_faults(r);
  if (!r.done()) return bad("SIM_LINK request (36 bytes)", p.size());
  if (op > 1)
    return std::unexpected(fmt::format("SIM_LINK.op = {}: allowed 0 (query) or 1 (set)", op));
  q.op = static_cast<LinkOp>(op);
  return q;
}
std::vector<uint8_t> SimLinkReply::encode() const {
  ByteWriter w;
  put_faults(w, faults);
  for (uint32_t v :
       {requests_dropped, requests_corrupted, replies_dropped, replies_corrupted,
        replies_duplicated, replies_delayed, restarts, pulse_batches_repeated, unplugs}) {
    w.put(v);
  }
  return w.take();
}
Decoded<SimLinkReply> decode_sim_link_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  SimLinkReply q;
  q.faults = get_faults(r);
  for (uint32_t* v : {&q.requests_dropped, &q.requests_corrupted, &q.replies_dropped,
                      &q.replies_corrupted, &q.replies_duplicated, &q.replies_delayed, &q.restarts,
                      &q.pulse_batches_repeated, &q.unplugs}) {
    *v = r.get<uint32_t>();
  }
  if (!r.done()) return bad("SIM_LINK reply", p.size());
  return q;
}

}  // namespace xbar::wire
