// Crash recovery: on start, xbard compares what the chip record says the arrays hold with what
// they read back, before it serves (docs/record.md, "Reconciliation at start").
#pragma once

#include <string>
#include <vector>

#include "chip_record.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"

namespace xbar::server {

struct ReconcileOutcome {
  std::string id;
  DeploymentState before, after;
  std::string message;  // what was measured (recorded as the deployment's message)
};

/// For every deployment of the attached chip:
/// - `deploying` (the daemon stopped mid-deploy; never verified) -> `failed`, "interrupted";
/// - `ready` / `degraded`: each of its arrays is read (verify gain, 16 reads averaged) and the
///   kernel's fidelity NRMSE through what the array holds now is computed, as the deploy's
///   verify did. NRMSE >= 1 (no better than no kernel) or a recurrence that became unstable,
///   where the deploy had neither -> `lost` (the arrays no longer hold it); NRMSE above max(1.5 x,
///   +0.05) the deploy's -> `degraded`; else it stays as it was. The figures (NRMSE now and at
///   deploy, spectral radius, RMS difference from the verified conductances) go into its message;
/// - `failed`, `stale`, `lost`: left alone.
/// Reads only: nothing is pulsed. Errors (a board that does not answer) leave the states as
/// they were. `when` says in the messages when this was ("at start", "after a board restart").
/// `at_start`: true at start (a `deploying` row is a deploy that died with the daemon);
/// true while serving, where a running deploy holds its arrays and is not touched (the caller
/// holds every array exclusively, so a `deploying` row there is one whose failure could not be
/// recorded: left alone too).
Result<std::vector<ReconcileOutcome>> reconcile_deployments(Board& board, ChipRecord& record,
                                                            double tol_uS,
                                                            const std::string& when = "at start",
                                                            bool at_start = true);

}  // namespace xbar::server
