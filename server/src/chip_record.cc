#include "chip_record.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <map>
#include <set>
#include <utility>

namespace xbar::server {
namespace {

namespace fs = std::filesystem;

// 'XBAR' in the file header: tells our file from any other SQLite database, so that pointing
// the state dir at the wrong place never migrates (writes into) someone else's file.
constexpr int32_t kApplicationId = 0x58424152;
constexpr int kBusyTimeoutMs = 5000;
constexpr int kMaxArrays = 64;
constexpr int kMaxDim = 1024;
constexpr size_t kMaxDeploymentId = 128;
constexpr std::string_view kDeploymentStates[] = {"deploying", "ready", "degraded",
                                                  "failed",    "stale", "lost"};

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

// The columns read_deployment() takes, in its order; without the blob, an empty BLOB stands in
// for it.
constexpr const char* kDeploymentColumns =
    "id, serial, name, state, message, created_at_ms, updated_at_ms, archived_at_ms, blob";
constexpr const char* kDeploymentColumnsNoBlob =
    "id, serial, name, state, message, created_at_ms, updated_at_ms, archived_at_ms, x''";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Maps an SQLite result code to our codes; `what` names the operation or the file.
Error sql_error(sqlite3* db, int rc, std::string_view what) {
  const char* msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  ErrorCode code = ErrorCode::kInternal;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      code = ErrorCode::kBusy;
      break;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      code = ErrorCode::kPermissionDenied;
      break;
    case SQLITE_CANTOPEN:
      if (db && sqlite3_system_errno(db) == EACCES) code = ErrorCode::kPermissionDenied;
      break;
    case SQLITE_NOTADB:
      code = ErrorCode::kInvalidArgument;
      break;
    default:
      break;
  }
  return Error{code, fmt::format("{}: {}", what, msg)};
}

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

// A prepared statement; bind*() take 1-based indices as SQLite does.
class Stmt {
 public:
  static Result<Stmt> prepare(sqlite3* db, std::string_view sql, std::string_view what) {
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &s, nullptr);
    if (rc != SQLITE_OK) return std::unexpected(sql_error(db, rc, what));
    return Stmt(db, s);
  }

  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_.get(), i, v);
    return *this;
  }
  Stmt& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Stmt& bind(int i, double v) {
    sqlite3_bind_double(s_.get(), i, v);
    return *this;
  }
  Stmt& bind(int i, std::string_view v) {
    sqlite3_bind_text(s_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, std::span<const uint8_t> v) {
    if (v.data() == nullptr)  // bind_blob would store NULL, not an empty BLOB
      sqlite3_bind_zeroblob(s_.get(), i, 0);
    else
      sqlite3_bind_blob(s_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(s_.get(), i);
    return *this;
  }

  /// One step: true when a row is available, false when done.
  Result<bool> step(std::string_view what) {
    const int rc = sqlite3_step(s_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return std::unexpected(sql_error(db_, rc, what));
  }
  /// Ends a query early (or after its last row), ready for the next bindings.
  void reset() { sqlite3_reset(s_.get()); }
  /// Runs a statement that returns no rows, then resets it for the next bindings.
  Result<void> run(std::string_view what) {
    auto r = step(what);
    sqlite3_reset(s_.get());
    if (!r) return std::unexpected(r.error());
    return {};
  }

  int64_t int64(int col) const { return sqlite3_column_int64(s_.get(), col); }
  double real(int col) const { return sqlite3_column_double(s_.get(), col); }
  bool is_null(int col) const { return sqlite3_column_type(s_.get(), col) == SQLITE_NULL; }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(s_.get(), col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(s_.get(), col)))
             : std::string();
  }
  std::span<const uint8_t> blob(int col) const {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s_.get(), col));
    return {p, static_cast<size_t>(sqlite3_column_bytes(s_.get(), col))};
  }

 private:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StmtDeleter> s_;
};

Result<void> exec(sqlite3* db, const char* sql, std::string_view what) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sql_error(db, rc, what));
  return {};
}

// Runs a single-value query (a PRAGMA read) and returns the first column as integer.
Result<int64_t> query_int(sqlite3* db, const char* sql, std::string_view what) {
  auto s = Stmt::prepare(db, sql, what);
  if (!s) return std::unexpected(s.error());
  auto row = s->step(what);
  if (!row) return std::unexpected(row.error());
  return *row ? s->int64(0) : 0;
}

// BEGIN IMMEDIATE takes the write lock up front: a writer never has to upgrade a read lock
// halfway (which can fail with SQLITE_BUSY regardless of the timeout). Rolls back unless
// committed, so an early return leaves the file as it was.
class Txn {
 public:
  explicit Txn(sqlite3* db) : db_(db) {}
  ~Txn() {
    if (began_ && !committed_ && !sqlite3_get_autocommit(db_))
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Result<void> begin(std::string_view what) {
    auto r = exec(db_, "BEGIN IMMEDIATE", what);
    began_ = r.has_value();
    return r;
  }
  Result<void> commit(std::string_view what) {
    auto r = exec(db_, "COMMIT", what);
    committed_ = r.has_value();
    return r;
  }

 private:
  sqlite3* db_;
  bool began_ = false;
  bool committed_ = false;
};

// A read transaction: reads that span several statements see one snapshot, even while
// another process writes.
class ReadTxn {
 public:
  explicit ReadTxn(sqlite3* db) : db_(db) {}
  ~ReadTxn() {
    if (began_) sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  }
  Result<void> begin(std::string_view what) {
    auto r = exec(db_, "BEGIN", what);
    began_ = r.has_value();
    return r;
  }

 private:
  sqlite3* db_;
  bool began_ = false;
};

std::string_view kind_text(wire::FaultKind k) { return wire::fault_kind_name(k); }

std::optional<wire::FaultKind> parse_kind(std::string_view s) {
  for (auto k : {wire::FaultKind::kStuckHigh, wire::FaultKind::kStuckLow, wire::FaultKind::kSlow})
    if (wire::fault_kind_name(k) == s) return k;
  return std::nullopt;
}

std::optional<FaultMethod> parse_method(std::string_view s) {
  for (auto m : {FaultMethod::kScan, FaultMethod::kQuickCheck, FaultMethod::kProgramVerify,
                 FaultMethod::kManual})
    if (fault_method_name(m) == s) return m;
  return std::nullopt;
}

Result<void> check_serial(std::string_view serial, std::string_view what) {
  if (serial.empty() || serial.size() > 64)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: serial: length {} out of range 1..64", what, serial.size()));
  for (char c : serial)
    if (c < 0x21 || c > 0x7e)
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: serial: must be printable ASCII without spaces", what));
  return {};
}

// Shape against the chip's geometry, then every element against `bad_value`, which returns
// the complaint for an invalid element (or nullopt).
template <typename Matrix, typename BadValue>
Result<void> check_matrix_with(const Matrix& m, int rows, int cols, std::string_view field,
                               std::string_view serial, std::string_view what, BadValue bad_value) {
  if (m.rows() != rows || m.cols() != cols)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: {}: {}x{} does not match chip {}'s {}x{} arrays", what,
                                  field, m.rows(), m.cols(), serial, rows, cols));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      if (std::optional<std::string> why = bad_value(m(r, c)))
        return make_error(ErrorCode::kInvalidArgument,
                          fmt::format("{}: {}({}, {}): {}", what, field, r, c, *why));
  return {};
}

