#include "deployment_state.h"

#include <array>
#include <string>
#include <utility>

#include "xbar/v1/kernels.pb.h"

namespace xbar::server {
namespace {

constexpr std::array<std::pair<DeploymentState, std::string_view>, 7> kNames = {{
    {DeploymentState::kDeploying, "deploying"},
    {DeploymentState::kReady, "ready"},
    {DeploymentState::kDegraded, "degraded"},
    {DeploymentState::kFailed, "failed"},
    {DeploymentState::kStale, "stale"},
    {DeploymentState::kLost, "lost"},
    {DeploymentState::kVerifying, "verifying"},
}};

}  // namespace

std::string_view name(DeploymentState s) {
  for (const auto& [state, word] : kNames) {
    if (state == s) return word;
  }
  return "unknown";
}

std::optional<DeploymentState> parse_deployment_state(std::string_view word) {
  for (const auto& [state, w] : kNames) {
    if (w == word) return state;
  }
  return std::nullopt;
}

std::string_view recorded_state_names() {
  return "deploying, ready, degraded, failed, stale, lost";
}

v1::DeploymentState to_proto(DeploymentState s) {
  switch (s) {
    case DeploymentState::kDeploying:
      return v1::DEPLOYMENT_STATE_DEPLOYING;
    case DeploymentState::kReady:
      return v1::DEPLOYMENT_STATE_READY;
    case DeploymentState::kDegraded:
      return v1::DEPLOYMENT_STATE_DEGRADED;
    case DeploymentState::kFailed:
      return v1::DEPLOYMENT_STATE_FAILED;
    case DeploymentState::kStale:
      return v1::DEPLOYMENT_STATE_STALE;
    case DeploymentState::kLost:
      return v1::DEPLOYMENT_STATE_LOST;
    case DeploymentState::kVerifying:
      return v1::DEPLOYMENT_STATE_VERIFYING;
  }
  return v1::DEPLOYMENT_STATE_UNSPECIFIED;
}

void set_state(v1::Deployment& d, DeploymentState s) {
  d.set_state(std::string(name(s)));
  d.set_state_code(to_proto(s));
}

}  // namespace xbar::server
