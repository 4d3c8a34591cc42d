#include "deployment_states.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <numeric>

namespace xbar::server {

DeploymentStates::DeploymentStates(Board& board, ChipRecord& record)
    : board_(board), record_(record), verified_epoch_(board.client().epoch()) {}

uint64_t DeploymentStates::board_epoch() const { return board_.client().epoch(); }

bool DeploymentStates::board_verified() const { return board_epoch() == verified_epoch_.load(); }

void DeploymentStates::correct(DeploymentRow& row) const {
  if (row.state == DeploymentState::kDeploying) {
    std::lock_guard lk(mu_);
    if (auto it = unrecorded_.find(row.id); it != unrecorded_.end()) {
      row.state = it->second.first;
      row.message = it->second.second;
      return;
    }
  }
  if (runs_on_board(row.state) && row.serial == board_.info().serial && !board_verified()) {
    row.message = fmt::format(
        "the board restarted or its link was re-opened: its arrays are being read back before "
        "this deployment serves again (it was {})",
        name(row.state));
    row.state = DeploymentState::kVerifying;
  }
}

Result<DeploymentRow> DeploymentStates::get(std::string_view id) {
  auto row = record_.deployment(id);
  if (!row) return row;
  correct(*row);
  return row;
}

void DeploymentStates::remember_unrecorded(const std::string& id, DeploymentState state,
                                           const std::string& message) {
  std::lock_guard lk(mu_);
  unrecorded_[id] = {state, message};
}

Result<DeploymentRow> DeploymentStates::servable(std::string_view id) {
  auto row = get(id);
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return make_error(ErrorCode::kNotFound,
                        fmt::format("deployment = '{}': no such deployment", id));
    }
    return row;
  }
  if (row->state == DeploymentState::kVerifying) {
    return make_error(
        ErrorCode::kUnavailable,
        fmt::format("deployment {} is verifying: {}; retry shortly", id, row->message));
  }
  if (!runs_on_board(row->state)) {
    return make_error(
        ErrorCode::kFailedPrecondition,
        fmt::format("deployment {} is {}: {}", id, name(row->state),
                    row->message.empty() ? "its arrays do not hold it" : row->message));
  }
  return row;
}

Result<std::vector<ReconcileOutcome>> DeploymentStates::reverify_if_needed(
    Scheduler& sched, double tol_uS, const WaitLimits& limits) {
  std::lock_guard one(reverify_mu_);
  if (board_verified()) return std::vector<ReconcileOutcome>{};
  std::vector<int> all(static_cast<size_t>(board_.info().arrays));
  std::iota(all.begin(), all.end(), 0);
  // Behind whatever runs now (a stream on a restarted board fails at its next chunk, a deploy
  // finishes its program-verify from the read-back), ahead of what comes next.
  auto hold = sched.arrays.exclusive(all, limits);
  if (!hold) return std::unexpected(hold.error());
  auto turn = sched.board.acquire("xbard:reverify", limits);
  if (!turn) return std::unexpected(turn.error());
  const uint64_t epoch = board_epoch();
  spdlog::warn("board {} restarted or was re-opened (epoch {} -> {}): reading its arrays back",
               board_.info().serial, verified_epoch_.load(), epoch);
  auto out = reconcile_deployments(board_, record_, tol_uS, "after a board restart",
                                   /*at_start=*/false);
  if (!out) return out;
  // Verified as of `epoch`: a restart during the reads leaves the board unverified, and the
  // next call reads again.
  verified_epoch_.store(epoch);
  for (const ReconcileOutcome& o : *out) {
    spdlog::info("deployment {}: {} -> {} ({})", o.id, name(o.before), name(o.after), o.message);
  }
  return out;
}

}  // namespace xbar::server
