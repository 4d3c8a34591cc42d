#include "xbar/drivers/loop_runner.h"

#include <fmt/format.h>

#include <algorithm>

namespace xbar {

namespace {

size_t total_taps(const std::vector<wire::LoopProgram>& programs) {
  size_t n = 0;
  for (const wire::LoopProgram& p : programs) n += p.taps.size();
  return n;
}
size_t total_outputs(const std::vector<wire::LoopProgram>& programs) {
  size_t n = 0;
  for (const wire::LoopProgram& p : programs) n += p.outputs.size();
  return n;
}

// The inputs with one zero step appended when aligning.
std::vector<int16_t> padded(std::span<const int16_t> inputs, size_t n_in, bool align) {
  std::vector<int16_t> out(inputs.begin(), inputs.end());
  if (align) out.resize(out.size() + n_in, 0);
  return out;
}

Result<void> check_inputs(std::span<const int16_t> inputs, size_t steps, size_t n_in) {
  if (steps == 0 || inputs.size() != steps * n_in) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("loop: {} input codes for {} steps x {} taps", inputs.size(), steps, n_in));
  }
  if (steps + 1 > wire::kMaxLoopRunSteps) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("loop: {} steps: allowed 1..{}",
                                                               steps, wire::kMaxLoopRunSteps - 1));
  }
  return {};
}

// Best effort after a failed block: never leave a run open behind an error. Its own result does
// not matter: the caller reports the error that stopped the run.
void close_run(Board& board) {
  if (auto a = board.abort(); !a) return;
}

void drop_first_step(LoopRunResult& r, bool align) {
  if (!align) return;
  r.outputs.erase(r.outputs.begin(),
                  r.outputs.begin() + static_cast<ptrdiff_t>(r.outputs_per_step));
  r.steps -= 1;
}

}  // namespace

Result<LoopRunResult> run_loop(Board& board, const std::vector<wire::LoopProgram>& programs,
                               uint16_t max_block, std::span<const int16_t> inputs, size_t steps,
                               uint32_t noise_tag, bool align) {
  const size_t n_in = total_taps(programs), n_out = total_outputs(programs);
  if (auto c = check_inputs(inputs, steps, n_in); !c) return std::unexpected(c.error());
  if (max_block == 0) return make_error(ErrorCode::kInvalidArgument, "loop: max_block is 0");
  const std::vector<int16_t> in = padded(inputs, n_in, align);
  const size_t total = steps + (align ? 1 : 0);
  LoopRunResult res;
  res.outputs_per_step = n_out;
  res.outputs.reserve(total * n_out);
  uint32_t block = 0;
  for (size_t start = 0; start < total; start += max_block, ++block) {
    const size_t k = std::min<size_t>(max_block, total - start);
    wire::LoopRunRequest q;
    q.flags = static_cast<uint8_t>((start == 0 ? wire::kLoopFirst : 0) |
                                   (start + k == total ? wire::kLoopLast : 0));
    q.n_steps = static_cast<uint16_t>(k);
    q.block_index = block;
    q.noise_tag = noise_tag;
    q.inputs.assign(in.begin() + static_cast<ptrdiff_t>(start * n_in),
                    in.begin() + static_cast<ptrdiff_t>((start + k) * n_in));
    auto r = board.loop_run(q);
    ++res.transactions;
    if (!r) {
      if (start + k != total) close_run(board);
      return std::unexpected(r.error());
    }
    if (r->n_steps != k || r->outputs.size() != k * n_out) {
      close_run(board);
      return make_error(ErrorCode::kProtocol,
                        fmt::format("LOOP_RUN block {}: {} outputs, expected {}", block,
                                    r->outputs.size(), k * n_out));
    }
    res.outputs.insert(res.outputs.end(), r->outputs.begin(), r->outputs.end());
  }
  res.steps = total;
  drop_first_step(res, align);
  return res;
}

HostSteppedRun::HostSteppedRun(std::vector<wire::LoopProgram> programs, uint32_t noise_tag)
    : programs_(std::move(programs)), noise_op_(wire::loop_noise_op(noise_tag)) {
  state_.reserve(programs_.size());
  for (const wire::LoopProgram& p : programs_) state_.emplace_back(p);
  n_in_ = total_taps(programs_);
  n_out_ = total_outputs(programs_);
}

Result<void> HostSteppedRun::step(Board& board, std::span<const int16_t> inputs, size_t steps,
                                  std::vector<int32_t>& outputs) {
  if (inputs.size() != steps * n_in_) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("loop: {} input codes for {} steps x {} taps", inputs.size(), steps, n_in_));
  }
  if (next_step_ + steps >= wire::kMaxLoopRunSteps) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("loop: {} steps after {}: a run is allowed up to {} steps", steps,
                                  next_step_, wire::kMaxLoopRunSteps - 1));
  }
  const auto rows = static_cast<size_t>(board.info().rows);
  std::vector<uint8_t> m(rows);
  std::vector<int32_t> out(steps * n_out_);
  // The call is all or nothing: the state and step counter move only once every step's VMM
  // came back, so a caller may repeat a call that failed (a board restart) from where it began.
  std::vector<wire::LoopState> state = state_;
  size_t in_at = 0, out_at = 0;
  for (size_t t = 0; t < steps; ++t) {
    for (size_t k = 0; k < programs_.size(); ++k) {
      const wire::LoopProgram& p = programs_[k];
      wire::loop_rows(p, inputs.subspan(in_at, p.taps.size()), state[k], m);
      auto acc = board.vmm_tagged(p.array, m, p.gain_index, noise_op_,
                                  static_cast<uint32_t>(next_step_ + t));
      ++transactions_;
      if (!acc) return std::unexpected(acc.error());
      wire::loop_update(p, *acc, m, state[k], std::span(out).subspan(out_at, p.outputs.size()));
      in_at += p.taps.size();
      out_at += p.outputs.size();
    }
  }
  state_ = std::move(state);
  next_step_ += static_cast<uint32_t>(steps);
  outputs.insert(outputs.end(), out.begin(), out.end());
  return {};
}

Result<LoopRunResult> run_host_stepped(Board& board, const std::vector<wire::LoopProgram>& programs,
                                       std::span<const int16_t> inputs, size_t steps,
                                       uint32_t noise_tag, bool align) {
  const size_t n_in = total_taps(programs), n_out = total_outputs(programs);
  if (auto c = check_inputs(inputs, steps, n_in); !c) return std::unexpected(c.error());
  const std::vector<int16_t> in = padded(inputs, n_in, align);
  HostSteppedRun run(programs, noise_tag);
  LoopRunResult res;
  res.outputs_per_step = n_out;
  res.steps = steps + (align ? 1 : 0);
  res.outputs.reserve(res.steps * n_out);
  auto r = run.step(board, in, res.steps, res.outputs);
  res.transactions = run.transactions();
  if (!r) return std::unexpected(r.error());
  drop_first_step(res, align);
  return res;
}

}  // namespace xbar