Result<void> check_matrix(const Eigen::MatrixXi& m, int rows, int cols, std::string_view field,
                          std::string_view serial, std::string_view what) {
  return check_matrix_with(m, rows, cols, field, serial, what,
                           [](int v) -> std::optional<std::string> {
                             if (v >= 0) return std::nullopt;
                             return fmt::format("{} pulses, must be >= 0", v);
                           });
}

Result<void> check_matrix(const Eigen::MatrixXd& m, int rows, int cols, std::string_view field,
                          std::string_view serial, std::string_view what) {
  return check_matrix_with(m, rows, cols, field, serial, what,
                           [](double v) -> std::optional<std::string> {
                             // Also catches values beyond float32's range (stored as inf).
                             if (std::isfinite(static_cast<float>(v))) return std::nullopt;
                             return fmt::format("{} is not a finite conductance in uS", v);
                           });
}

// Row-major little-endian float32, whatever the host's byte order (see the schema comment).
std::vector<uint8_t> to_f32le(const Eigen::MatrixXd& m) {
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(m.size()) * 4);
  for (Eigen::Index r = 0; r < m.rows(); ++r)
    for (Eigen::Index c = 0; c < m.cols(); ++c) {
      const auto u = std::bit_cast<uint32_t>(static_cast<float>(m(r, c)));
      for (int b = 0; b < 4; ++b) out.push_back(static_cast<uint8_t>(u >> (8 * b)));
    }
  return out;
}

Eigen::MatrixXd from_f32le(std::span<const uint8_t> bytes, int rows, int cols) {
  Eigen::MatrixXd m(rows, cols);
  size_t i = 0;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c, i += 4) {
      uint32_t u = 0;
      for (int b = 0; b < 4; ++b) u |= static_cast<uint32_t>(bytes[i + b]) << (8 * b);
      m(r, c) = std::bit_cast<float>(u);
    }
  return m;
}

Error corrupt(std::string_view what, std::string_view detail) {
  return Error{ErrorCode::kInternal, fmt::format("{}: record is inconsistent: {}", what, detail)};
}

// Version 0 -> 1: the first schema. Runs inside the migration transaction.
Result<void> migrate_0_to_1(sqlite3* db, std::string_view what) {
  if (auto r = exec(db, kSchemaV1, what); !r) return r;
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
  auto sv = query_int(db, "PRAGMA schema_version", what);
  if (!sv) return std::unexpected(sv.error());
  if (auto r = exec(db, "PRAGMA writable_schema = ON", what); !r) return r;
  auto r = exec(db,
                "UPDATE sqlite_schema SET sql = replace(sql, '''failed'', ''stale'')', "
                "'''failed'', ''stale'', ''lost'')') WHERE type = 'table' AND name = "
                "'deployments'",
                what);
  if (r) r = exec(db, fmt::format("PRAGMA schema_version = {}", *sv + 1).c_str(), what);
  auto off = exec(db, "PRAGMA writable_schema = OFF", what);
  if (!r) return r;
  if (!off) return off;
  auto n = query_int(db,
                     "SELECT count(*) FROM sqlite_schema WHERE name = 'deployments' AND "
                     "instr(sql, '''lost''') > 0",
                     what);
  if (!n) return std::unexpected(n.error());
  if (*n != 1) return std::unexpected(corrupt(what, "migration to version 3 did not apply"));
  return {};
}

// Version 3 -> 4: deployments.archived_at_ms (NULL for every existing row: nothing is archived
// until retention runs) and the listing index. Existing rows are untouched.
Result<void> migrate_3_to_4(sqlite3* db, std::string_view what) {
  return exec(db, kSchemaV4, what);
}

Result<void> check_deployment_id(std::string_view id, std::string_view what) {
  if (id.empty() || id.size() > kMaxDeploymentId)
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("{}: id: length {} out of range 1..{}", what, id.size(), kMaxDeploymentId));
  return {};
}

Result<void> check_deployment_state(std::string_view state, std::string_view what) {
  if (std::ranges::find(kDeploymentStates, state) != std::end(kDeploymentStates)) return {};
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: state: '{}' is not one of deploying, ready, degraded, "
                                "failed, stale, lost",
                                what, state));
}

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

std::string_view fault_method_name(FaultMethod m) {
  switch (m) {
    case FaultMethod::kScan:
      return "scan";
    case FaultMethod::kQuickCheck:
      return "quick_check";
    case FaultMethod::kProgramVerify:
      return "program_verify";
    case FaultMethod::kManual:
      return "manual";
  }
  return "?";
}

