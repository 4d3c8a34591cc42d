// Running loaded loop programs: on the board (LOOP_RUN blocks) or host-stepped (one tagged VMM
// per step and program, the step arithmetic on the host). Both hide the one-step output lag
// of the crossbar (eq. 7) when asked, and return bit-identical codes on the twin.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/wire/loop.h"

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

/// The reference: the same run with one VMM per step and program (tagged with the loop's noise
/// key) and the step arithmetic of docs/firmware.md §6 on the host.
Result<LoopRunResult> run_host_stepped(Board& board, const std::vector<wire::LoopProgram>& programs,
                                       std::span<const int16_t> inputs, size_t steps,
                                       uint32_t noise_tag, bool align = true);

}  // namespace xbar
