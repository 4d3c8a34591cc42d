// The chip record's deployments: the rows, which deployment owns which array of a chip, and
// reading them back (whole, listed, or paged). Retention (archiving) is in retention.cc.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <utility>

#include "chip_record.h"
#include "store/common.h"
#include "store/deployment_rows.h"
#include "store/scope.h"
#include "store/sqlite.h"

namespace xbar::server {
namespace {

using store::Stmt;

// Which other deployments lose which of `arrays` to deployment `row` (each list ascending, as
// `arrays` is).
using Taken = std::map<std::string, std::vector<int>>;

// The checks put_deployment makes before it touches the file; returns the arrays sorted.
Result<std::vector<int>> check_put(const DeploymentRow& row, std::string_view what) {
  XBAR_RETURN_IF_ERROR(store::check_deployment_id(row.id, what));
  XBAR_RETURN_IF_ERROR(store::check_deployment_state(row.state, what));
  if (row.created_at_ms < 0)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: created_at_ms: {} < 0", what, row.created_at_ms));
  std::vector<int> arrays = row.arrays;
  std::ranges::sort(arrays);
  if (auto dup = std::ranges::adjacent_find(arrays); dup != arrays.end())
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: arrays: array {} listed twice", what, *dup));
  return arrays;
}

Result<void> check_arrays_in_range(const DeploymentRow& row, int chip_arrays,
                                   std::string_view what) {
  for (size_t i = 0; i < row.arrays.size(); ++i)
    if (row.arrays[i] < 0 || row.arrays[i] >= chip_arrays)
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: arrays[{}]: {} out of range 0..{} for chip {}", what, i,
                                    row.arrays[i], chip_arrays - 1, row.serial));
  return {};
}

// The creation time to write: row.created_at_ms, else that of the deployment being replaced,
// else now.
Result<int64_t> creation_time(sqlite3* db, const DeploymentRow& row, int64_t now,
                              std::string_view what) {
  if (row.created_at_ms != 0) return row.created_at_ms;
  XBAR_TRY(s, Stmt::prepare(db, "SELECT created_at_ms FROM deployments WHERE id = ?", what));
  s->bind(1, row.id);
  XBAR_TRY(found, s->step(what));
  return *found ? s->int64(0) : now;
}

Result<Taken> arrays_taken(sqlite3* db, const DeploymentRow& row, const std::vector<int>& arrays,
                           std::string_view what) {
  Taken taken;
  XBAR_TRY(s, Stmt::prepare(db, "SELECT id FROM deployment_arrays WHERE serial = ? AND array = ?",
                            what));
  for (int a : arrays) {
    s->bind(1, row.serial).bind(2, a);
    XBAR_TRY(found, s->step(what));
    if (*found && s->text(0) != row.id) taken[s->text(0)].push_back(a);
    s->reset();
  }
  return taken;
}

// Frees what deployment `row` held and what it takes.
Result<void> free_arrays(sqlite3* db, const DeploymentRow& row, const std::vector<int>& arrays,
                         std::string_view what) {
  {
    XBAR_TRY(s, Stmt::prepare(db, "DELETE FROM deployment_arrays WHERE id = ?", what));
    s->bind(1, row.id);
    XBAR_RETURN_IF_ERROR(s->run(what));
  }
  XBAR_TRY(s,
           Stmt::prepare(db, "DELETE FROM deployment_arrays WHERE serial = ? AND array = ?", what));
  for (int a : arrays) {
    s->bind(1, row.serial).bind(2, a);
    XBAR_RETURN_IF_ERROR(s->run(what));
  }
  return {};
}

// Writes the deployment (not archived) and its arrays, which free_arrays has freed.
Result<void> write_deployment(sqlite3* db, const DeploymentRow& row, const std::vector<int>& arrays,
                              int64_t created, int64_t now, std::string_view what) {
  {
    XBAR_TRY(s, Stmt::prepare(db,
                              "INSERT INTO deployments (id, serial, name, state, message, "
                              "created_at_ms, updated_at_ms, archived_at_ms, blob) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?) "
                              "ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, "
                              "name = excluded.name, state = excluded.state, "
                              "message = excluded.message, created_at_ms = excluded.created_at_ms, "
                              "updated_at_ms = excluded.updated_at_ms, archived_at_ms = NULL, "
                              "blob = excluded.blob",
                              what));
    s->bind(1, row.id)
        .bind(2, row.serial)
        .bind(3, row.name)
        .bind(4, name(row.state))
        .bind(5, row.message)
        .bind(6, created)
        .bind(7, now)
        .bind(8, store::bytes_of(row.blob));
    XBAR_RETURN_IF_ERROR(s->run(what));
  }
  XBAR_TRY(s, Stmt::prepare(
                  db, "INSERT INTO deployment_arrays (serial, array, id) VALUES (?, ?, ?)", what));
  for (int a : arrays) {
    s->bind(1, row.serial).bind(2, a).bind(3, row.id);
    XBAR_RETURN_IF_ERROR(s->run(what));
  }
  return {};
}