Result<std::unique_ptr<ChipRecord>> ChipRecord::open(const fs::path& state_dir) {
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

  const fs::path path = state_dir / kFileName;
  const std::string where = path.string();
  sqlite3* raw = nullptr;
  // NOMUTEX: our own mutex serialises every use of the connection.
  int rc =
      sqlite3_open_v2(where.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sql_error(raw, rc, where);
    sqlite3_close_v2(raw);
    return std::unexpected(std::move(e));
  }
  // From here the record owns the connection and closes it on every return path.
  std::unique_ptr<ChipRecord> rec(new ChipRecord(raw, path));
  sqlite3* db = rec->db_;
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);

  // Identify the file before writing anything to it (the WAL switch writes the header).
  auto app_id = query_int(db, "PRAGMA application_id", where);
  if (!app_id) {
    if (app_id.error().code == ErrorCode::kInvalidArgument)  // SQLITE_NOTADB
      app_id.error().message = fmt::format(
          "{}: not an SQLite database, so not an xbar record "
          "(SQLite says: file is not a database)",
          where);
    return std::unexpected(app_id.error());
  }
  auto version = query_int(db, "PRAGMA user_version", where);
  if (!version) return std::unexpected(version.error());
  if (*app_id != 0 && *app_id != kApplicationId)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: not an xbar record (SQLite application_id {:#x}, "
                                  "expected {:#x})",
                                  where, static_cast<uint32_t>(*app_id), kApplicationId));
  if (*version > kSchemaVersion)
    return make_error(ErrorCode::kUnsupported,
                      fmt::format("{}: written by a newer xbard (schema user_version {} is "
                                  "newer than this build's {}); refusing to touch it",
                                  where, *version, kSchemaVersion));
  if (*app_id == 0) {
    // Without our id, only a blank file (new, or left by a crash before the first migration
    // committed) is ours to initialise.
    auto tables = query_int(db, "SELECT count(*) FROM sqlite_schema", where);
    if (!tables) return std::unexpected(tables.error());
    if (*tables > 0 || *version != 0)
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: not an xbar record (an SQLite database with {} "
                                    "schema objects and user_version {} of its own)",
                                    where, *tables, *version));
  }

  // WAL: a commit appends to xbar.db-wal and readers never block the writer; a kill -9 at any
  // point leaves either the whole transaction or none of it (the WAL is replayed up to the
  // last commit frame whose checksum is valid).
  {
    auto s = Stmt::prepare(db, "PRAGMA journal_mode = WAL", where);
    if (!s) return std::unexpected(s.error());
    auto row = s->step(where);
    if (!row) return std::unexpected(row.error());
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
  if (auto r = exec(db,
                    "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
                    "PRAGMA journal_size_limit = 4194304;",
                    where);
      !r)
    return std::unexpected(r.error());

  // Migrate inside one transaction: a crash mid-migration leaves the old version intact.
  // Re-read the version under the write lock, in case another process migrated meanwhile.
  if (*version < kSchemaVersion) {
    Txn txn(db);
    if (auto r = txn.begin(where); !r) return std::unexpected(r.error());
    auto v = query_int(db, "PRAGMA user_version", where);
    if (!v) return std::unexpected(v.error());
    if (*v == 0) {
      if (auto r = migrate_0_to_1(db, where); !r) return std::unexpected(r.error());
    }
    if (*v <= 1) {
      if (auto r = migrate_1_to_2(db, where); !r) return std::unexpected(r.error());
    }
    if (*v <= 2) {
      if (auto r = migrate_2_to_3(db, where); !r) return std::unexpected(r.error());
    }
    if (*v <= 3) {
      if (auto r = migrate_3_to_4(db, where); !r) return std::unexpected(r.error());
    }
    // Future: if (*v <= 4) migrate_4_to_5(...), each step in this same transaction.
    if (*v < kSchemaVersion) {
      if (auto r = exec(db, fmt::format("PRAGMA user_version = {}", kSchemaVersion).c_str(), where);
          !r)
        return std::unexpected(r.error());
    }
    if (auto r = txn.commit(where); !r) return std::unexpected(r.error());
    // SQLite fsyncs the directory when it creates the WAL, not when it creates the database
    // file: make xbar.db's own directory entry durable too, or a power loss could drop it.
    if (const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }
  return rec;
}

ChipRecord::~ChipRecord() {
  // close_v2 checkpoints the WAL into xbar.db and removes xbar.db-wal when it is the last
  // connection; skipping that (a crash) is harmless, the next open replays the WAL.
  sqlite3_close_v2(db_);
}

Result<void> ChipRecord::touch_chip(const ChipInfo& chip) {
  const std::string what = fmt::format("touch_chip({})", chip.serial);
  if (auto r = check_serial(chip.serial, "touch_chip"); !r) return r;
  auto range = [&](std::string_view field, int v, int hi) -> Result<void> {
    if (v < 1 || v > hi)
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: {}: {} out of range 1..{}", what, field, v, hi));
    return {};
  };
  if (auto r = range("arrays", chip.arrays, kMaxArrays); !r) return r;
  if (auto r = range("rows", chip.rows, kMaxDim); !r) return r;
  if (auto r = range("cols", chip.cols, kMaxDim); !r) return r;

  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  {
    auto s = Stmt::prepare(db_, "SELECT arrays, rows, cols FROM chips WHERE serial = ?", what);
    if (!s) return std::unexpected(s.error());
    s->bind(1, chip.serial);
    auto row = s->step(what);
    if (!row) return std::unexpected(row.error());
    if (*row &&
        (s->int64(0) != chip.arrays || s->int64(1) != chip.rows || s->int64(2) != chip.cols))
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: geometry: chip was recorded with {} arrays of {}x{}, "
                                    "now reports {} of {}x{}",
                                    what, s->int64(0), s->int64(1), s->int64(2), chip.arrays,
                                    chip.rows, chip.cols));
  }
  auto s =
      Stmt::prepare(db_,
                    "INSERT INTO chips (serial, first_seen_ms, last_seen_ms, "
                    "firmware_version, arrays, rows, cols) VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6) "
                    "ON CONFLICT (serial) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, "
                    "firmware_version = excluded.firmware_version",
                    what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, chip.serial)
      .bind(2, now_ms())
      .bind(3, chip.firmware_version)
      .bind(4, chip.arrays)
      .bind(5, chip.rows)
      .bind(6, chip.cols);
  if (auto r = s->run(what); !r) return r;
  return txn.commit(what);
}

Result<std::vector<ChipInfo>> ChipRecord::chips() {
  std::lock_guard lock(mu_);
  auto s = Stmt::prepare(db_,
                         "SELECT serial, firmware_version, arrays, rows, cols, first_seen_ms, "
                         "last_seen_ms FROM chips ORDER BY serial",
                         "chips");
  if (!s) return std::unexpected(s.error());
  std::vector<ChipInfo> out;
  for (;;) {
    auto row = s->step("chips");
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(ChipInfo{.serial = s->text(0),
                           .firmware_version = s->text(1),
                           .arrays = static_cast<int>(s->int64(2)),
                           .rows = static_cast<int>(s->int64(3)),
                           .cols = static_cast<int>(s->int64(4)),
                           .first_seen_ms = s->int64(5),
                           .last_seen_ms = s->int64(6)});
  }
  return out;
}

