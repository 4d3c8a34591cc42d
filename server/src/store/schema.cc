// The chip record's schema and its migrations (see schema.h).
#include "store/schema.h"

#include <fmt/format.h>

#include "chip_record.h"
#include "store/common.h"
#include "store/sqlite.h"

namespace xbar::server::store {
namespace {

// 'XBAR' in the file header: tells our file from any other SQLite database, so that pointing
// the state dir at the wrong place never migrates (writes into) someone else's file.
constexpr int32_t kApplicationId = 0x58424152;

// Schema version 1. STRICT makes SQLite enforce the column types; the CHECKs keep the text
// enums and the BLOB sizes honest even against a hand edit with the sqlite3 shell.
// target_f32le / readback_f32le: rows*cols IEEE-754 float32, little-endian, row-major
// (device (r, c) at byte offset 4*(r*cols + c)), in uS.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE chips (
  serial           TEXT PRIMARY KEY NOT NULL CHECK (length(serial) BETWEEN 1 AND 64),
  first_seen_ms    INTEGER NOT NULL,
  last_seen_ms     INTEGER NOT NULL,
  firmware_version TEXT NOT NULL,
  arrays           INTEGER NOT NULL CHECK (arrays BETWEEN 1 AND 64),
  rows             INTEGER NOT NULL CHECK (rows BETWEEN 1 AND 1024),
  cols             INTEGER NOT NULL CHECK (cols BETWEEN 1 AND 1024)
) STRICT;

CREATE TABLE faults (
  serial          TEXT NOT NULL REFERENCES chips(serial) ON DELETE CASCADE,
  array           INTEGER NOT NULL CHECK (array >= 0),
  row             INTEGER NOT NULL CHECK (row >= 0),
  col             INTEGER NOT NULL CHECK (col >= 0),
  kind            TEXT NOT NULL CHECK (kind IN ('stuck_high', 'stuck_low', 'slow')),
  method          TEXT NOT NULL
                  CHECK (method IN ('scan', 'quick_check', 'program_verify', 'manual')),
  found_at_ms     INTEGER NOT NULL,  -- first found; kept by later observations
  confirmed_at_ms INTEGER NOT NULL,  -- latest observation
  g_uS            REAL,              -- conductance it is stuck at; NULL = unknown
  PRIMARY KEY (serial, array, row, col)
) STRICT, WITHOUT ROWID;

CREATE TABLE endurance (
  serial       TEXT NOT NULL REFERENCES chips(serial) ON DELETE CASCADE,
  array        INTEGER NOT NULL CHECK (array >= 0),
  row          INTEGER NOT NULL CHECK (row >= 0),
  col          INTEGER NOT NULL CHECK (col >= 0),
  set_pulses   INTEGER NOT NULL DEFAULT 0 CHECK (set_pulses >= 0),
  reset_pulses INTEGER NOT NULL DEFAULT 0 CHECK (reset_pulses >= 0),
  PRIMARY KEY (serial, array, row, col)
) STRICT, WITHOUT ROWID;

CREATE TABLE programming (
  serial           TEXT NOT NULL REFERENCES chips(serial) ON DELETE CASCADE,
  array            INTEGER NOT NULL CHECK (array >= 0),
  programmed_at_ms INTEGER NOT NULL,
  tol_uS           REAL NOT NULL CHECK (tol_uS >= 0),
  rows             INTEGER NOT NULL,
  cols             INTEGER NOT NULL,
  target_f32le     BLOB NOT NULL CHECK (length(target_f32le) = 4 * rows * cols),
  readback_f32le   BLOB NOT NULL CHECK (length(readback_f32le) = 4 * rows * cols),
  within_tol_pct   REAL NOT NULL CHECK (within_tol_pct BETWEEN 0 AND 100),
  rounds           INTEGER NOT NULL CHECK (rounds >= 0),
  abandoned        INTEGER NOT NULL CHECK (abandoned >= 0),
  PRIMARY KEY (serial, array)
) STRICT;
)sql";

// Schema version 2: deployments, and which deployment owns which array. deployment_arrays holds
// one row per occupied array (a free array has none); its foreign key on (id, serial) makes an
// array row always point at an existing deployment of the same chip, and deleting the
// deployment frees its arrays.
constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE deployments (
  id            TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
  serial        TEXT NOT NULL REFERENCES chips(serial) ON DELETE CASCADE,
  name          TEXT NOT NULL,
  state         TEXT NOT NULL
                CHECK (state IN ('deploying', 'ready', 'degraded', 'failed', 'stale')),
  message       TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL CHECK (created_at_ms >= 0),
  updated_at_ms INTEGER NOT NULL,
  blob          BLOB NOT NULL,  -- opaque to the record (a serialized protobuf message)
  UNIQUE (id, serial)           -- the parent key of deployment_arrays
) STRICT;
CREATE INDEX deployments_by_serial ON deployments (serial, created_at_ms);

CREATE TABLE deployment_arrays (
  serial TEXT NOT NULL,
  array  INTEGER NOT NULL CHECK (array >= 0),
  id     TEXT NOT NULL,
  PRIMARY KEY (serial, array),
  FOREIGN KEY (id, serial) REFERENCES deployments (id, serial) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX deployment_arrays_by_id ON deployment_arrays (id, serial);
)sql";

