#include "store/sqlite.h"

#include <fmt/format.h>

#include <cerrno>
#include <utility>

namespace xbar::server::store {

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

Result<void> exec(sqlite3* db, const char* sql, std::string_view what) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sql_error(db, rc, what));
  return {};
}

Result<int64_t> query_int(sqlite3* db, const char* sql, std::string_view what) {
  XBAR_TRY(s, Stmt::prepare(db, sql, what));
  XBAR_TRY(row, s->step(what));
  return *row ? s->int64(0) : 0;
}

Result<Stmt> Stmt::prepare(sqlite3* db, std::string_view sql, std::string_view what) {
  sqlite3_stmt* s = nullptr;
  const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &s, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sql_error(db, rc, what));
  return Stmt(db, s);
}

Stmt& Stmt::bind(int i, std::span<const uint8_t> v) {
  if (v.data() == nullptr)  // bind_blob would store NULL, not an empty BLOB
    sqlite3_bind_zeroblob(s_.get(), i, 0);
  else
    sqlite3_bind_blob(s_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Result<bool> Stmt::step(std::string_view what) {
  const int rc = sqlite3_step(s_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(sql_error(db_, rc, what));
}

Result<void> Stmt::run(std::string_view what) {
  auto r = step(what);
  sqlite3_reset(s_.get());
  XBAR_RETURN_IF_ERROR(r);
  return {};
}

std::string Stmt::text(int col) const {
  const auto* p = sqlite3_column_text(s_.get(), col);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(s_.get(), col)))
           : std::string();
}

std::span<const uint8_t> Stmt::blob(int col) const {
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s_.get(), col));
  return {p, static_cast<size_t>(sqlite3_column_bytes(s_.get(), col))};
}

Transaction::Transaction(Transaction&& other) noexcept
    : db_(other.db_),
      mode_(other.mode_),
      began_(std::exchange(other.began_, false)),
      committed_(other.committed_) {}

Transaction::~Transaction() {
  if (!began_) return;
  if (mode_ == Mode::kRead)
    sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  else if (!committed_ && !sqlite3_get_autocommit(db_))
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

Result<void> Transaction::begin(std::string_view what) {
  auto r = exec(db_, mode_ == Mode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN", what);
  began_ = r.has_value();
  return r;
}

Result<void> Transaction::commit(std::string_view what) {
  auto r = exec(db_, "COMMIT", what);
  committed_ = r.has_value();
  return r;
}

}  // namespace xbar::server::store
