// Typed payloads of protocol v1 (docs/protocol.md §4). Each request/reply has encode() and a
// decode_*() that checks the exact length and returns a message naming the offending field.
// Range checks that depend on the board (voltage windows, array count) live in the firmware.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

namespace xbar::wire {

/// Error codes carried by ErrorReply (flags & kFlagError).
enum class BoardErrorCode : uint16_t {
  kBadFrame = 1,       // CRC, truncation, magic, version: the frame was not executed
  kUnknownOpcode = 2,  // opcode not defined by protocol v1
  kBadLength = 3,      // payload length does not match the opcode's layout
  kOutOfRange = 4,     // a field's value is outside its allowed range (message names it)
  kBusy = 5,           // the board is running a loop; only STATUS/ABORT are served
  kSeqReused = 6,      // same sequence number as a cached request, different content
  kUnsupported = 7,    // defined by v1, not implemented by this board/firmware
  kAborted = 8,        // the operation was stopped by ABORT
  kInternal = 9,       // firmware fault; the board state is as reported by STATUS
  kRestarted = 10,     // the board restarted since this session's last request (power glitch,
                       // watchdog): its volatile state (reply cache, loop programs, an open
                       // run) is gone, conductances are kept; this request was not executed
};
std::string_view board_error_code_name(BoardErrorCode c);

template <typename T>
using Decoded = std::expected<T, std::string>;

struct ErrorReply {
  BoardErrorCode code = BoardErrorCode::kInternal;
  std::string message;  // UTF-8, at most kMaxErrorMessage bytes, names the field and range
  static constexpr size_t kMaxErrorMessage = 1024;
  std::vector<uint8_t> encode() const;
};
Decoded<ErrorReply> decode_error_reply(std::span<const uint8_t> p);

enum Capability : uint8_t {
  kCapSim = 1u << 0,         // answers SIM_* opcodes (the twin)
  kCapLoop = 1u << 1,        // implements LOOP_LOAD / LOOP_RUN
  kCapLoopResume = 1u << 2,  // LOOP_RUN RESUME/SNAPSHOT: a run's state is switched out and in
};

struct InfoReply {
  uint8_t protocol_version = 1;
  uint8_t n_arrays = 3;
  uint8_t rows = 64;
  uint8_t cols = 64;
  std::string serial;            // ASCII, at most 16 bytes
  std::string firmware_version;  // ASCII, at most 16 bytes
  uint8_t adc_bits = 10;
  uint8_t dac_bits = 16;
  uint8_t capabilities = 0;
  uint16_t adc_v_lo_mV = 500;
  uint16_t adc_v_hi_mV = 4000;
  uint16_t tia_v_ref_mV = 500;
  uint16_t v_read_mV = 200;
  uint16_t read_gate_mV = 5000;
  int16_t dac_v_min_mV = -10000;
  int16_t dac_v_max_mV = 10000;
  std::vector<uint32_t> tia_gains_ohm;  // index = gain_index in READ/VMM; at most 8
  uint16_t width_step_ns = 20;
  uint16_t width_max_code = 250;
  uint16_t set_v_min_mV = 1000, set_v_max_mV = 3500;
  uint16_t set_gate_min_mV = 500, set_gate_max_mV = 2000;
  uint16_t reset_v_min_mV = 300, reset_v_max_mV = 3500;
  uint16_t reset_gate_min_mV = 5000, reset_gate_max_mV = 5500;
  uint32_t max_payload = 65536;
  uint16_t max_vmm_vectors = 128;
  uint8_t max_read_avg = 64;
  std::vector<uint8_t> encode() const;
};
Decoded<InfoReply> decode_info_reply(std::span<const uint8_t> p);

enum class BoardState : uint8_t { kIdle = 0, kLoopRunning = 1 };

struct StatusReply {
  BoardState state = BoardState::kIdle;
  uint16_t last_error = 0;      // BoardErrorCode of the last error reply, 0 if none
  uint64_t uptime_ns = 0;       // board clock (the twin's virtual clock)
  uint64_t ops_executed = 0;    // requests executed (replays from the cache not counted)
  uint64_t pulses_applied = 0;  // device pulses since power-on
  uint32_t replays_served = 0;  // requests answered from the reply cache
  std::vector<uint8_t> encode() const;
};
Decoded<StatusReply> decode_status_reply(std::span<const uint8_t> p);

struct Cell {
  uint8_t row = 0;
  uint8_t col = 0;
  bool operator==(const Cell&) const = default;
};

enum class ReadMode : uint8_t { kWholeArray = 0, kCells = 1 };

struct ReadRequest {
  uint8_t array = 0;
  uint8_t gain_index = 2;
  uint8_t n_avg = 1;  // reads per device, summed by the board (1..max_read_avg)
  ReadMode mode = ReadMode::kWholeArray;
  /// The board idles this long before reading (lets freshly programmed devices relax), so a
  /// program-verify round stays at two transactions. 0..kMaxSettleMs.
  uint16_t settle_ms = 0;
  static constexpr uint16_t kMaxSettleMs = 10000;
  std::vector<Cell> cells;  // only for kCells (1..4096)
  std::vector<uint8_t> encode() const;
};
Decoded<ReadRequest> decode_read_request(std::span<const uint8_t> p);

struct ReadReply {
  uint8_t array = 0;
  uint8_t gain_index = 0;
  uint8_t n_avg = 1;
  ReadMode mode = ReadMode::kWholeArray;
  std::vector<uint32_t> code_sums;  // per device: sum of n_avg ADC codes; row-major or list order
  std::vector<uint8_t> encode() const;
};
Decoded<ReadReply> decode_read_reply(std::span<const uint8_t> p);

/// kMixed: a second mask (reset_mask) says which of the selected devices get a RESET; the
/// others get a SET. One batch can then carry a whole program-verify round.
enum class Polarity : uint8_t { kSet = 1, kReset = 2, kMixed = 3 };

struct PulseCodes {
  uint16_t v_code = 0;      // drain (SET) or source (RESET) DAC code
  uint16_t gate_code = 0;   // gate DAC code
  uint16_t width_code = 0;  // pulse width in width_step_ns units (1..width_max_code)
};

/// One array, one polarity; the mask selects devices (bit r*cols+c, LSB first in each byte)
/// and `codes` holds one entry per set bit in row-major order.
struct PulseBatchRequest {
  uint8_t array = 0;
  Polarity polarity = Polarity::kSet;
  std::vector<uint8_t> mask;        // ceil(rows*cols/8) bytes
  std::vector<uint8_t> reset_mask;  // only for kMixed: same size, a subset of mask
  std::vector<PulseCodes> codes;
  std::vector<uint8_t> encode() const;
};
/// `mask_bytes` comes from the board geometry (rows*cols/8).
Decoded<PulseBatchRequest> decode_pulse_batch_request(std::span<const uint8_t> p,
                                                      size_t mask_bytes);

struct PulseBatchReply {
  uint16_t n_pulsed = 0;
  uint32_t duration_us = 0;  // board time the batch took
  std::vector<uint8_t> encode() const;
};
Decoded<PulseBatchReply> decode_pulse_batch_reply(std::span<const uint8_t> p);

struct VmmRequest {
  uint8_t array = 0;
  uint8_t gain_index = 0;
  uint16_t n_vectors = 0;
  std::vector<uint8_t> inputs;  // n_vectors x rows, 8-bit magnitudes applied bit-serially
  // Twin only (optional 12-byte trailer): draw the noise as vector first_vector.. of operation
  // noise_op instead of this request's own (the host-stepped loop reference, docs/firmware.md
  // §6). A real board has physical noise and ignores it.
  bool has_noise_tag = false;
  uint64_t noise_op = 0;
  uint32_t first_vector = 0;
  std::vector<uint8_t> encode() const;
};
Decoded<VmmRequest> decode_vmm_request(std::span<const uint8_t> p, size_t rows);

struct VmmReply {
  uint8_t array = 0;
  uint8_t gain_index = 0;
  uint16_t n_vectors = 0;
  std::vector<uint32_t> acc;  // n_vectors x cols: sum over bit planes b of (ADC code << b)
  std::vector<uint8_t> encode() const;
};
Decoded<VmmReply> decode_vmm_reply(std::span<const uint8_t> p, size_t cols);

struct AbortReply {
  uint8_t was_running = 0;
  std::vector<uint8_t> encode() const;
};
Decoded<AbortReply> decode_abort_reply(std::span<const uint8_t> p);

struct WaitRequest {
  uint32_t duration_us = 0;  // 0..10'000'000
  static constexpr uint32_t kMaxUs = 10'000'000;
  std::vector<uint8_t> encode() const;
};
Decoded<WaitRequest> decode_wait_request(std::span<const uint8_t> p);

struct WaitReply {
  uint64_t uptime_ns = 0;
  std::vector<uint8_t> encode() const;
};
Decoded<WaitReply> decode_wait_reply(std::span<const uint8_t> p);

/// Single-byte array selector shared by SIM_FAULT_MAP and SIM_GROUND_TRUTH requests.
struct ArrayRequest {
  uint8_t array = 0;
  std::vector<uint8_t> encode() const;
};
Decoded<ArrayRequest> decode_array_request(std::span<const uint8_t> p);

enum class FaultKind : uint8_t { kNone = 0, kStuckHigh = 1, kStuckLow = 2, kSlow = 3 };
std::string_view fault_kind_name(FaultKind k);

struct SimFaultMapReply {
  uint8_t array = 0;
  std::vector<FaultKind> faults;  // rows*cols, row-major
  std::vector<uint8_t> encode() const;
};
Decoded<SimFaultMapReply> decode_sim_fault_map_reply(std::span<const uint8_t> p, size_t cells);

struct SimGroundTruthReply {
  uint8_t array = 0;
  std::vector<float> g_uS;  // rows*cols, row-major: the true conductance now
  std::vector<uint8_t> encode() const;
};
Decoded<SimGroundTruthReply> decode_sim_ground_truth_reply(std::span<const uint8_t> p,
                                                           size_t cells);

struct SimInjectFaultRequest {
  uint8_t array = 0;
  uint8_t row = 0;
  uint8_t col = 0;
  FaultKind fault = FaultKind::kNone;
  float g_uS = 0.0f;  // conductance a stuck device is frozen at; NaN keeps the present value
  std::vector<uint8_t> encode() const;
};
Decoded<SimInjectFaultRequest> decode_sim_inject_fault_request(std::span<const uint8_t> p);

enum class ClockOp : uint8_t { kQuery = 0, kAdvance = 1 };

struct SimClockRequest {
  ClockOp op = ClockOp::kQuery;
  uint64_t advance_ns = 0;
  std::vector<uint8_t> encode() const;
};
Decoded<SimClockRequest> decode_sim_clock_request(std::span<const uint8_t> p);

struct SimClockReply {
  uint64_t now_ns = 0;
  std::vector<uint8_t> encode() const;
};
Decoded<SimClockReply> decode_sim_clock_reply(std::span<const uint8_t> p);

/// SIM_LINK: the twin's link faults (docs/protocol.md §4.12). Probabilities are per frame, in
/// units of 1/65536; `restart` is per request (half before it executes, half after, when its
/// reply is lost with the power). op 0 queries, op 1 sets the rates and reseeds the draws.
enum class LinkOp : uint8_t { kQuery = 0, kSet = 1 };

struct LinkFaults {
  uint16_t drop_request = 0;     // the request never reaches the board
  uint16_t corrupt_request = 0;  // one byte of the request flipped on the way in
  uint16_t drop_reply = 0;       // executed, but the reply is lost
  uint16_t corrupt_reply = 0;    // one byte of the reply flipped on the way out
  uint16_t duplicate_reply = 0;  // the reply arrives twice
  uint16_t delay_reply = 0;      // the reply arrives after the next request's (reordered)
  uint16_t restart = 0;          // power glitch
  uint16_t unplug = 0;           // the cable pulled: link cut, board off for unplug_ms
  uint64_t seed = 0;
  uint16_t unplug_ms = 0;  // how long an unplugged board stays away (wall time)
  bool any() const {
    return drop_request || corrupt_request || drop_reply || corrupt_reply || duplicate_reply ||
           delay_reply || restart || unplug;
  }
};

struct SimLinkRequest {
  LinkOp op = LinkOp::kQuery;
  LinkFaults faults;  // for kSet
  std::vector<uint8_t> encode() const;
};
Decoded<SimLinkRequest> decode_sim_link_request(std::span<const uint8_t> p);

/// What the link did so far (since the board was made; restarts do not clear it).
struct SimLinkReply {
  LinkFaults faults;  // in force
  uint32_t requests_dropped = 0, requests_corrupted = 0, replies_dropped = 0, replies_corrupted = 0,
           replies_duplicated = 0, replies_delayed = 0, restarts = 0;
  // PULSE_BATCH request frames executed more than once (same bytes): a double-applied batch.
  // The protocol's retry rule makes this 0; the counter exists to prove it.
  uint32_t pulse_batches_repeated = 0;
  uint32_t unplugs = 0;  // link cuts (LinkFaults::unplug)
  std::vector<uint8_t> encode() const;
};
Decoded<SimLinkReply> decode_sim_link_reply(std::span<const uint8_t> p);

/// Helpers for the device mask of PULSE_BATCH.
inline bool mask_test(std::span<const uint8_t> mask, size_t i) {
  return (mask[i / 8] >> (i % 8)) & 1u;
}
inline void mask_set(std::span<uint8_t> mask, size_t i) {
  mask[i / 8] = static_cast<uint8_t>(mask[i / 8] | (1u << (i % 8)));
}
size_t mask_popcount(std::span<const uint8_t> mask);

}  // namespace xbar::wire