Result<ChipRecord::Geometry> ChipRecord::geometry_locked(std::string_view serial,
                                                         std::optional<int> array,
                                                         std::string_view what) {
  if (auto r = check_serial(serial, what); !r) return std::unexpected(r.error());
  auto s = Stmt::prepare(db_, "SELECT arrays, rows, cols FROM chips WHERE serial = ?", what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, serial);
  auto row = s->step(what);
  if (!row) return std::unexpected(row.error());
  if (!*row)
    return make_error(
        ErrorCode::kNotFound,
        fmt::format("{}: serial: chip {} is not in the record (touch_chip first)", what, serial));
  Geometry g{static_cast<int>(s->int64(0)), static_cast<int>(s->int64(1)),
             static_cast<int>(s->int64(2))};
  if (array && (*array < 0 || *array >= g.arrays))
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: array: {} out of range 0..{} for chip {}", what, *array,
                                  g.arrays - 1, serial));
  return g;
}

Result<void> ChipRecord::upsert_faults_locked(std::string_view serial, const Geometry& g,
                                              std::span<const FaultEntry> entries,
                                              std::optional<int> only_array,
                                              std::string_view what) {
  // Validate everything before the first write: the caller's transaction would roll back
  // anyway, but a message about the first bad entry is clearer than a half-applied batch.
  for (size_t i = 0; i < entries.size(); ++i) {
    const FaultEntry& e = entries[i];
    auto bad = [&](std::string_view field, const std::string& detail) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: entries[{}].{}: {}", what, i, field, detail));
    };
    if (only_array && e.array != *only_array)
      return bad("array", fmt::format("{} but this call writes array {}", e.array, *only_array));
    if (e.array < 0 || e.array >= g.arrays)
      return bad("array", fmt::format("{} out of range 0..{}", e.array, g.arrays - 1));
    if (e.row < 0 || e.row >= g.rows)
      return bad("row", fmt::format("{} out of range 0..{}", e.row, g.rows - 1));
    if (e.col < 0 || e.col >= g.cols)
      return bad("col", fmt::format("{} out of range 0..{}", e.col, g.cols - 1));
    if (e.kind != wire::FaultKind::kStuckHigh && e.kind != wire::FaultKind::kStuckLow &&
        e.kind != wire::FaultKind::kSlow)
      return bad("kind", fmt::format("{} is not a fault (stuck_high, stuck_low or slow)",
                                     static_cast<int>(e.kind)));
    if (fault_method_name(e.method) == "?")
      return bad("method", fmt::format("{} is not a method", static_cast<int>(e.method)));
    if (e.found_at_ms < 0) return bad("found_at_ms", fmt::format("{} < 0", e.found_at_ms));
    if (e.g_uS && !std::isfinite(*e.g_uS))
      return bad("g_uS", fmt::format("{} is not a finite conductance", *e.g_uS));
  }
  auto s = Stmt::prepare(
      db_,
      "INSERT INTO faults (serial, array, row, col, kind, method, found_at_ms, confirmed_at_ms, "
      "g_uS) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8) "
      "ON CONFLICT (serial, array, row, col) DO UPDATE SET "
      "kind = excluded.kind, method = excluded.method, g_uS = excluded.g_uS, "
      // min/max rather than keep/replace: observations recorded out of order still give the
      // first-found and latest-confirmed times.
      "found_at_ms = min(found_at_ms, excluded.found_at_ms), "
      "confirmed_at_ms = max(confirmed_at_ms, excluded.confirmed_at_ms)",
      what);
  if (!s) return std::unexpected(s.error());
  const int64_t now = now_ms();
  for (const FaultEntry& e : entries) {
    s->bind(1, serial)
        .bind(2, e.array)
        .bind(3, e.row)
        .bind(4, e.col)
        .bind(5, kind_text(e.kind))
        .bind(6, fault_method_name(e.method))
        .bind(7, e.found_at_ms == 0 ? now : e.found_at_ms);
    if (e.g_uS)
      s->bind(8, *e.g_uS);
    else
      s->bind_null(8);
    if (auto r = s->run(what); !r) return r;
  }
  return {};
}

Result<void> ChipRecord::record_faults(std::string_view serial,
                                       std::span<const FaultEntry> entries) {
  const std::string what = fmt::format("record_faults({})", serial);
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  auto g = geometry_locked(serial, std::nullopt, what);
  if (!g) return std::unexpected(g.error());
  if (auto r = upsert_faults_locked(serial, *g, entries, std::nullopt, what); !r) return r;
  return txn.commit(what);
}

Result<void> ChipRecord::replace_faults(std::string_view serial, int array,
                                        std::span<const FaultEntry> entries) {
  const std::string what = fmt::format("replace_faults({}, array {})", serial, array);
  if (array < 0)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: array: {} must be >= 0", what, array));
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  auto g = geometry_locked(serial, array, what);
  if (!g) return std::unexpected(g.error());
  // Upsert first (validating), then drop what the new map does not hold.
  if (auto r = upsert_faults_locked(serial, *g, entries, array, what); !r) return r;
  std::set<std::pair<int, int>> keep;
  for (const FaultEntry& e : entries) keep.emplace(e.row, e.col);
  std::vector<std::pair<int, int>> drop;
  {
    auto s = Stmt::prepare(db_, "SELECT row, col FROM faults WHERE serial = ? AND array = ?", what);
    if (!s) return std::unexpected(s.error());
    s->bind(1, serial).bind(2, array);
    for (;;) {
      auto row = s->step(what);
      if (!row) return std::unexpected(row.error());
      if (!*row) break;
      std::pair<int, int> rc{static_cast<int>(s->int64(0)), static_cast<int>(s->int64(1))};
      if (!keep.contains(rc)) drop.push_back(rc);
    }
  }
  auto del = Stmt::prepare(
      db_, "DELETE FROM faults WHERE serial = ? AND array = ? AND row = ? AND col = ?", what);
  if (!del) return std::unexpected(del.error());
  for (auto [r, c] : drop) {
    del->bind(1, serial).bind(2, array).bind(3, r).bind(4, c);
    if (auto res = del->run(what); !res) return res;
  }
  return txn.commit(what);
}

Result<void> ChipRecord::clear_faults(std::string_view serial, int array) {
  return replace_faults(serial, array, {});
}

