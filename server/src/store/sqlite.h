// The chip record's small SQLite toolkit: everything the store's files need from SQLite's C
// API, and nothing about chips or deployments. A prepared statement that finalizes itself
// (Stmt: bind, step, read columns), one-shot execution (exec, query_int), a transaction that
// rolls back unless committed (Transaction), and the mapping of SQLite result codes to
// xbar::Error (sql_error). Internal to server/src/store/: nothing outside it includes this.
//
// Every call takes `what`: the operation (or file) that error messages start with.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "xbar/base/error.h"

namespace xbar::server::store {

/// Maps an SQLite result code to our codes: BUSY/LOCKED -> kBusy, PERM/READONLY/AUTH (and
/// CANTOPEN for EACCES) -> kPermissionDenied, NOTADB -> kInvalidArgument, else kInternal.
/// The message is "<what>: <SQLite's message>".
Error sql_error(sqlite3* db, int rc, std::string_view what);

/// Runs SQL that returns no rows (one statement or several separated by ';').
Result<void> exec(sqlite3* db, const char* sql, std::string_view what);

/// Runs a single-value query (a PRAGMA read): the first column of the first row as integer,
/// 0 when there is no row.
Result<int64_t> query_int(sqlite3* db, const char* sql, std::string_view what);

/// A prepared statement; bind*() take 1-based indices as SQLite does, the column readers
/// 0-based ones.
class Stmt {
 public:
  static Result<Stmt> prepare(sqlite3* db, std::string_view sql, std::string_view what);

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
  /// An empty span binds an empty BLOB, never NULL.
  Stmt& bind(int i, std::span<const uint8_t> v);
  Stmt& bind_null(int i) {
    sqlite3_bind_null(s_.get(), i);
    return *this;
  }

  /// One step: true when a row is available, false when done.
  Result<bool> step(std::string_view what);
  /// Ends a query early (or after its last row), ready for the next bindings.
  void reset() { sqlite3_reset(s_.get()); }
  /// Runs a statement that returns no rows, then resets it for the next bindings.
  Result<void> run(std::string_view what);

  int64_t int64(int col) const { return sqlite3_column_int64(s_.get(), col); }
  double real(int col) const { return sqlite3_column_double(s_.get(), col); }
  bool is_null(int col) const { return sqlite3_column_type(s_.get(), col) == SQLITE_NULL; }
  std::string text(int col) const;
  std::span<const uint8_t> blob(int col) const;

 private:
  struct Finalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };

  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, Finalize> s_;
};

/// A transaction on `db`, ended when the object goes away unless ended before.
/// kWrite: BEGIN IMMEDIATE takes the write lock up front, so a writer never has to upgrade a
/// read lock halfway (which can fail with SQLITE_BUSY regardless of the timeout); rolled back
/// unless committed, so an early return leaves the file as it was.
/// kRead: BEGIN; reads that span several statements see one snapshot, even while another
/// process writes; ended with COMMIT (nothing to roll back).
class Transaction {
 public:
  enum class Mode : uint8_t { kRead, kWrite };

  Transaction(sqlite3* db, Mode mode) : db_(db), mode_(mode) {}
  ~Transaction();
  Transaction(Transaction&& other) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;

  Result<void> begin(std::string_view what);
  /// Writes only: COMMIT. If it fails, the end of the object rolls back.
  Result<void> commit(std::string_view what);

 private:
  sqlite3* db_;
  Mode mode_;
  bool began_ = false;
  bool committed_ = false;
};

}  // namespace xbar::server::store
