// LOOP_LOAD / LOOP_RUN (docs/protocol.md §4.10): the closed-loop program of each array, the
// block messages, and the step arithmetic of docs/firmware.md §6, shared by the twin's firmware
// and the host's host-stepped reference so that both compute bit for bit the same codes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xbar/wire/messages.h"

namespace xbar::wire {

inline constexpr int kMaxLoopTaps = 8;
inline constexpr int kMaxLoopRoutes = 32;
inline constexpr int kMaxLoopOutputs = 8;
inline constexpr int kMaxLoopFixes = 512;
inline constexpr size_t kMaxLoopPayload = 65536;
inline constexpr uint32_t kMaxLoopRunSteps = 1u << 21;  // noise keying: step index < 2^21

struct LoopTap {  // one input code per step -> a differential row pair
  uint8_t row_pos = 0, row_neg = 0;
  int16_t mul = 1;
  uint8_t shift = 0;
  bool operator==(const LoopTap&) const = default;
};
struct LoopRoute {  // a differential column pair -> a differential row pair, next step
  uint8_t col_pos = 0, col_neg = 0, row_pos = 0, row_neg = 0;
  int16_t mul = 1;
  uint8_t shift = 0;
  bool operator==(const LoopRoute&) const = default;
};
struct LoopOutput {  // a differential column pair returned to the host
  uint8_t col_pos = 0, col_neg = 0;
  bool operator==(const LoopOutput&) const = default;
};
/// A device whose conductance is known to be off its target (stuck, or abandoned by
/// program-verify): each step the board takes its excess charge, rshift_round(m[row] * mul,
/// shift) accumulator codes, out of column `col` before the pairs are differenced (docs/
/// firmware.md §7, "Device fixes").
struct LoopFix {
  uint8_t row = 0, col = 0;
  int16_t mul = 0;
  uint8_t shift = 0;
  bool operator==(const LoopFix&) const = default;
};
/// LoopProgram::flags bit 0: each route carries its rounding residual into the next step
/// (docs/firmware.md §7, "Error feedback"), so a slow mode decays instead of stalling in the
/// 8-bit state's dead band. The residual is part of the run's state (RESUME/SNAPSHOT).
inline constexpr uint16_t kLoopErrorFeedback = 0x0001;
/// LoopProgram::flags bit 1: the program carries device fixes (LoopProgram::fixes).
inline constexpr uint16_t kLoopDeviceFixes = 0x0002;

struct LoopProgram {
  uint8_t array = 0;
  uint8_t gain_index = 0;
  uint8_t clamp = 127;  // largest row magnitude, 1..255
  uint16_t flags = 0;   // kLoopErrorFeedback | kLoopDeviceFixes
  std::vector<LoopTap> taps;
  std::vector<LoopRoute> routes;
  std::vector<LoopOutput> outputs;
  std::vector<LoopFix> fixes;  // with kLoopDeviceFixes (only then encoded)
  bool operator==(const LoopProgram&) const = default;
};

struct LoopLoadRequest {
  std::vector<LoopProgram> programs;  // arrays strictly increasing
  std::vector<uint8_t> encode() const;
};
Decoded<LoopLoadRequest> decode_loop_load_request(std::span<const uint8_t> p);

/// Checks a program set against the geometry; the message names the program, the entry and
/// the field (OUT_OF_RANGE on the board).
std::string check_loop_programs(const std::vector<LoopProgram>& programs, int arrays, int rows,
                                int cols, int n_gains);

/// The largest K for which both LOOP_RUN frames of this program set fit (capped at 4096).
uint16_t loop_max_block_steps(const std::vector<LoopProgram>& programs);

struct LoopLoadReply {
  uint16_t max_block_steps = 0;
  std::vector<uint8_t> encode() const;
};
Decoded<LoopLoadReply> decode_loop_load_reply(std::span<const uint8_t> p);

inline constexpr uint8_t kLoopFirst = 0x01;
inline constexpr uint8_t kLoopLast = 0x02;
/// With FIRST: the run starts from `state` at step `start_step` instead of 0 at step 0 (a
/// context switch back in; capability bit 2, docs/protocol.md §4.10).
inline constexpr uint8_t kLoopResume = 0x04;
/// The reply carries the run state after the block (the context to switch back in later).
inline constexpr uint8_t kLoopSnapshot = 0x08;

struct LoopRunRequest {
  uint8_t flags = 0;
  uint16_t n_steps = 0;
  uint32_t block_index = 0;
  uint32_t noise_tag = 0;       // FIRST: the run's noise key on the twin (a real board ignores it)
  uint32_t start_step = 0;      // RESUME: the run's step index of this block's first step
  std::vector<int16_t> state;   // RESUME: the state codes, for program (array order), for route
  std::vector<int16_t> inputs;  // step-major: for t, for program, for tap
  std::vector<uint8_t> encode() const;
};
Decoded<LoopRunRequest> decode_loop_run_request(std::span<const uint8_t> p);

struct LoopRunReply {
  uint8_t flags = 0;
  uint8_t run_open = 0;
  uint16_t n_steps = 0;
  uint32_t block_index = 0;
  uint32_t next_step = 0;        // SNAPSHOT: the run's step index after this block
  std::vector<int16_t> state;    // SNAPSHOT: the state after this block, as in a RESUME block
  std::vector<int32_t> outputs;  // step-major: for t, for program, for output pair
  std::vector<uint8_t> encode() const;
};
Decoded<LoopRunReply> decode_loop_run_reply(std::span<const uint8_t> p);

/// The noise key of step t of a run on the twin: a VMM with op_id loop_noise_op(tag) and
/// vector index t draws exactly the noise of that step (docs/firmware.md §6).
inline uint64_t loop_noise_op(uint32_t noise_tag) { return (uint64_t{1} << 63) | noise_tag; }

/// sign(q) * ((|q| + 2^(s-1)) >> s): round half away from zero; s = 0 returns q.
int64_t rshift_round(int64_t q, unsigned s);

/// The run state of one program: the state codes, one per route (the previous step's).
struct LoopState {
  std::vector<int32_t> x;
  // With kLoopErrorFeedback: per route, the last rounding residual in units of
  // 2^max(shift - 8, 0) of the product d * mul (|e| <= 128); zero otherwise.
  std::vector<int32_t> e;
  explicit LoopState(const LoopProgram& p) : x(p.routes.size(), 0), e(p.routes.size(), 0) {}
};

/// State codes per program in RESUME/SNAPSHOT: x of every route, then (error feedback) e.
inline size_t loop_state_codes(const LoopProgram& p) {
  return p.routes.size() * ((p.flags & kLoopErrorFeedback) ? 2 : 1);
}

/// The row magnitudes of one step of one program from its inputs (one code per tap) and
/// state. `m` has `rows` entries, zeroed first.
void loop_rows(const LoopProgram& prog, std::span<const int16_t> inputs, const LoopState& state,
               std::span<uint8_t> m);

/// From the step's VMM accumulators (`acc`, cols entries) and the row magnitudes it was driven
/// with (`m`, for the device fixes): the new state (one per route, saturated to +-clamp) and the
/// outputs (one per output pair).
void loop_update(const LoopProgram& prog, std::span<const uint32_t> acc, std::span<const uint8_t> m,
                 LoopState& state, std::span<int32_t> outputs);

}  // namespace xbar::wire