Result<std::vector<FaultEntry>> ChipRecord::faults(std::string_view serial,
                                                   std::optional<int> array) {
  const std::string what = fmt::format("faults({})", serial);
  if (array && *array < 0)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: array: {} must be >= 0", what, *array));
  std::lock_guard lock(mu_);
  ReadTxn read(db_);
  if (auto r = read.begin(what); !r) return std::unexpected(r.error());
  auto g = geometry_locked(serial, array, what);
  if (!g) return std::unexpected(g.error());
  auto s = Stmt::prepare(db_,
                         "SELECT array, row, col, kind, method, found_at_ms, confirmed_at_ms, g_uS "
                         "FROM faults WHERE serial = ?1 AND (?2 IS NULL OR array = ?2) "
                         "ORDER BY array, row, col",
                         what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, serial);
  if (array)
    s->bind(2, *array);
  else
    s->bind_null(2);
  std::vector<FaultEntry> out;
  for (;;) {
    auto row = s->step(what);
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    auto kind = parse_kind(s->text(3));
    auto method = parse_method(s->text(4));
    if (!kind || !method) return std::unexpected(corrupt(what, "unknown fault kind or method"));
    out.push_back(
        FaultEntry{.array = static_cast<int>(s->int64(0)),
                   .row = static_cast<int>(s->int64(1)),
                   .col = static_cast<int>(s->int64(2)),
                   .kind = *kind,
                   .method = *method,
                   .found_at_ms = s->int64(5),
                   .confirmed_at_ms = s->int64(6),
                   .g_uS = s->is_null(7) ? std::nullopt : std::optional<double>(s->real(7))});
  }
  return out;
}

Result<void> ChipRecord::add_pulses_locked(std::string_view serial, int array, const Geometry& g,
                                           const Eigen::MatrixXi& set_delta,
                                           const Eigen::MatrixXi& reset_delta,
                                           std::string_view what) {
  if (auto r = check_matrix(set_delta, g.rows, g.cols, "set_delta", serial, what); !r) return r;
  if (auto r = check_matrix(reset_delta, g.rows, g.cols, "reset_delta", serial, what); !r) return r;
  // One prepared statement reused for every device, inside the caller's transaction: the cost
  // is the B-tree work, not parsing or fsync (one fsync at COMMIT). Measured (RelWithDebInfo,
  // ext4 VM disk, 2 cores): a full 64x64 array, commit included, 4.7-5.1 ms (~1.2 us/device);
  // a one-row commit is 0.2-0.5 ms. ChipRecord.AddPulsesFullArrayIsFast prints the figures.
  auto s = Stmt::prepare(db_,
                         "INSERT INTO endurance (serial, array, row, col, set_pulses, "
                         "reset_pulses) VALUES (?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT (serial, array, row, col) DO UPDATE SET "
                         "set_pulses = set_pulses + excluded.set_pulses, "
                         "reset_pulses = reset_pulses + excluded.reset_pulses",
                         what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, serial).bind(2, array);
  for (int r = 0; r < g.rows; ++r)
    for (int c = 0; c < g.cols; ++c) {
      if (set_delta(r, c) == 0 && reset_delta(r, c) == 0) continue;  // nothing to add
      s->bind(3, r).bind(4, c).bind(5, set_delta(r, c)).bind(6, reset_delta(r, c));
      if (auto res = s->run(what); !res) return res;
    }
  return {};
}

Result<void> ChipRecord::add_pulses(std::string_view serial, int array,
                                    const Eigen::MatrixXi& set_delta,
                                    const Eigen::MatrixXi& reset_delta) {
  const std::string what = fmt::format("add_pulses({}, array {})", serial, array);
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  auto g = geometry_locked(serial, array, what);
  if (!g) return std::unexpected(g.error());
  if (auto r = add_pulses_locked(serial, array, *g, set_delta, reset_delta, what); !r) return r;
  return txn.commit(what);
}

Result<Endurance> ChipRecord::endurance(std::string_view serial, int array) {
  const std::string what = fmt::format("endurance({}, array {})", serial, array);
  std::lock_guard lock(mu_);
  ReadTxn read(db_);
  if (auto r = read.begin(what); !r) return std::unexpected(r.error());
  auto g = geometry_locked(serial, array, what);
  if (!g) return std::unexpected(g.error());
  Endurance e{Eigen::MatrixXi::Zero(g->rows, g->cols), Eigen::MatrixXi::Zero(g->rows, g->cols)};
  auto s = Stmt::prepare(db_,
                         "SELECT row, col, set_pulses, reset_pulses FROM endurance "
                         "WHERE serial = ? AND array = ?",
                         what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, serial).bind(2, array);
  for (;;) {
    auto row = s->step(what);
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    const int64_t r = s->int64(0), c = s->int64(1);
    if (r >= g->rows || c >= g->cols)
      return std::unexpected(
          corrupt(what, fmt::format("device ({}, {}) outside {}x{}", r, c, g->rows, g->cols)));
    e.set_pulses(r, c) = static_cast<int>(std::min<int64_t>(s->int64(2), INT_MAX));
    e.reset_pulses(r, c) = static_cast<int>(std::min<int64_t>(s->int64(3), INT_MAX));
  }
  return e;
}

Result<void> ChipRecord::record_programming_locked(std::string_view serial, int array,
                                                   const Geometry& g, const ProgrammingRecord& rec,
                                                   std::string_view what) {
  auto bad = [&](std::string_view field, const std::string& detail) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{}: {}: {}", what, field, detail));
  };
  if (rec.programmed_at_ms < 0)
    return bad("programmed_at_ms", fmt::format("{} < 0", rec.programmed_at_ms));
  if (!std::isfinite(rec.tol_uS) || rec.tol_uS < 0)
    return bad("tol_uS", fmt::format("{} must be finite and >= 0", rec.tol_uS));
  if (!(rec.within_tol_pct >= 0 && rec.within_tol_pct <= 100))  // also rejects NaN
    return bad("within_tol_pct", fmt::format("{} out of range 0..100", rec.within_tol_pct));
  if (rec.rounds < 0) return bad("rounds", fmt::format("{} must be >= 0", rec.rounds));
  if (rec.abandoned < 0 || rec.abandoned > g.rows * g.cols)
    return bad("abandoned", fmt::format("{} out of range 0..{}", rec.abandoned, g.rows * g.cols));
  if (auto r = check_matrix(rec.target_uS, g.rows, g.cols, "target_uS", serial, what); !r) return r;
  if (auto r = check_matrix(rec.readback_uS, g.rows, g.cols, "readback_uS", serial, what); !r)
    return r;
  auto s = Stmt::prepare(db_,
                         "INSERT OR REPLACE INTO programming (serial, array, programmed_at_ms, "
                         "tol_uS, rows, cols, target_f32le, readback_f32le, within_tol_pct, "
                         "rounds, abandoned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         what);
  if (!s) return std::unexpected(s.error());
  const auto target = to_f32le(rec.target_uS);
  const auto readback = to_f32le(rec.readback_uS);
  s->bind(1, serial)
      .bind(2, array)
      .bind(3, rec.programmed_at_ms == 0 ? now_ms() : rec.programmed_at_ms)
      .bind(4, rec.tol_uS)
      .bind(5, g.rows)
      .bind(6, g.cols)
      .bind(7, std::span<const uint8_t>(target))
      .bind(8, std::span<const uint8_t>(readback))
      .bind(9, rec.within_tol_pct)
      .bind(10, rec.rounds)
      .bind(11, rec.abandoned);
  return s->run(what);
}

