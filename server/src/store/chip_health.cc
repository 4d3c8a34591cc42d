// The chip record's chips and their fault maps: touch_chip and chips(), and the faults (when
// and how each was found). Pulse counters and programming records are in endurance.cc.
#include <fmt/format.h>

#include <cmath>
#include <set>
#include <utility>

#include "chip_record.h"
#include "store/common.h"
#include "store/scope.h"
#include "store/sqlite.h"

namespace xbar::server {
namespace {

using store::Stmt;

constexpr int kMaxArrays = 64;
constexpr int kMaxDim = 1024;

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

// The checks touch_chip makes before it touches the file.
Result<void> check_chip(const ChipInfo& chip, std::string_view what) {
  XBAR_RETURN_IF_ERROR(store::check_serial(chip.serial, "touch_chip"));
  auto range = [&](std::string_view field, int v, int hi) -> Result<void> {
    if (v < 1 || v > hi)
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: {}: {} out of range 1..{}", what, field, v, hi));
    return {};
  };
  XBAR_RETURN_IF_ERROR(range("arrays", chip.arrays, kMaxArrays));
  XBAR_RETURN_IF_ERROR(range("rows", chip.rows, kMaxDim));
  return range("cols", chip.cols, kMaxDim);
}

// Refuses a known serial reporting a different geometry.
Result<void> check_same_geometry(sqlite3* db, const ChipInfo& chip, std::string_view what) {
  XBAR_TRY(s, Stmt::prepare(db, "SELECT arrays, rows, cols FROM chips WHERE serial = ?", what));
  s->bind(1, chip.serial);
  XBAR_TRY(row, s->step(what));
  if (*row && (s->int64(0) != chip.arrays || s->int64(1) != chip.rows || s->int64(2) != chip.cols))
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: geometry: chip was recorded with {} arrays of {}x{}, "
                                  "now reports {} of {}x{}",
                                  what, s->int64(0), s->int64(1), s->int64(2), chip.arrays,
                                  chip.rows, chip.cols));
  return {};
}

// The first complaint about one fault entry, or nothing.
Result<void> check_fault(const FaultEntry& e, size_t i, int arrays, int rows, int cols,
                         std::optional<int> only_array, std::string_view what) {
  auto bad = [&](std::string_view field, const std::string& detail) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: entries[{}].{}: {}", what, i, field, detail));
  };
  if (only_array && e.array != *only_array)
    return bad("array", fmt::format("{} but this call writes array {}", e.array, *only_array));
  if (e.array < 0 || e.array >= arrays)
    return bad("array", fmt::format("{} out of range 0..{}", e.array, arrays - 1));
  if (e.row < 0 || e.row >= rows)
    return bad("row", fmt::format("{} out of range 0..{}", e.row, rows - 1));
  if (e.col < 0 || e.col >= cols)
    return bad("col", fmt::format("{} out of range 0..{}", e.col, cols - 1));
  if (e.kind != wire::FaultKind::kStuckHigh && e.kind != wire::FaultKind::kStuckLow &&
      e.kind != wire::FaultKind::kSlow)
    return bad("kind", fmt::format("{} is not a fault (stuck_high, stuck_low or slow)",
                                   static_cast<int>(e.kind)));
  if (fault_method_name(e.method) == "?")
    return bad("method", fmt::format("{} is not a method", static_cast<int>(e.method)));
  if (e.found_at_ms < 0) return bad("found_at_ms", fmt::format("{} < 0", e.found_at_ms));
  if (e.g_uS && !std::isfinite(*e.g_uS))
    return bad("g_uS", fmt::format("{} is not a finite conductance", *e.g_uS));
  return {};
}