// Makes every deployment in `taken` stale, saying which arrays deployment `by` took.
Result<void> mark_stale(sqlite3* db, const Taken& taken, std::string_view by, int64_t now,
                        std::string_view what) {
  if (taken.empty()) return {};
  XBAR_TRY(s, Stmt::prepare(db,
                            "UPDATE deployments SET state = 'stale', message = ?, "
                            "updated_at_ms = ? WHERE id = ?",
                            what));
  for (const auto& [other, lost] : taken) {
    const std::string message =
        lost.size() == 1
            ? fmt::format("array {} was taken by deployment {}", lost[0], by)
            : fmt::format("arrays {} were taken by deployment {}", fmt::join(lost, ", "), by);
    s->bind(1, message).bind(2, now).bind(3, other);
    XBAR_RETURN_IF_ERROR(s->run(what));
  }
  return {};
}

// kFailedPrecondition if deployment `id` is archived (a missing one is left to the caller).
Result<void> check_not_archived(sqlite3* db, std::string_view id, std::string_view state,
                                std::string_view what) {
  XBAR_TRY(a, Stmt::prepare(db, "SELECT archived_at_ms FROM deployments WHERE id = ?", what));
  a->bind(1, id);
  XBAR_TRY(found, a->step(what));
  if (*found && !a->is_null(0))
    return make_error(ErrorCode::kFailedPrecondition,
                      fmt::format("{}: state: deployment {} is archived (its per-device "
                                  "matrices were dropped): it cannot become {}",
                                  what, id, state));
  return {};
}

Error no_deployment(std::string_view id, std::string_view what) {
  return Error{ErrorCode::kNotFound,
               fmt::format("{}: id: no deployment {} in the record", what, id)};
}

}  // namespace

Result<void> ChipRecord::put_deployment(const DeploymentRow& row) {
  const std::string what = fmt::format("put_deployment({})", row.id);
  XBAR_TRY(arrays, check_put(row, what));
  XBAR_TRY(scope, write_scope(what, ChipRef{row.serial, std::nullopt}));
  XBAR_RETURN_IF_ERROR(check_arrays_in_range(row, scope->chip().arrays, what));
  const int64_t now = store::now_ms();
  XBAR_TRY(created, creation_time(db_, row, now, what));
  XBAR_TRY(taken, arrays_taken(db_, row, *arrays, what));
  XBAR_RETURN_IF_ERROR(free_arrays(db_, row, *arrays, what));
  XBAR_RETURN_IF_ERROR(write_deployment(db_, row, *arrays, *created, now, what));
  XBAR_RETURN_IF_ERROR(mark_stale(db_, *taken, row.id, now, what));
  return scope->commit(what);
}

Result<void> ChipRecord::set_deployment_state(std::string_view id, DeploymentState state,
                                              std::string_view message) {
  const std::string what = fmt::format("set_deployment_state({})", id);
  XBAR_RETURN_IF_ERROR(store::check_deployment_id(id, what));
  XBAR_RETURN_IF_ERROR(store::check_deployment_state(state, what));
  const bool active = is_active(state);
  XBAR_TRY(scope, write_scope(what));
  if (active) XBAR_RETURN_IF_ERROR(check_not_archived(db_, id, name(state), what));
  XBAR_TRY(s,
           Stmt::prepare(
               db_, "UPDATE deployments SET state = ?, message = ?, updated_at_ms = ? WHERE id = ?",
               what));
  s->bind(1, name(state)).bind(2, message).bind(3, store::now_ms()).bind(4, id);
  XBAR_RETURN_IF_ERROR(s->run(what));
  if (sqlite3_changes(db_) == 0) return std::unexpected(no_deployment(id, what));
  return scope->commit(what);
}

Result<std::vector<DeploymentRow>> ChipRecord::read_deployments_locked(std::string_view where_sql,
                                                                       std::string_view key,
                                                                       std::string_view what,
                                                                       bool with_blobs) {
  // Without blobs, SQLite never reads the blobs' overflow pages.
  XBAR_TRY(s, Stmt::prepare(db_,
                            fmt::format("SELECT {} FROM deployments WHERE {} "
                                        "ORDER BY created_at_ms DESC, id",
                                        with_blobs ? store::kDeploymentColumns
                                                   : store::kDeploymentColumnsNoBlob,
                                        where_sql),
                            what));
  s->bind(1, key);
  std::vector<DeploymentRow> out;
  for (;;) {
    XBAR_TRY(row, s->step(what));
    if (!*row) break;
    XBAR_TRY(d, store::read_deployment(*s, what));
    out.push_back(std::move(*d));
  }
  XBAR_TRY(a, Stmt::prepare(db_, store::kArraysOfDeployment, what));
  for (DeploymentRow& d : out) XBAR_RETURN_IF_ERROR(store::read_arrays(*a, d, what));
  return out;
}