Result<void> ChipRecord::record_programming(std::string_view serial, int array,
                                            const ProgrammingRecord& record) {
  const std::string what = fmt::format("record_programming({}, array {})", serial, array);
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  auto g = geometry_locked(serial, array, what);
  if (!g) return std::unexpected(g.error());
  if (auto r = record_programming_locked(serial, array, *g, record, what); !r) return r;
  return txn.commit(what);
}

Result<std::optional<ProgrammingRecord>> ChipRecord::last_programming(std::string_view serial,
                                                                      int array) {
  const std::string what = fmt::format("last_programming({}, array {})", serial, array);
  std::lock_guard lock(mu_);
  ReadTxn read(db_);
  if (auto r = read.begin(what); !r) return std::unexpected(r.error());
  auto g = geometry_locked(serial, array, what);
  if (!g) return std::unexpected(g.error());
  auto s = Stmt::prepare(db_,
                         "SELECT programmed_at_ms, tol_uS, rows, cols, target_f32le, "
                         "readback_f32le, within_tol_pct, rounds, abandoned FROM programming "
                         "WHERE serial = ? AND array = ?",
                         what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, serial).bind(2, array);
  auto row = s->step(what);
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<ProgrammingRecord>();
  const int rows = static_cast<int>(s->int64(2)), cols = static_cast<int>(s->int64(3));
  const auto target = s->blob(4);
  const auto readback = s->blob(5);
  const size_t bytes = static_cast<size_t>(rows) * cols * 4;
  if (rows != g->rows || cols != g->cols || target.size() != bytes || readback.size() != bytes)
    return std::unexpected(corrupt(what, "programming matrices do not match the chip"));
  ProgrammingRecord rec;
  rec.programmed_at_ms = s->int64(0);
  rec.tol_uS = s->real(1);
  rec.target_uS = from_f32le(target, rows, cols);
  rec.readback_uS = from_f32le(readback, rows, cols);
  rec.within_tol_pct = s->real(6);
  rec.rounds = static_cast<int>(s->int64(7));
  rec.abandoned = static_cast<int>(s->int64(8));
  return std::optional<ProgrammingRecord>(std::move(rec));
}

Result<void> ChipRecord::record_programming_run(std::string_view serial, int array,
                                                const ProgrammingRun& run) {
  const std::string what = fmt::format("record_programming_run({}, array {})", serial, array);
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  auto g = geometry_locked(serial, array, what);
  if (!g) return std::unexpected(g.error());
  if (auto r = record_programming_locked(serial, array, *g, run.programming, what); !r) return r;
  if (auto r = add_pulses_locked(serial, array, *g, run.set_delta, run.reset_delta, what); !r)
    return r;
  if (auto r = upsert_faults_locked(serial, *g, run.faults, array, what); !r) return r;
  return txn.commit(what);
}

Result<void> ChipRecord::put_deployment(const DeploymentRow& row) {
  const std::string what = fmt::format("put_deployment({})", row.id);
  auto bad = [&](std::string_view field, const std::string& detail) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{}: {}: {}", what, field, detail));
  };
  if (auto r = check_deployment_id(row.id, what); !r) return r;
  if (auto r = check_deployment_state(row.state, what); !r) return r;
  if (row.created_at_ms < 0) return bad("created_at_ms", fmt::format("{} < 0", row.created_at_ms));
  std::vector<int> arrays = row.arrays;
  std::ranges::sort(arrays);
  if (auto dup = std::ranges::adjacent_find(arrays); dup != arrays.end())
    return bad("arrays", fmt::format("array {} listed twice", *dup));

  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  auto g = geometry_locked(row.serial, std::nullopt, what);
  if (!g) return std::unexpected(g.error());
  for (size_t i = 0; i < row.arrays.size(); ++i)
    if (row.arrays[i] < 0 || row.arrays[i] >= g->arrays)
      return bad(fmt::format("arrays[{}]", i),
                 fmt::format("{} out of range 0..{} for chip {}", row.arrays[i], g->arrays - 1,
                             row.serial));

  const int64_t now = now_ms();
  int64_t created = row.created_at_ms;
  if (created == 0) {  // keep the creation time of the deployment being replaced
    auto s = Stmt::prepare(db_, "SELECT created_at_ms FROM deployments WHERE id = ?", what);
    if (!s) return std::unexpected(s.error());
    s->bind(1, row.id);
    auto found = s->step(what);
    if (!found) return std::unexpected(found.error());
    created = *found ? s->int64(0) : now;
  }

  // Which other deployments lose which arrays (each list ascending, as `arrays` is).
  std::map<std::string, std::vector<int>> taken;
  {
    auto s =
        Stmt::prepare(db_, "SELECT id FROM deployment_arrays WHERE serial = ? AND array = ?", what);
    if (!s) return std::unexpected(s.error());
    for (int a : arrays) {
      s->bind(1, row.serial).bind(2, a);
      auto found = s->step(what);
      if (!found) return std::unexpected(found.error());
      if (*found && s->text(0) != row.id) taken[s->text(0)].push_back(a);
      s->reset();
    }
  }
  // Free what this deployment held and what it takes, then write it and its arrays.
  {
    auto s = Stmt::prepare(db_, "DELETE FROM deployment_arrays WHERE id = ?", what);
    if (!s) return std::unexpected(s.error());
    s->bind(1, row.id);
    if (auto r = s->run(what); !r) return r;
  }
  {
    auto s =
        Stmt::prepare(db_, "DELETE FROM deployment_arrays WHERE serial = ? AND array = ?", what);
    if (!s) return std::unexpected(s.error());
    for (int a : arrays) {
      s->bind(1, row.serial).bind(2, a);
      if (auto r = s->run(what); !r) return r;
    }
  }
  {
    auto s = Stmt::prepare(db_,
                           "INSERT INTO deployments (id, serial, name, state, message, "
                           "created_at_ms, updated_at_ms, archived_at_ms, blob) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?) "
                           "ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, "
                           "name = excluded.name, state = excluded.state, "
                           "message = excluded.message, created_at_ms = excluded.created_at_ms, "
                           "updated_at_ms = excluded.updated_at_ms, archived_at_ms = NULL, "
                           "blob = excluded.blob",
                           what);
    if (!s) return std::unexpected(s.error());
    s->bind(1, row.id)
        .bind(2, row.serial)
        .bind(3, row.name)
        .bind(4, row.state)
        .bind(5, row.message)
        .bind(6, created)
        .bind(7, now)
        .bind(8, bytes_of(row.blob));
    if (auto r = s->run(what); !r) return r;
  }
  {
    auto s = Stmt::prepare(
        db_, "INSERT INTO deployment_arrays (serial, array, id) VALUES (?, ?, ?)", what);
    if (!s) return std::unexpected(s.error());
    for (int a : arrays) {
      s->bind(1, row.serial).bind(2, a).bind(3, row.id);
      if (auto r = s->run(what); !r) return r;
    }
  }
  if (!taken.empty()) {
    auto s = Stmt::prepare(db_,
                           "UPDATE deployments SET state = 'stale', message = ?, "
                           "updated_at_ms = ? WHERE id = ?",
                           what);
    if (!s) return std::unexpected(s.error());
    for (const auto& [other, lost] : taken) {
      const std::string message =
          lost.size() == 1
              ? fmt::format("array {} was taken by deployment {}", lost[0], row.id)
              : fmt::format("arrays {} were taken by deployment {}", fmt::join(lost, ", "), row.id);
      s->bind(1, message).bind(2, now).bind(3, other);
      if (auto r = s->run(what); !r) return r;
    }
  }
  return txn.commit(what);
}

