// ChipRecord::Scope: the prologue every call of the chip record shares, as one object. Begun
// by ChipRecord::write_scope / read_scope, it holds the record's mutex, a transaction and the
// chip the call named (looked up inside that transaction); it ends the transaction before it
// lets the mutex go (a write rolled back unless committed). Internal to server/src/store/.
//
//   XBAR_TRY(scope, write_scope(what, ChipRef{serial, array}));
//   ... writes, using scope->chip() ...
//   return scope->commit(what);
#pragma once

#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include "chip_record.h"
#include "store/sqlite.h"

namespace xbar::server {

class ChipRecord::Scope {
 public:
  Scope(Scope&&) noexcept = default;
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  Scope& operator=(Scope&&) = delete;
  ~Scope() = default;

  /// The chip named when the scope began (all zeros when none was).
  const Geometry& chip() const { return chip_; }
  /// Writes: commits. Without it the end of the scope rolls the transaction back.
  Result<void> commit(std::string_view what) { return txn_.commit(what); }

 private:
  friend class ChipRecord;

  static Result<Scope> begin(ChipRecord& rec, store::Transaction::Mode mode, std::string_view what,
                             std::optional<ChipRef> chip);
  // Looks the chip up (kNotFound if unknown) and checks `array` against it when given.
  static Result<Geometry> look_up(sqlite3* db, const ChipRef& chip, std::string_view what);
  Scope(std::unique_lock<std::mutex> lock, store::Transaction txn, Geometry chip)
      : lock_(std::move(lock)), txn_(std::move(txn)), chip_(chip) {}

  // Members end in reverse order: the transaction ends while the mutex is still held.
  std::unique_lock<std::mutex> lock_;
  store::Transaction txn_;
  Geometry chip_;
};

}  // namespace xbar::server
