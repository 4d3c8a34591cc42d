// What callers see of a deployment: the chip record's row, corrected by what only the running
// daemon knows, and the one check every request that runs on the arrays makes (docs/record.md,
// "Deployment states while serving").
//
// Two things the record cannot say:
//   - A state whose write failed (a full or failing disk): a deploy that failed is `failed` to
//     every caller, though the record still says `deploying`; the start-up reconciliation makes
//     the record agree after a restart.
//   - Whether the board is the board the record describes. Every board restart or re-opened
//     link (the driver's epoch) may have lost what the arrays held: the twin restarted as a new
//     process, a board power-cycled or swapped for one with the same serial. From then until the
//     arrays have been read back (reverify), every ready or degraded deployment is `verifying`
//     and nothing runs on the board's arrays in its name.
//
// Thread-safe: every method may be called from any thread.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "chip_record.h"
#include "reconcile.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"

namespace xbar::server {

class DeploymentStates {
 public:
  /// Both borrowed; they must outlive this. The board is taken as verified now (xbard
  /// reconciles the record with the arrays before it constructs this).
  DeploymentStates(Board& board, ChipRecord& record);

  /// The row as callers must see it (see the file comment). kNotFound for an unknown id.
  Result<DeploymentRow> get(std::string_view id);
  /// The same correction for a row read in a list.
  void correct(DeploymentRow& row) const;

  /// A state the record could not take (its write failed): callers see it instead of the
  /// record's `deploying` until the daemon restarts.
  void remember_unrecorded(const std::string& id, DeploymentState state,
                           const std::string& message);

  /// Whether the arrays were read back since the board last restarted or was re-opened.
  bool board_verified() const;
  /// The driver's epoch as last verified (compare with a later one: a change means the board
  /// restarted in between).
  uint64_t verified_epoch() const { return verified_epoch_.load(); }
  uint64_t board_epoch() const;

  /// The deployment if something may run on its arrays now: kUnavailable while the board is
  /// being re-verified (retry), kFailedPrecondition unless ready or degraded (the message says
  /// its state and why).
  Result<DeploymentRow> servable(std::string_view id);

  /// If the board restarted since the last verification: takes every array exclusively and the
  /// board (waiting behind what runs), reads the arrays back as the start-up reconciliation
  /// does, records the outcome, and marks the board verified at the epoch it read at. Returns
  /// the outcomes (empty when nothing was needed).
  /// \context Any thread that holds no array lock and no board turn: it takes all of them, so
  /// a caller holding one would wait for itself.
  Result<std::vector<ReconcileOutcome>> reverify_if_needed(Scheduler& sched, double tol_uS,
                                                           const WaitLimits& limits);

 private:
  Board& board_;
  ChipRecord& record_;
  std::atomic<uint64_t> verified_epoch_;
  std::mutex reverify_mu_;  // one re-verification at a time
  mutable std::mutex mu_;
  std::map<std::string, std::pair<DeploymentState, std::string>> unrecorded_;  // id -> state, why
};

}  // namespace xbar::server
