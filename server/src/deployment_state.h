// A deployment's state: the one closed set, its names (the chip record's `state` column and
// Deployment.state's words) and its proto enum (Deployment.state_code). docs/record.md says what
// each state means and which transitions happen.
#pragma once

#include <optional>
#include <string_view>

namespace xbar::v1 {
// kernels.pb.h; declared here so that the chip record needs no generated header.
enum DeploymentState : int;
class Deployment;
}  // namespace xbar::v1

namespace xbar::server {

enum class DeploymentState {
  kDeploying,  // recorded before the first pulse; the outcome replaces it
  kReady,      // programmed and verified: runs on the board
  kDegraded,   // programmed with devices off target, or a check found drift: still runs
  kFailed,     // the deploy failed or was cancelled; owns no array
  kStale,      // replaced by a later deployment on its arrays; owns no array
  kLost,       // the arrays no longer hold it (read back at start or after a board restart)
  kVerifying,  // never recorded: the board restarted and its arrays are being read back
};

/// Every state, in declaration order.
inline constexpr DeploymentState kDeploymentStates[] = {
    DeploymentState::kDeploying, DeploymentState::kReady, DeploymentState::kDegraded,
    DeploymentState::kFailed,    DeploymentState::kStale, DeploymentState::kLost,
    DeploymentState::kVerifying};

/// The lowercase word: "deploying", "ready", …, "verifying".
std::string_view name(DeploymentState s);

/// The state a word names, or nullopt (the words are exactly name()'s, case-sensitive).
std::optional<DeploymentState> parse_deployment_state(std::string_view word);

/// "deploying, ready, degraded, failed, stale, lost": the states the record stores, for errors.
std::string_view recorded_state_names();

/// Whether a deployment in this state owns its arrays and may run on them (ready, degraded).
constexpr bool runs_on_board(DeploymentState s) {
  return s == DeploymentState::kReady || s == DeploymentState::kDegraded;
}

/// Whether it still owns its arrays or will (deploying, ready, degraded): never archived.
constexpr bool is_active(DeploymentState s) {
  return s == DeploymentState::kDeploying || runs_on_board(s);
}

/// Deployment.state_code (kernels.proto).
v1::DeploymentState to_proto(DeploymentState s);

/// Sets both Deployment.state (the word) and Deployment.state_code.
void set_state(v1::Deployment& d, DeploymentState s);

}  // namespace xbar::server