// One row of the SELECT in faults().
Result<FaultEntry> read_fault(const Stmt& s, std::string_view what) {
  auto kind = parse_kind(s.text(3));
  auto method = parse_method(s.text(4));
  if (!kind || !method)
    return std::unexpected(store::corrupt(what, "unknown fault kind or method"));
  return FaultEntry{.array = static_cast<int>(s.int64(0)),
                    .row = static_cast<int>(s.int64(1)),
                    .col = static_cast<int>(s.int64(2)),
                    .kind = *kind,
                    .method = *method,
                    .found_at_ms = s.int64(5),
                    .confirmed_at_ms = s.int64(6),
                    .g_uS = s.is_null(7) ? std::nullopt : std::optional<double>(s.real(7))};
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

Result<void> ChipRecord::touch_chip(const ChipInfo& chip) {
  const std::string what = fmt::format("touch_chip({})", chip.serial);
  XBAR_RETURN_IF_ERROR(check_chip(chip, what));
  XBAR_TRY(scope, write_scope(what));
  XBAR_RETURN_IF_ERROR(check_same_geometry(db_, chip, what));
  XBAR_TRY(
      s, Stmt::prepare(db_,
                       "INSERT INTO chips (serial, first_seen_ms, last_seen_ms, "
                       "firmware_version, arrays, rows, cols) VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6) "
                       "ON CONFLICT (serial) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, "
                       "firmware_version = excluded.firmware_version",
                       what));
  s->bind(1, chip.serial)
      .bind(2, store::now_ms())
      .bind(3, chip.firmware_version)
      .bind(4, chip.arrays)
      .bind(5, chip.rows)
      .bind(6, chip.cols);
  XBAR_RETURN_IF_ERROR(s->run(what));
  return scope->commit(what);
}

Result<std::vector<ChipInfo>> ChipRecord::chips() {
  std::lock_guard lock(mu_);
  XBAR_TRY(s, Stmt::prepare(db_,
                            "SELECT serial, firmware_version, arrays, rows, cols, first_seen_ms, "
                            "last_seen_ms FROM chips ORDER BY serial",
                            "chips"));
  std::vector<ChipInfo> out;
  for (;;) {
    XBAR_TRY(row, s->step("chips"));
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

Result<void> ChipRecord::upsert_faults_locked(std::string_view serial, const Geometry& g,
                                              std::span<const FaultEntry> entries,
                                              std::optional<int> only_array,
                                              std::string_view what) {
  // Validate everything before the first write: the caller's transaction would roll back
  // anyway, but a message about the first bad entry is clearer than a half-applied batch.
  for (size_t i = 0; i < entries.size(); ++i)
    XBAR_RETURN_IF_ERROR(check_fault(entries[i], i, g.arrays, g.rows, g.cols, only_array, what));
  XBAR_TRY(s,
           Stmt::prepare(db_,
                         "INSERT INTO faults (serial, array, row, col, kind, method, found_at_ms, "
                         "confirmed_at_ms, g_uS) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8) "
                         "ON CONFLICT (serial, array, row, col) DO UPDATE SET "
                         "kind = excluded.kind, method = excluded.method, g_uS = excluded.g_uS, "
                         // min/max rather than keep/replace: observations recorded out of order
                         // still give the first-found and latest-confirmed times.
                         "found_at_ms = min(found_at_ms, excluded.found_at_ms), "
                         "confirmed_at_ms = max(confirmed_at_ms, excluded.confirmed_at_ms)",
                         what));
  const int64_t now = store::now_ms();
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
    XBAR_RETURN_IF_ERROR(s->run(what));
  }
  return {};
}

Result<void> ChipRecord::record_faults(std::string_view serial,
                                       std::span<const FaultEntry> entries) {
  const std::string what = fmt::format("record_faults({})", serial);
  XBAR_TRY(scope, write_scope(what, ChipRef{serial, std::nullopt}));
  XBAR_RETURN_IF_ERROR(upsert_faults_locked(serial, scope->chip(), entries, std::nullopt, what));
  return scope->commit(what);
}

Result<void> ChipRecord::replace_faults(std::string_view serial, int array,
                                        std::span<const FaultEntry> entries) {
  const std::string what = fmt::format("replace_faults({}, array {})", serial, array);
  if (array < 0)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: array: {} must be >= 0", what, array));
  XBAR_TRY(scope, write_scope(what, ChipRef{serial, array}));
  // Upsert first (validating), then drop what the new map does not hold.
  XBAR_RETURN_IF_ERROR(upsert_faults_locked(serial, scope->chip(), entries, array, what));
  std::set<std::pair<int, int>> keep;
  for (const FaultEntry& e : entries) keep.emplace(e.row, e.col);
  std::vector<std::pair<int, int>> drop;
  {
    XBAR_TRY(
        s, Stmt::prepare(db_, "SELECT row, col FROM faults WHERE serial = ? AND array = ?", what));
    s->bind(1, serial).bind(2, array);
    for (;;) {
      XBAR_TRY(row, s->step(what));
      if (!*row) break;
      std::pair<int, int> rc{static_cast<int>(s->int64(0)), static_cast<int>(s->int64(1))};
      if (!keep.contains(rc)) drop.push_back(rc);
    }
  }
  XBAR_TRY(
      del,
      Stmt::prepare(
          db_, "DELETE FROM faults WHERE serial = ? AND array = ? AND row = ? AND col = ?", what));
  for (auto [r, c] : drop) {
    del->bind(1, serial).bind(2, array).bind(3, r).bind(4, c);
    XBAR_RETURN_IF_ERROR(del->run(what));
  }
  return scope->commit(what);
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
  XBAR_TRY(scope, read_scope(what, ChipRef{serial, array}));
  XBAR_TRY(s, Stmt::prepare(db_,
                            "SELECT array, row, col, kind, method, found_at_ms, confirmed_at_ms, "
                            "g_uS FROM faults WHERE serial = ?1 AND (?2 IS NULL OR array = ?2) "
                            "ORDER BY array, row, col",
                            what));
  s->bind(1, serial);
  if (array)
    s->bind(2, *array);
  else
    s->bind_null(2);
  std::vector<FaultEntry> out;
  for (;;) {
    XBAR_TRY(row, s->step(what));
    if (!*row) break;
    XBAR_TRY(fault, read_fault(*s, what));
    out.push_back(*fault);
  }
  return out;
}

}  // namespace xbar::server
