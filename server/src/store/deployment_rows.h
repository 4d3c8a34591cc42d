// Reading and checking deployment rows, shared by deployments.cc and retention.cc: the
// columns a deployment is read with, the row -> DeploymentRow conversion, and the checks of an
// id and a state. Internal to server/src/store/.
#pragma once

#include <string_view>

#include "chip_record.h"
#include "store/sqlite.h"

namespace xbar::server::store {

// The columns read_deployment() takes, in its order; without the blob, an empty BLOB stands in
// for it.
inline constexpr const char* kDeploymentColumns =
    "id, serial, name, state, message, created_at_ms, updated_at_ms, archived_at_ms, blob";
inline constexpr const char* kDeploymentColumnsNoBlob =
    "id, serial, name, state, message, created_at_ms, updated_at_ms, archived_at_ms, x''";

/// The arrays of one deployment (bound to its id), for read_arrays.
inline constexpr const char* kArraysOfDeployment =
    "SELECT array FROM deployment_arrays WHERE id = ? ORDER BY array";

/// kInvalidArgument unless 1..128 bytes.
Result<void> check_deployment_id(std::string_view id, std::string_view what);
/// kInvalidArgument unless one of deploying, ready, degraded, failed, stale, lost.
Result<void> check_deployment_state(DeploymentState state, std::string_view what);

/// One row of a SELECT of kDeploymentColumns (or kDeploymentColumnsNoBlob), without its
/// arrays.
Result<DeploymentRow> read_deployment(const Stmt& s, std::string_view what);

/// Fills d.arrays with `arrays` (a statement of kArraysOfDeployment), which it leaves reset.
Result<void> read_arrays(Stmt& arrays, DeploymentRow& d, std::string_view what);

}  // namespace xbar::server::store