Result<void> ChipRecord::set_deployment_state(std::string_view id, std::string_view state,
                                              std::string_view message) {
  const std::string what = fmt::format("set_deployment_state({})", id);
  if (auto r = check_deployment_id(id, what); !r) return r;
  if (auto r = check_deployment_state(state, what); !r) return r;
  const bool active = state == "deploying" || state == "ready" || state == "degraded";
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  if (active) {
    auto a = Stmt::prepare(db_, "SELECT archived_at_ms FROM deployments WHERE id = ?", what);
    if (!a) return std::unexpected(a.error());
    a->bind(1, id);
    auto found = a->step(what);
    if (!found) return std::unexpected(found.error());
    if (*found && !a->is_null(0))
      return make_error(ErrorCode::kFailedPrecondition,
                        fmt::format("{}: state: deployment {} is archived (its per-device "
                                    "matrices were dropped): it cannot become {}",
                                    what, id, state));
  }
  auto s = Stmt::prepare(
      db_, "UPDATE deployments SET state = ?, message = ?, updated_at_ms = ? WHERE id = ?", what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, state).bind(2, message).bind(3, now_ms()).bind(4, id);
  if (auto r = s->run(what); !r) return r;
  if (sqlite3_changes(db_) == 0)
    return make_error(ErrorCode::kNotFound,
                      fmt::format("{}: id: no deployment {} in the record", what, id));
  return txn.commit(what);
}

namespace {

// One row of a SELECT of kDeploymentColumns, without its arrays.
DeploymentRow read_deployment(const Stmt& s) {
  const auto blob = s.blob(8);
  return DeploymentRow{
      .id = s.text(0),
      .serial = s.text(1),
      .name = s.text(2),
      .state = s.text(3),
      .message = s.text(4),
      .created_at_ms = s.int64(5),
      .updated_at_ms = s.int64(6),
      .archived_at_ms = s.is_null(7) ? 0 : s.int64(7),
      .blob = blob.empty() ? std::string()
                           : std::string(reinterpret_cast<const char*>(blob.data()), blob.size())};
}

// Fills d.arrays with `arrays` ("SELECT array FROM deployment_arrays WHERE id = ? ORDER BY
// array"), which it leaves reset.
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

constexpr const char* kArraysOfDeployment =
    "SELECT array FROM deployment_arrays WHERE id = ? ORDER BY array";

}  // namespace

Result<std::vector<DeploymentRow>> ChipRecord::read_deployments_locked(std::string_view where_sql,
                                                                       std::string_view key,
                                                                       std::string_view what,
                                                                       bool with_blobs) {
  // Without blobs, SQLite never reads the blobs' overflow pages.
  auto s = Stmt::prepare(
      db_,
      fmt::format("SELECT {} FROM deployments WHERE {} "
                  "ORDER BY created_at_ms DESC, id",
                  with_blobs ? kDeploymentColumns : kDeploymentColumnsNoBlob, where_sql),
      what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, key);
  std::vector<DeploymentRow> out;
  for (;;) {
    auto row = s->step(what);
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(read_deployment(*s));
  }
  auto a = Stmt::prepare(db_, kArraysOfDeployment, what);
  if (!a) return std::unexpected(a.error());
  for (DeploymentRow& d : out) {
    if (auto r = read_arrays(*a, d, what); !r) return std::unexpected(r.error());
  }
  return out;
}

Result<DeploymentRow> ChipRecord::deployment(std::string_view id) {
  const std::string what = fmt::format("deployment({})", id);
  if (auto r = check_deployment_id(id, what); !r) return std::unexpected(r.error());
  std::lock_guard lock(mu_);
  ReadTxn read(db_);
  if (auto r = read.begin(what); !r) return std::unexpected(r.error());
  auto rows = read_deployments_locked("id = ?1", id, what);
  if (!rows) return std::unexpected(rows.error());
  if (rows->empty())
    return make_error(ErrorCode::kNotFound,
                      fmt::format("{}: id: no deployment {} in the record", what, id));
  return std::move(rows->front());
}

Result<std::vector<DeploymentRow>> ChipRecord::deployments(std::string_view serial,
                                                           bool with_blobs) {
  const std::string what = fmt::format("deployments({})", serial);
  std::lock_guard lock(mu_);
  ReadTxn read(db_);
  if (auto r = read.begin(what); !r) return std::unexpected(r.error());
  auto g = geometry_locked(serial, std::nullopt, what);
  if (!g) return std::unexpected(g.error());
  return read_deployments_locked("serial = ?1", serial, what, with_blobs);
}