Result<DeploymentRow> ChipRecord::deployment(std::string_view id) {
  const std::string what = fmt::format("deployment({})", id);
  XBAR_RETURN_IF_ERROR(store::check_deployment_id(id, what));
  XBAR_TRY(scope, read_scope(what));
  XBAR_TRY(rows, read_deployments_locked("id = ?1", id, what));
  if (rows->empty()) return std::unexpected(no_deployment(id, what));
  return std::move(rows->front());
}

Result<std::vector<DeploymentRow>> ChipRecord::deployments(std::string_view serial,
                                                           bool with_blobs) {
  const std::string what = fmt::format("deployments({})", serial);
  XBAR_TRY(scope, read_scope(what, ChipRef{serial, std::nullopt}));
  return read_deployments_locked("serial = ?1", serial, what, with_blobs);
}

Result<void> ChipRecord::visit_deployments(std::string_view serial, const DeploymentQuery& query,
                                           const std::function<bool(const DeploymentRow&)>& visit) {
  const std::string what = fmt::format("visit_deployments({})", serial);
  XBAR_TRY(scope, read_scope(what, ChipRef{serial, std::nullopt}));
  // The listing order is (created_at_ms DESC, id ASC): "after the cursor" is an older
  // deployment, or one as old with a greater id.
  XBAR_TRY(s,
           Stmt::prepare(
               db_,
               fmt::format("SELECT {} FROM deployments WHERE serial = ?1 "
                           "AND (?2 OR archived_at_ms IS NULL) "
                           "AND (?3 = 0 OR created_at_ms < ?4 OR (created_at_ms = ?4 AND id > ?5)) "
                           "ORDER BY created_at_ms DESC, id",
                           store::kDeploymentColumns),
               what));
  s->bind(1, serial)
      .bind(2, query.include_archived ? 1 : 0)
      .bind(3, query.after ? 1 : 0)
      .bind(4, query.after ? query.after->created_at_ms : int64_t{0})
      .bind(5, query.after ? std::string_view(query.after->id) : std::string_view());
  XBAR_TRY(a, Stmt::prepare(db_, store::kArraysOfDeployment, what));
  for (;;) {
    XBAR_TRY(row, s->step(what));
    if (!*row) break;
    XBAR_TRY(d, store::read_deployment(*s, what));
    XBAR_RETURN_IF_ERROR(store::read_arrays(*a, *d, what));
    if (!visit(*d)) break;
  }
  return {};
}

Result<std::vector<std::optional<std::string>>> ChipRecord::array_owners(std::string_view serial) {
  const std::string what = fmt::format("array_owners({})", serial);
  XBAR_TRY(scope, read_scope(what, ChipRef{serial, std::nullopt}));
  const int arrays = scope->chip().arrays;
  std::vector<std::optional<std::string>> owners(static_cast<size_t>(arrays));
  XBAR_TRY(s, Stmt::prepare(db_, "SELECT array, id FROM deployment_arrays WHERE serial = ?", what));
  s->bind(1, serial);
  for (;;) {
    XBAR_TRY(row, s->step(what));
    if (!*row) break;
    const int64_t a = s->int64(0);
    if (a < 0 || a >= arrays)
      return std::unexpected(
          store::corrupt(what, fmt::format("deployment array {} outside 0..{}", a, arrays - 1)));
    owners[static_cast<size_t>(a)] = s->text(1);
  }
  return owners;
}

Result<void> ChipRecord::delete_deployment(std::string_view id) {
  const std::string what = fmt::format("delete_deployment({})", id);
  XBAR_RETURN_IF_ERROR(store::check_deployment_id(id, what));
  XBAR_TRY(scope, write_scope(what));
  // The arrays first and explicitly (ON DELETE CASCADE would also remove them); the changes
  // count of the second statement tells whether the deployment existed.
  for (const char* sql :
       {"DELETE FROM deployment_arrays WHERE id = ?", "DELETE FROM deployments WHERE id = ?"}) {
    XBAR_TRY(s, Stmt::prepare(db_, sql, what));
    s->bind(1, id);
    XBAR_RETURN_IF_ERROR(s->run(what));
  }
  if (sqlite3_changes(db_) == 0) return std::unexpected(no_deployment(id, what));
  return scope->commit(what);
}

}  // namespace xbar::server
