// Reading and checking deployment rows (see deployment_rows.h).
#include "store/deployment_rows.h"

#include <fmt/format.h>

#include <optional>
#include <string>

#include "store/common.h"

namespace xbar::server::store {
namespace {

constexpr size_t kMaxDeploymentId = 128;

}  // namespace

Result<void> check_deployment_id(std::string_view id, std::string_view what) {
  if (id.empty() || id.size() > kMaxDeploymentId)
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("{}: id: length {} out of range 1..{}", what, id.size(), kMaxDeploymentId));
  return {};
}

Result<void> check_deployment_state(DeploymentState state, std::string_view what) {
  if (state != DeploymentState::kVerifying) return {};
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: state: '{}' is never recorded (the record holds {})", what,
                                name(state), recorded_state_names()));
}

Result<DeploymentRow> read_deployment(const Stmt& s, std::string_view what) {
  const auto blob = s.blob(8);
  const std::string word = s.text(3);
  const std::optional<DeploymentState> state = parse_deployment_state(word);
  if (!state || *state == DeploymentState::kVerifying) {
    return std::unexpected(corrupt(what, fmt::format("deployment {} has state '{}', not one of {}",
                                                     s.text(0), word, recorded_state_names())));
  }
  return DeploymentRow{
      .id = s.text(0),
      .serial = s.text(1),
      .name = s.text(2),
      .state = *state,
      .message = s.text(4),
      .created_at_ms = s.int64(5),
      .updated_at_ms = s.int64(6),
      .archived_at_ms = s.is_null(7) ? 0 : s.int64(7),
      .blob = blob.empty() ? std::string()
                           : std::string(reinterpret_cast<const char*>(blob.data()), blob.size())};
}

Result<void> read_arrays(Stmt& arrays, DeploymentRow& d, std::string_view what) {
  arrays.bind(1, d.id);
  for (;;) {
    auto row = arrays.step(what);
    if (!row) {
      arrays.reset();
      return std::unexpected(row.error());
    }
    if (!*row) break;
    d.arrays.push_back(static_cast<int>(arrays.int64(0)));
  }
  arrays.reset();
  return {};
}

}  // namespace xbar::server::store
