// The chip record's connection: opening <state_dir>/xbar.db (identifying it, the durability
// settings, migrating it), closing it, and the integrity check.
#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "chip_record.h"
#include "store/schema.h"
#include "store/sqlite.h"

namespace xbar::server {
namespace {

namespace fs = std::filesystem;
using store::exec;
using store::Stmt;

constexpr int kBusyTimeoutMs = 5000;

// Creates the state dir if missing and checks that we may create files in it.
Result<void> prepare_state_dir(const fs::path& state_dir) {
  const std::string dir = state_dir.string();
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  if (ec || !fs::is_directory(state_dir)) {
    if (ec == std::errc::permission_denied)
      return make_error(ErrorCode::kPermissionDenied,
                        fmt::format("state dir {}: permission denied", dir));
    if (fs::exists(state_dir) && !fs::is_directory(state_dir))
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("state dir {}: exists and is not a directory", dir));
    return make_error(ErrorCode::kInternal, fmt::format("state dir {}: {}", dir, ec.message()));
  }
  // Checked up front: SQLite's own message for it is only "unable to open database file".
  if (access(dir.c_str(), W_OK | X_OK) != 0 && errno == EACCES)
    return make_error(ErrorCode::kPermissionDenied,
                      fmt::format("state dir {}: permission denied", dir));
  return {};
}

// The durability settings; the file must have been identified first (this writes to it).
Result<void> configure(sqlite3* db, std::string_view where) {
  // WAL: a commit appends to xbar.db-wal and readers never block the writer; a kill -9 at any
  // point leaves either the whole transaction or none of it (the WAL is replayed up to the
  // last commit frame whose checksum is valid).
  {
    XBAR_TRY(s, Stmt::prepare(db, "PRAGMA journal_mode = WAL", where));
    XBAR_TRY(row, s->step(where));
    const std::string mode = *row ? s->text(0) : "";
    if (mode != "wal")
      return make_error(ErrorCode::kInternal,
                        fmt::format("{}: cannot use WAL on this filesystem (journal_mode stays "
                                    "'{}'); put the state dir on a local filesystem",
                                    where, mode));
  }
  // synchronous=FULL: fsync the WAL at every commit. In WAL mode NORMAL is already safe against
  // a kill -9 (the OS keeps the written pages), but a power loss could drop the last committed
  // transactions; FULL makes a returned write durable on disk. Costs one fsync per write; our
  // writes are few and large (one per program-verify run or scan).
  // foreign_keys is per connection: without it the REFERENCES clauses are not enforced.
  // journal_size_limit: truncate the WAL back to 4 MiB after each checkpoint.
  return exec(db,
              "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
              "PRAGMA journal_size_limit = 4194304;",
              where);
}

// SQLite fsyncs the directory when it creates the WAL, not when it creates the database file:
// make xbar.db's own directory entry durable too, or a power loss could drop it.
void sync_directory(const fs::path& dir) {
  if (const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

Result<std::unique_ptr<ChipRecord>> ChipRecord::open(const fs::path& state_dir) {
  XBAR_RETURN_IF_ERROR(prepare_state_dir(state_dir));
  const fs::path path = state_dir / kFileName;
  const std::string where = path.string();
  sqlite3* raw = nullptr;
  // NOMUTEX: our own mutex serialises every use of the connection.
  int rc =
      sqlite3_open_v2(where.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = store::sql_error(raw, rc, where);
    sqlite3_close_v2(raw);
    return std::unexpected(std::move(e));
  }
  // From here the record owns the connection and closes it on every return path.
  std::unique_ptr<ChipRecord> rec(new ChipRecord(raw, path));
  sqlite3* db = rec->db_;
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);

  // Identify the file before writing anything to it (the WAL switch writes the header).
  XBAR_TRY(version, store::identify_record(db, where));
  XBAR_RETURN_IF_ERROR(configure(db, where));
  if (*version < kSchemaVersion) {
    XBAR_RETURN_IF_ERROR(store::migrate(db, where));
    sync_directory(state_dir);
  }
  return rec;
}

ChipRecord::~ChipRecord() {
  // close_v2 checkpoints the WAL into xbar.db and removes xbar.db-wal when it is the last
  // connection; skipping that (a crash) is harmless, the next open replays the WAL.
  sqlite3_close_v2(db_);
}

Result<std::string> ChipRecord::integrity_check() {
  std::lock_guard lock(mu_);
  std::string out;
  for (const char* sql : {"PRAGMA integrity_check", "PRAGMA foreign_key_check"}) {
    XBAR_TRY(s, Stmt::prepare(db_, sql, sql));
    for (;;) {
      XBAR_TRY(row, s->step(sql));
      if (!*row) break;
      std::string line = s->text(0);
      if (line == "ok") continue;
      // foreign_key_check rows: table, rowid, parent, fkid.
      if (std::string_view(sql).ends_with("foreign_key_check"))
        line = fmt::format("foreign key: {} row {} has no {}", s->text(0), s->int64(1), s->text(2));
      out += line + "\n";
    }
  }
  return out.empty() ? std::string("ok") : out;
}

}  // namespace xbar::server
