// The shared prologue of the chip record's calls (see scope.h).
#include "store/scope.h"

#include <fmt/format.h>

#include "store/common.h"

namespace xbar::server {
Result<ChipRecord::Geometry> ChipRecord::Scope::look_up(sqlite3* db, const ChipRef& chip,
                                                        std::string_view what) {
  const std::string_view serial = chip.serial;
  XBAR_RETURN_IF_ERROR(store::check_serial(serial, what));
  XBAR_TRY(s,
           store::Stmt::prepare(db, "SELECT arrays, rows, cols FROM chips WHERE serial = ?", what));
  s->bind(1, serial);
  XBAR_TRY(row, s->step(what));
  if (!*row)
    return make_error(
        ErrorCode::kNotFound,
        fmt::format("{}: serial: chip {} is not in the record (touch_chip first)", what, serial));
  Geometry g{static_cast<int>(s->int64(0)), static_cast<int>(s->int64(1)),
             static_cast<int>(s->int64(2))};
  if (chip.array && (*chip.array < 0 || *chip.array >= g.arrays))
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: array: {} out of range 0..{} for chip {}", what, *chip.array,
                                  g.arrays - 1, serial));
  return g;
}

Result<ChipRecord::Scope> ChipRecord::Scope::begin(ChipRecord& rec, store::Transaction::Mode mode,
                                                   std::string_view what,
                                                   std::optional<ChipRef> chip) {
  std::unique_lock lock(rec.mu_);
  store::Transaction txn(rec.db_, mode);
  XBAR_RETURN_IF_ERROR(txn.begin(what));
  Geometry geometry;
  if (chip) {
    XBAR_TRY(g, look_up(rec.db_, *chip, what));
    geometry = *g;
  }
  return Scope(std::move(lock), std::move(txn), geometry);
}

Result<ChipRecord::Scope> ChipRecord::write_scope(std::string_view what,
                                                  std::optional<ChipRef> chip) {
  return Scope::begin(*this, store::Transaction::Mode::kWrite, what, chip);
}

Result<ChipRecord::Scope> ChipRecord::read_scope(std::string_view what,
                                                 std::optional<ChipRef> chip) {
  return Scope::begin(*this, store::Transaction::Mode::kRead, what, chip);
}

}  // namespace xbar::server
