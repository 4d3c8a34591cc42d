#include "xbar/twin/loop_engine.h"

#include <fmt/format.h>

#include <cstdlib>
#include <span>

namespace xbar::twin {
namespace {

std::unexpected<LoopRefusal> refuse(wire::BoardErrorCode code, std::string message) {
  return std::unexpected(LoopRefusal{code, std::move(message)});
}

}  // namespace

uint16_t LoopEngine::load(std::vector<wire::LoopProgram> programs) {
  programs_ = std::move(programs);
  max_steps_ = wire::loop_max_block_steps(programs_);
  run_aborted_ = false;
  return max_steps_;
}

bool LoopEngine::abort() {
  const bool was = run_open_;
  if (run_open_) run_aborted_ = true;
  run_open_ = false;
  return was;
}

void LoopEngine::reset() {
  programs_.clear();
  max_steps_ = 0;
  run_open_ = false;
  run_aborted_ = false;
  run_owner_ = 0;
  run_state_.clear();
}

// The block against the loaded programs and the open run (FIRST, RESUME, block order).
std::expected<void, LoopRefusal> LoopEngine::check_block(const wire::LoopRunRequest& q,
                                                         size_t n_in) const {
  using wire::BoardErrorCode;
  if (programs_.empty()) {
    return refuse(BoardErrorCode::kOutOfRange, "LOOP_RUN: no loop program loaded");
  }
  if (q.n_steps < 1 || q.n_steps > max_steps_) {
    return refuse(BoardErrorCode::kOutOfRange,
                  fmt::format("LOOP_RUN.n_steps = {}: allowed 1..{}", q.n_steps, max_steps_));
  }
  if (q.inputs.size() != size_t{q.n_steps} * n_in) {
    return refuse(BoardErrorCode::kBadLength,
                  fmt::format("LOOP_RUN: {} input codes, n_steps = {} x {} taps needs {}",
                              q.inputs.size(), q.n_steps, n_in, size_t{q.n_steps} * n_in));
  }
  const bool first = q.flags & wire::kLoopFirst;
  const bool resume = q.flags & wire::kLoopResume;
  if (resume && !first) {
    return refuse(BoardErrorCode::kOutOfRange, "LOOP_RUN: RESUME is only allowed on a FIRST block");
  }
  if (first) {
    if (run_open_)
      return refuse(BoardErrorCode::kOutOfRange, "LOOP_RUN: FIRST while a run is open");
    if (q.block_index != 0) {
      return refuse(BoardErrorCode::kOutOfRange,
                    fmt::format("LOOP_RUN.block_index = {}: a FIRST block is 0", q.block_index));
    }
    return {};
  }
  if (!run_open_) {
    if (run_aborted_) return refuse(BoardErrorCode::kAborted, "LOOP_RUN: the run was aborted");
    return refuse(BoardErrorCode::kOutOfRange, "LOOP_RUN: no run is open (FIRST)");
  }
  if (q.block_index != run_next_block_) {
    return refuse(BoardErrorCode::kOutOfRange, fmt::format("LOOP_RUN.block_index = {}: expected {}",
                                                           q.block_index, run_next_block_));
  }
  return {};
}

// A RESUME block's state: one code per route (two with error feedback), each within its clamp.
std::expected<void, LoopRefusal> LoopEngine::check_resume_state(
    const wire::LoopRunRequest& q) const {
  size_t n_state = 0;
  for (const wire::LoopProgram& prog : programs_) n_state += wire::loop_state_codes(prog);
  if (q.state.size() != n_state) {
    return refuse(wire::BoardErrorCode::kOutOfRange,
                  fmt::format("LOOP_RUN.n_state = {}: the loaded programs have {} state codes "
                              "(one per route, two with error feedback)",
                              q.state.size(), n_state));
  }
  size_t at = 0;
  for (const wire::LoopProgram& prog : programs_) {
    for (size_t i = 0; i < wire::loop_state_codes(prog); ++i, ++at) {
      const bool residual = i >= prog.routes.size();
      const int lim = residual ? 128 : prog.clamp;
      if (std::abs(int{q.state[at]}) > lim) {
        return refuse(
            wire::BoardErrorCode::kOutOfRange,
            fmt::format("LOOP_RUN.state[{}] = {}: allowed -{}..{} (program {} {})", at, q.state[at],
                        lim, lim, prog.array, residual ? "residual" : "clamp"));
      }
    }
  }
  return {};
}

void LoopEngine::open_run(uint32_t session, const wire::LoopRunRequest& q, uint32_t steps_before) {
  run_open_ = true;
  run_aborted_ = false;
  run_owner_ = session;
  run_tag_ = q.noise_tag;
  run_steps_ = steps_before;
  run_state_.clear();
  const bool resume = q.flags & wire::kLoopResume;
  size_t at = 0;
  for (const wire::LoopProgram& prog : programs_) {
    wire::LoopState& st = run_state_.emplace_back(prog);
    if (resume) {
      for (int32_t& x : st.x) x = q.state[at++];
      if (prog.flags & wire::kLoopErrorFeedback) {
        for (int32_t& e : st.e) e = q.state[at++];
      }
    }
  }
}

void LoopEngine::snapshot(wire::LoopRunReply& r) const {
  r.next_step = run_steps_;
  for (size_t k = 0; k < run_state_.size(); ++k) {
    const wire::LoopState& st = run_state_[k];
    for (int32_t x : st.x) r.state.push_back(static_cast<int16_t>(x));  // |x| <= clamp <= 255
    if (programs_[k].flags & wire::kLoopErrorFeedback) {
      for (int32_t e : st.e) r.state.push_back(static_cast<int16_t>(e));  // |e| <= 128
    }
  }
}

std::expected<wire::LoopRunReply, LoopRefusal> LoopEngine::run(uint32_t session,
                                                               const wire::LoopRunRequest& q,
                                                               Chip& chip, const ChipProfile& p) {
  size_t n_in = 0, n_out = 0;
  for (const wire::LoopProgram& prog : programs_) {
    n_in += prog.taps.size();
    n_out += prog.outputs.size();
  }
  if (auto c = check_block(q, n_in); !c) return std::unexpected(c.error());
  const bool first = q.flags & wire::kLoopFirst;
  const bool resume = q.flags & wire::kLoopResume;
  if (resume) {
    if (auto c = check_resume_state(q); !c) return std::unexpected(c.error());
  }
  const uint32_t steps_before = first ? (resume ? q.start_step : 0) : run_steps_;
  if (uint64_t{steps_before} + q.n_steps > wire::kMaxLoopRunSteps) {
    return refuse(wire::BoardErrorCode::kOutOfRange,
                  fmt::format("LOOP_RUN: a run is at most {} steps", wire::kMaxLoopRunSteps));
  }
  if (first) open_run(session, q, steps_before);

  wire::LoopRunReply r;
  r.flags = q.flags;
  r.n_steps = q.n_steps;
  r.block_index = q.block_index;
  r.outputs.resize(size_t{q.n_steps} * n_out);
  std::vector<uint8_t> m(static_cast<size_t>(p.rows));
  std::vector<uint32_t> acc(static_cast<size_t>(p.cols));
  const uint64_t noise_op = wire::loop_noise_op(run_tag_);
  size_t in_at = 0, out_at = 0;
  for (uint32_t t = 0; t < q.n_steps; ++t) {
    for (size_t k = 0; k < programs_.size(); ++k) {
      const wire::LoopProgram& prog = programs_[k];
      wire::loop_rows(prog, std::span(q.inputs).subspan(in_at, prog.taps.size()), run_state_[k], m);
      chip.vmm(prog.array, prog.gain_index, m, noise_op, acc, run_steps_ + t);
      wire::loop_update(prog, acc, m, run_state_[k],
                        std::span(r.outputs).subspan(out_at, prog.outputs.size()));
      in_at += prog.taps.size();
      out_at += prog.outputs.size();
    }
  }
  run_steps_ += q.n_steps;
  run_next_block_ = q.block_index + 1;
  chip.advance_ns(
      static_cast<uint64_t>(q.n_steps * programs_.size() * 8 * p.vmm_plane_us * 1000.0));
  if (q.flags & wire::kLoopSnapshot) snapshot(r);
  if (q.flags & wire::kLoopLast) run_open_ = false;
  r.run_open = run_open_ ? 1 : 0;
  return r;
}

}  // namespace xbar::twin
