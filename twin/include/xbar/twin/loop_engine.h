// The board's closed loop (docs/protocol.md §4.10, docs/firmware.md §6): the loaded programs and
// the one open run, block by block, each step one VMM per program on the chip with the step
// arithmetic of wire/loop_program.h. A run belongs to the session that opened it; while it is
// open the Firmware serves that session's LOOP_RUN blocks, STATUS and ABORT only.
//
// Not thread-safe: the Firmware that owns it serialises every call.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include "xbar/twin/chip.h"
#include "xbar/twin/profile.h"
#include "xbar/wire/loop_program.h"
#include "xbar/wire/messages.h"

namespace xbar::twin {

/// Why a loop request is refused: the error reply's code and message (naming the field).
struct LoopRefusal {
  wire::BoardErrorCode code;
  std::string message;
};

class LoopEngine {
 public:
  /// LOOP_LOAD of programs the caller checked (wire::check_loop_programs); returns the largest
  /// block a LOOP_RUN may ask for.
  uint16_t load(std::vector<wire::LoopProgram> programs);
  /// LOOP_RUN from `session`: the block is checked against the programs and the open run
  /// before anything runs; then its steps run on `chip`, whose clock advances by their time.
  std::expected<wire::LoopRunReply, LoopRefusal> run(uint32_t session,
                                                     const wire::LoopRunRequest& q, Chip& chip,
                                                     const ChipProfile& p);
  /// ABORT: closes an open run (its next block is refused as aborted); true if one was open.
  bool abort();
  /// A board restart: the programs and any open run are gone.
  void reset();

  bool run_open() const { return run_open_; }
  /// The session whose run is open.
  uint32_t owner() const { return run_owner_; }

 private:
  std::expected<void, LoopRefusal> check_block(const wire::LoopRunRequest& q, size_t n_in) const;
  std::expected<void, LoopRefusal> check_resume_state(const wire::LoopRunRequest& q) const;
  void open_run(uint32_t session, const wire::LoopRunRequest& q, uint32_t steps_before);
  void snapshot(wire::LoopRunReply& r) const;

  std::vector<wire::LoopProgram> programs_;
  uint16_t max_steps_ = 0;
  bool run_open_ = false;
  bool run_aborted_ = false;  // the last run was stopped by ABORT
  uint32_t run_owner_ = 0;
  uint32_t run_next_block_ = 0;
  uint32_t run_tag_ = 0;
  uint32_t run_steps_ = 0;                  // steps run so far in the open run
  std::vector<wire::LoopState> run_state_;  // per program
};

}  // namespace xbar::twin
