// The chip record's schema (what each table holds and why) and its migrations, version by
// version; ChipRecord::kSchemaVersion is the version this build writes. Internal to
// server/src/store/.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string_view>

#include "xbar/base/error.h"

namespace xbar::server::store {

/// Tells whether the file open on `db` is an xbar record this build may use, before anything
/// is written to it; returns its schema version (0 for a blank file, ours to initialise).
/// kInvalidArgument: not an SQLite file, or another application's database; kUnsupported:
/// written by a newer build.
Result<int64_t> identify_record(sqlite3* db, std::string_view where);

/// Brings the schema up to ChipRecord::kSchemaVersion in ONE transaction, so a crash
/// mid-migration leaves the old version intact. Re-reads the version under the write lock, in
/// case another process migrated meanwhile.
Result<void> migrate(sqlite3* db, std::string_view where);

}  // namespace xbar::server::store
