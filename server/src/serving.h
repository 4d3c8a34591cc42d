// The checks every request that runs on a deployment's arrays makes after its waits for the
// arrays and the board (ModelService.Infer and StreamInfer, MatrixService.Multiply).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <string>

#include "deployment_states.h"
#include "xbar/drivers/board.h"

namespace xbar::server {

/// The deployment `id` as the daemon serves it: `servable` (ready or degraded, and not being
/// re-verified) or in any state. INVALID_ARGUMENT for an empty id ("give the id of `what`"),
/// NOT_FOUND naming it, FAILED_PRECONDITION/UNAVAILABLE as DeploymentStates says.
Result<DeploymentRow> find_deployment(DeploymentStates& states, const std::string& id,
                                      bool servable, std::string_view what);

/// ABORTED if deployment `id` stopped holding its arrays while the request waited (replaced,
/// deleted, made stale), UNAVAILABLE while it is re-verified; OK when it may run.
grpc::Status still_servable(DeploymentStates& states, const std::string& id);

/// UNAVAILABLE if the board's epoch moved from `epoch` (a restart or a re-opened link) while
/// deployment `id` ran: the answer is discarded.
grpc::Status board_restarted_during(DeploymentStates& states, const BoardInfo& info, uint64_t epoch,
                                    const std::string& id);

}  // namespace xbar::server
