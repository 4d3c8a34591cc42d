// The chip record's retention of old deployments (docs/record.md, "Retention"): archiving
// inactive deployments in place, keeping their rows with slimmed blobs.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "chip_record.h"
#include "store/common.h"
#include "store/deployment_rows.h"
#include "store/scope.h"
#include "store/sqlite.h"

namespace xbar::server {
namespace {

using store::Stmt;

// The ids to archive, newest first: the chip's inactive deployments not archived yet, but the
// newest `keep`, that own no array.
Result<std::vector<std::string>> ids_to_archive(sqlite3* db, std::string_view serial, size_t keep,
                                                std::string_view what) {
  XBAR_TRY(s, Stmt::prepare(
                  db,
                  "SELECT id FROM (SELECT id, created_at_ms FROM deployments WHERE serial = ?1 "
                  "AND archived_at_ms IS NULL AND state IN ('failed', 'stale', 'lost') "
                  "ORDER BY created_at_ms DESC, id LIMIT -1 OFFSET ?2) AS old "
                  "WHERE NOT EXISTS (SELECT 1 FROM deployment_arrays a WHERE a.id = old.id) "
                  "ORDER BY created_at_ms DESC, id",
                  what));
  s->bind(1, serial).bind(2, static_cast<int64_t>(std::min<size_t>(keep, INT64_MAX)));
  std::vector<std::string> ids;
  for (;;) {
    XBAR_TRY(row, s->step(what));
    if (!*row) break;
    ids.push_back(s->text(0));
  }
  return ids;
}

}  // namespace

Result<std::vector<std::string>> ChipRecord::archive_inactive_deployments(std::string_view serial,
                                                                          size_t keep,
                                                                          const ArchiveBlob& slim) {
  const std::string what = fmt::format("archive_inactive_deployments({}, keep {})", serial, keep);
  XBAR_TRY(scope, write_scope(what, ChipRef{serial, std::nullopt}));
  // The ids first (small), then one deployment at a time: never all the blobs in memory, and
  // no update of the table while a query over it is still stepping.
  XBAR_TRY(ids, ids_to_archive(db_, serial, keep, what));
  if (ids->empty()) return ids;  // nothing written: the transaction rolls back
  XBAR_TRY(get, Stmt::prepare(db_,
                              fmt::format("SELECT {} FROM deployments WHERE id = ?",
                                          store::kDeploymentColumns),
                              what));
  XBAR_TRY(put, Stmt::prepare(
                    db_, "UPDATE deployments SET archived_at_ms = ?, blob = ? WHERE id = ?", what));
  const int64_t now = store::now_ms();
  for (const std::string& id : *ids) {
    get->bind(1, id);
    XBAR_TRY(row, get->step(what));
    if (!*row)
      return std::unexpected(store::corrupt(what, fmt::format("deployment {} vanished", id)));
    XBAR_TRY(d, store::read_deployment(*get, what));
    get->reset();
    const std::string blob = slim(*d, now);
    put->bind(1, now).bind(2, store::bytes_of(blob)).bind(3, id);
    XBAR_RETURN_IF_ERROR(put->run(what));
  }
  XBAR_RETURN_IF_ERROR(scope->commit(what));
  return ids;
}

}  // namespace xbar::server