// Schema version 4: retention (docs/record.md, "Retention") archives old inactive deployments
// in place. archived_at_ms is NULL for a deployment kept whole, else when it was archived (its
// blob then lacks the per-device matrices); only a failed, stale or lost deployment may be
// archived, which the CHECK enforces against any write, including a hand edit. The listing
// index serves the pages of ListDeployments in their order (newest first, then id) and
// replaces deployments_by_serial (its prefix).
constexpr const char* kSchemaV4 = R"sql(
ALTER TABLE deployments ADD COLUMN archived_at_ms INTEGER
  CHECK (archived_at_ms IS NULL OR (archived_at_ms >= 0 AND state IN ('failed', 'stale', 'lost')));
DROP INDEX deployments_by_serial;
CREATE INDEX deployments_listing ON deployments (serial, created_at_ms DESC, id);
)sql";

// Version 0 -> 1: the first schema. Runs inside the migration transaction.
Result<void> migrate_0_to_1(sqlite3* db, std::string_view what) {
  XBAR_RETURN_IF_ERROR(exec(db, kSchemaV1, what));
  return exec(db, fmt::format("PRAGMA application_id = {}", kApplicationId).c_str(), what);
}

// Version 1 -> 2: adds the deployment tables; the version 1 tables are untouched.
Result<void> migrate_1_to_2(sqlite3* db, std::string_view what) {
  return exec(db, kSchemaV2, what);
}

// Version 2 -> 3: deployments.state may also be 'lost' (reconciliation at start found that the
// arrays no longer hold the deployment). Only a CHECK is relaxed, so every row stays valid and
// the table is not rebuilt: SQLite's documented procedure for such changes
// (https://www.sqlite.org/lang_altertable.html#otheralter) edits the stored CREATE TABLE text
// and increments schema_version, inside the migration transaction.
Result<void> migrate_2_to_3(sqlite3* db, std::string_view what) {
  XBAR_TRY(sv, query_int(db, "PRAGMA schema_version", what));
  XBAR_RETURN_IF_ERROR(exec(db, "PRAGMA writable_schema = ON", what));
  auto r = exec(db,
                "UPDATE sqlite_schema SET sql = replace(sql, '''failed'', ''stale'')', "
                "'''failed'', ''stale'', ''lost'')') WHERE type = 'table' AND name = "
                "'deployments'",
                what);
  if (r) r = exec(db, fmt::format("PRAGMA schema_version = {}", *sv + 1).c_str(), what);
  auto off = exec(db, "PRAGMA writable_schema = OFF", what);
  if (!r) return r;
  if (!off) return off;
  XBAR_TRY(n, query_int(db,
                        "SELECT count(*) FROM sqlite_schema WHERE name = 'deployments' AND "
                        "instr(sql, '''lost''') > 0",
                        what));
  if (*n != 1) return std::unexpected(corrupt(what, "migration to version 3 did not apply"));
  return {};
}

// Version 3 -> 4: deployments.archived_at_ms (NULL for every existing row: nothing is archived
// until retention runs) and the listing index. Existing rows are untouched.
Result<void> migrate_3_to_4(sqlite3* db, std::string_view what) {
  return exec(db, kSchemaV4, what);
}

}  // namespace

Result<int64_t> identify_record(sqlite3* db, std::string_view where) {
  auto app_id = query_int(db, "PRAGMA application_id", where);
  if (!app_id) {
    if (app_id.error().code == ErrorCode::kInvalidArgument)  // SQLITE_NOTADB
      app_id.error().message = fmt::format(
          "{}: not an SQLite database, so not an xbar record "
          "(SQLite says: file is not a database)",
          where);
    return std::unexpected(app_id.error());
  }
  XBAR_TRY(version, query_int(db, "PRAGMA user_version", where));
  if (*app_id != 0 && *app_id != kApplicationId)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: not an xbar record (SQLite application_id {:#x}, "
                                  "expected {:#x})",
                                  where, static_cast<uint32_t>(*app_id), kApplicationId));
  if (*version > ChipRecord::kSchemaVersion)
    return make_error(ErrorCode::kUnsupported,
                      fmt::format("{}: written by a newer xbard (schema user_version {} is "
                                  "newer than this build's {}); refusing to touch it",
                                  where, *version, ChipRecord::kSchemaVersion));
  if (*app_id == 0) {
    // Without our id, only a blank file (new, or left by a crash before the first migration
    // committed) is ours to initialise.
    XBAR_TRY(tables, query_int(db, "SELECT count(*) FROM sqlite_schema", where));
    if (*tables > 0 || *version != 0)
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: not an xbar record (an SQLite database with {} "
                                    "schema objects and user_version {} of its own)",
                                    where, *tables, *version));
  }
  return *version;
}

Result<void> migrate(sqlite3* db, std::string_view where) {
  Transaction txn(db, Transaction::Mode::kWrite);
  XBAR_RETURN_IF_ERROR(txn.begin(where));
  XBAR_TRY(v, query_int(db, "PRAGMA user_version", where));
  if (*v == 0) XBAR_RETURN_IF_ERROR(migrate_0_to_1(db, where));
  if (*v <= 1) XBAR_RETURN_IF_ERROR(migrate_1_to_2(db, where));
  if (*v <= 2) XBAR_RETURN_IF_ERROR(migrate_2_to_3(db, where));
  if (*v <= 3) XBAR_RETURN_IF_ERROR(migrate_3_to_4(db, where));
  // Future: if (*v <= 4) migrate_4_to_5(...), each step in this same transaction.
  if (*v < ChipRecord::kSchemaVersion)
    XBAR_RETURN_IF_ERROR(exec(
        db, fmt::format("PRAGMA user_version = {}", ChipRecord::kSchemaVersion).c_str(), where));
  return txn.commit(where);
}

}  // namespace xbar::server::store
