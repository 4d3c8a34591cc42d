#include "serving.h"

#include <fmt/format.h>

#include "status.h"

namespace xbar::server {

Result<DeploymentRow> find_deployment(DeploymentStates& states, const std::string& id,
                                      bool servable, std::string_view what) {
  if (id.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("deployment: empty: give the id of {} (dep-...)", what));
  }
  auto row = servable ? states.servable(id) : states.get(id);
  if (!row && row.error().code == ErrorCode::kNotFound) {
    return make_error(ErrorCode::kNotFound,
                      fmt::format("deployment = '{}': no such deployment", id));
  }
  return row;
}

grpc::Status still_servable(DeploymentStates& states, const std::string& id) {
  auto row = states.servable(id);
  if (row) return grpc::Status::OK;
  switch (row.error().code) {
    case ErrorCode::kFailedPrecondition:
      return {grpc::StatusCode::ABORTED,
              fmt::format("deployment {} changed while this request waited for its arrays: {}", id,
                          row.error().message)};
    case ErrorCode::kNotFound:
      return {
          grpc::StatusCode::ABORTED,
          fmt::format("deployment {} was deleted while this request waited for its arrays", id)};
    default:
      return to_status(row.error());
  }
}

grpc::Status board_restarted_during(DeploymentStates& states, const BoardInfo& info, uint64_t epoch,
                                    const std::string& id) {
  if (states.board_epoch() == epoch) return grpc::Status::OK;
  return {grpc::StatusCode::UNAVAILABLE,
          fmt::format("board {} restarted (or its link was re-opened) while deployment {} ran: "
                      "the answer is discarded, and the deployment serves again once its arrays "
                      "are read back; retry",
                      info.serial, id)};
}

}  // namespace xbar::server
