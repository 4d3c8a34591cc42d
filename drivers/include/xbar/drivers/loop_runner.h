// Running loaded loop programs: on the board (LOOP_RUN blocks) or host-stepped (one tagged VMM
// per step and program, the step arithmetic on the host). Both hide the one-step output lag
// of the crossbar (eq. 7) when asked, and return bit-identical codes on the twin.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/wire/loop_program.h"

namespace xbar {

struct LoopRunResult {
  std::vector<int32_t> outputs;  // steps x sum(n_out), step-major, program-major within a step
  size_t steps = 0;
  size_t outputs_per_step = 0;
  int transactions = 0;
};

/// Runs `steps` steps of the programs loaded with Board::loop_load (the same `programs`,
/// `max_block` its reply) as one run. `inputs` has steps x sum(n_in) codes. With `align`, one
/// more step with zero inputs is run and the first step's outputs are dropped, so outputs[t]
/// belong to input t. `noise_tag` keys the twin's noise for this run.
Result<LoopRunResult> run_loop(Board& board, const std::vector<wire::LoopProgram>& programs,
                               uint16_t max_block, std::span<const int16_t> inputs, size_t steps,
                               uint32_t noise_tag, bool align = true);

/// A host-stepped run (the reference of run_loop) that stays open across calls: each step is
/// one VMM per program on the board, tagged with the loop's noise key and the step index, and
/// the step's arithmetic (row magnitudes, device fixes, rounding, error feedback; docs/
/// firmware.md §7) on the host with wire::loop_rows/loop_update, the functions the twin's
/// firmware runs. The state codes, residuals and step counter live here, so a stream fed in
/// chunks gets bit for bit the codes of one long run. Nothing is loaded on the board and the
/// board is free between calls. Not thread-safe; the caller has the board to itself during
/// step().
class HostSteppedRun {
 public:
  HostSteppedRun(std::vector<wire::LoopProgram> programs, uint32_t noise_tag);
  /// Runs `steps` steps with `inputs` (steps x inputs_per_step() codes) and appends steps x
  /// outputs_per_step() output codes to `outputs`. kInvalidArgument for a size mismatch or a run
  /// past wire::kMaxLoopRunSteps. All or nothing: after an error the run is where the call
  /// found it, so the call can be repeated.
  Result<void> step(Board& board, std::span<const int16_t> inputs, size_t steps,
                    std::vector<int32_t>& outputs);
  size_t inputs_per_step() const { return n_in_; }
  size_t outputs_per_step() const { return n_out_; }
  uint32_t next_step() const { return next_step_; }
  int transactions() const { return transactions_; }

 private:
  std::vector<wire::LoopProgram> programs_;
  std::vector<wire::LoopState> state_;
  uint64_t noise_op_;
  size_t n_in_ = 0, n_out_ = 0;
  uint32_t next_step_ = 0;
  int transactions_ = 0;
};

/// The reference: the same run with one VMM per step and program (tagged with the loop's noise
/// key) and the step arithmetic of docs/firmware.md §7 on the host (HostSteppedRun).
Result<LoopRunResult> run_host_stepped(Board& board, const std::vector<wire::LoopProgram>& programs,
                                       std::span<const int16_t> inputs, size_t steps,
                                       uint32_t noise_tag, bool align = true);

}  // namespace xbar