Result<void> ChipRecord::visit_deployments(std::string_view serial, const DeploymentQuery& query,
                                           const std::function<bool(const DeploymentRow&)>& visit) {
  const std::string what = fmt::format("visit_deployments({})", serial);
  std::lock_guard lock(mu_);
  ReadTxn read(db_);
  if (auto r = read.begin(what); !r) return std::unexpected(r.error());
  auto g = geometry_locked(serial, std::nullopt, what);
  if (!g) return std::unexpected(g.error());
  // The listing order is (created_at_ms DESC, id ASC): "after the cursor" is an older
  // deployment, or one as old with a greater id.
  auto s = Stmt::prepare(
      db_,
      fmt::format("SELECT {} FROM deployments WHERE serial = ?1 "
                  "AND (?2 OR archived_at_ms IS NULL) "
                  "AND (?3 = 0 OR created_at_ms < ?4 OR (created_at_ms = ?4 AND id > ?5)) "
                  "ORDER BY created_at_ms DESC, id",
                  kDeploymentColumns),
      what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, serial)
      .bind(2, query.include_archived ? 1 : 0)
      .bind(3, query.after ? 1 : 0)
      .bind(4, query.after ? query.after->created_at_ms : int64_t{0})
      .bind(5, query.after ? std::string_view(query.after->id) : std::string_view());
  auto a = Stmt::prepare(db_, kArraysOfDeployment, what);
  if (!a) return std::unexpected(a.error());
  for (;;) {
    auto row = s->step(what);
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    DeploymentRow d = read_deployment(*s);
    if (auto r = read_arrays(*a, d, what); !r) return std::unexpected(r.error());
    if (!visit(d)) break;
  }
  return {};
}

Result<std::vector<std::string>> ChipRecord::archive_inactive_deployments(std::string_view serial,
                                                                          size_t keep,
                                                                          const ArchiveBlob& slim) {
  const std::string what = fmt::format("archive_inactive_deployments({}, keep {})", serial, keep);
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return std::unexpected(r.error());
  auto g = geometry_locked(serial, std::nullopt, what);
  if (!g) return std::unexpected(g.error());
  // The ids first (small), then one deployment at a time: never all the blobs in memory, and
  // no update of the table while a query over it is still stepping.
  std::vector<std::string> ids;
  {
    auto s =
        Stmt::prepare(db_,
                      "SELECT id FROM (SELECT id, created_at_ms FROM deployments WHERE serial = ?1 "
                      "AND archived_at_ms IS NULL AND state IN ('failed', 'stale', 'lost') "
                      "ORDER BY created_at_ms DESC, id LIMIT -1 OFFSET ?2) AS old "
                      "WHERE NOT EXISTS (SELECT 1 FROM deployment_arrays a WHERE a.id = old.id) "
                      "ORDER BY created_at_ms DESC, id",
                      what);
    if (!s) return std::unexpected(s.error());
    s->bind(1, serial).bind(2, static_cast<int64_t>(std::min<size_t>(keep, INT64_MAX)));
    for (;;) {
      auto row = s->step(what);
      if (!row) return std::unexpected(row.error());
      if (!*row) break;
      ids.push_back(s->text(0));
    }
  }
  if (ids.empty()) return ids;  // nothing written: the transaction rolls back
  auto get = Stmt::prepare(
      db_, fmt::format("SELECT {} FROM deployments WHERE id = ?", kDeploymentColumns), what);
  if (!get) return std::unexpected(get.error());
  auto put =
      Stmt::prepare(db_, "UPDATE deployments SET archived_at_ms = ?, blob = ? WHERE id = ?", what);
  if (!put) return std::unexpected(put.error());
  const int64_t now = now_ms();
  for (const std::string& id : ids) {
    get->bind(1, id);
    auto row = get->step(what);
    if (!row) return std::unexpected(row.error());
    if (!*row) return std::unexpected(corrupt(what, fmt::format("deployment {} vanished", id)));
    const DeploymentRow d = read_deployment(*get);
    get->reset();
    const std::string blob = slim(d, now);
    put->bind(1, now).bind(2, bytes_of(blob)).bind(3, id);
    if (auto r = put->run(what); !r) return std::unexpected(r.error());
  }
  if (auto r = txn.commit(what); !r) return std::unexpected(r.error());
  return ids;
}

Result<std::vector<std::optional<std::string>>> ChipRecord::array_owners(std::string_view serial) {
  const std::string what = fmt::format("array_owners({})", serial);
  std::lock_guard lock(mu_);
  ReadTxn read(db_);
  if (auto r = read.begin(what); !r) return std::unexpected(r.error());
  auto g = geometry_locked(serial, std::nullopt, what);
  if (!g) return std::unexpected(g.error());
  std::vector<std::optional<std::string>> owners(static_cast<size_t>(g->arrays));
  auto s = Stmt::prepare(db_, "SELECT array, id FROM deployment_arrays WHERE serial = ?", what);
  if (!s) return std::unexpected(s.error());
  s->bind(1, serial);
  for (;;) {
    auto row = s->step(what);
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    const int64_t a = s->int64(0);
    if (a < 0 || a >= g->arrays)
      return std::unexpected(
          corrupt(what, fmt::format("deployment array {} outside 0..{}", a, g->arrays - 1)));
    owners[static_cast<size_t>(a)] = s->text(1);
  }
  return owners;
}

Result<void> ChipRecord::delete_deployment(std::string_view id) {
  const std::string what = fmt::format("delete_deployment({})", id);
  if (auto r = check_deployment_id(id, what); !r) return r;
  std::lock_guard lock(mu_);
  Txn txn(db_);
  if (auto r = txn.begin(what); !r) return r;
  // The arrays first and explicitly (ON DELETE CASCADE would also remove them); the changes
  // count of the second statement tells whether the deployment existed.
  for (const char* sql :
       {"DELETE FROM deployment_arrays WHERE id = ?", "DELETE FROM deployments WHERE id = ?"}) {
    auto s = Stmt::prepare(db_, sql, what);
    if (!s) return std::unexpected(s.error());
    s->bind(1, id);
    if (auto r = s->run(what); !r) return r;
  }
  if (sqlite3_changes(db_) == 0)
    return make_error(ErrorCode::kNotFound,
                      fmt::format("{}: id: no deployment {} in the record", what, id));
  return txn.commit(what);
}

Result<std::string> ChipRecord::integrity_check() {
  std::lock_guard lock(mu_);
  std::string out;
  for (const char* sql : {"PRAGMA integrity_check", "PRAGMA foreign_key_check"}) {
    auto s = Stmt::prepare(db_, sql, sql);
    if (!s) return std::unexpected(s.error());
    for (;;) {
      auto row = s->step(sql);
      if (!row) return std::unexpected(row.error());
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
