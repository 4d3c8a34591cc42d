// The chip record's history of programming each array: the per-device pulse counters
// (endurance), the last program-verify of each array, and a whole program-verify run written
// as one transaction.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <utility>

#include "chip_record.h"
#include "store/common.h"
#include "store/scope.h"
#include "store/sqlite.h"

namespace xbar::server {
namespace {

using store::Stmt;

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

// The checks record_programming makes before it writes.
Result<void> check_programming(const ProgrammingRecord& rec, int rows, int cols,
                               std::string_view serial, std::string_view what) {
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
  if (rec.abandoned < 0 || rec.abandoned > rows * cols)
    return bad("abandoned", fmt::format("{} out of range 0..{}", rec.abandoned, rows * cols));
  XBAR_RETURN_IF_ERROR(check_matrix(rec.target_uS, rows, cols, "target_uS", serial, what));
  return check_matrix(rec.readback_uS, rows, cols, "readback_uS", serial, what);
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

}  // namespace

Result<void> ChipRecord::add_pulses_locked(std::string_view serial, int array, const Geometry& g,
                                           const Eigen::MatrixXi& set_delta,
                                           const Eigen::MatrixXi& reset_delta,
                                           std::string_view what) {
  XBAR_RETURN_IF_ERROR(check_matrix(set_delta, g.rows, g.cols, "set_delta", serial, what));
  XBAR_RETURN_IF_ERROR(check_matrix(reset_delta, g.rows, g.cols, "reset_delta", serial, what));
  // One prepared statement reused for every device, inside the caller's transaction: the cost
  // is the B-tree work, not parsing or fsync (one fsync at COMMIT). Measured (RelWithDebInfo,
  // ext4 VM disk, 2 cores): a full 64x64 array, commit included, 4.7-5.1 ms (~1.2 us/device);
  // a one-row commit is 0.2-0.5 ms. ChipRecord.AddPulsesFullArrayIsFast prints the figures.
  XBAR_TRY(s, Stmt::prepare(db_,
                            "INSERT INTO endurance (serial, array, row, col, set_pulses, "
                            "reset_pulses) VALUES (?, ?, ?, ?, ?, ?) "
                            "ON CONFLICT (serial, array, row, col) DO UPDATE SET "
                            "set_pulses = set_pulses + excluded.set_pulses, "
                            "reset_pulses = reset_pulses + excluded.reset_pulses",
                            what));
  s->bind(1, serial).bind(2, array);
  for (int r = 0; r < g.rows; ++r)
    for (int c = 0; c < g.cols; ++c) {
      if (set_delta(r, c) == 0 && reset_delta(r, c) == 0) continue;  // nothing to add
      s->bind(3, r).bind(4, c).bind(5, set_delta(r, c)).bind(6, reset_delta(r, c));
      XBAR_RETURN_IF_ERROR(s->run(what));
    }
  return {};
}

Result<void> ChipRecord::add_pulses(std::string_view serial, int array,
                                    const Eigen::MatrixXi& set_delta,
                                    const Eigen::MatrixXi& reset_delta) {
  const std::string what = fmt::format("add_pulses({}, array {})", serial, array);
  XBAR_TRY(scope, write_scope(what, ChipRef{serial, array}));
  XBAR_RETURN_IF_ERROR(
      add_pulses_locked(serial, array, scope->chip(), set_delta, reset_delta, what));
  return scope->commit(what);
}

Result<Endurance> ChipRecord::endurance(std::string_view serial, int array) {
  const std::string what = fmt::format("endurance({}, array {})", serial, array);
  XBAR_TRY(scope, read_scope(what, ChipRef{serial, array}));
  const Geometry& g = scope->chip();
  Endurance e{Eigen::MatrixXi::Zero(g.rows, g.cols), Eigen::MatrixXi::Zero(g.rows, g.cols)};
  XBAR_TRY(s, Stmt::prepare(db_,
                            "SELECT row, col, set_pulses, reset_pulses FROM endurance "
                            "WHERE serial = ? AND array = ?",
                            what));
  s->bind(1, serial).bind(2, array);
  for (;;) {
    XBAR_TRY(row, s->step(what));
    if (!*row) break;
    const int64_t r = s->int64(0), c = s->int64(1);
    if (r >= g.rows || c >= g.cols)
      return std::unexpected(
          store::corrupt(what, fmt::format("device ({}, {}) outside {}x{}", r, c, g.rows, g.cols)));
    e.set_pulses(r, c) = static_cast<int>(std::min<int64_t>(s->int64(2), INT_MAX));
    e.reset_pulses(r, c) = static_cast<int>(std::min<int64_t>(s->int64(3), INT_MAX));
  }
  return e;
}

Result<void> ChipRecord::record_programming_locked(std::string_view serial, int array,
                                                   const Geometry& g, const ProgrammingRecord& rec,
                                                   std::string_view what) {
  XBAR_RETURN_IF_ERROR(check_programming(rec, g.rows, g.cols, serial, what));
  XBAR_TRY(s, Stmt::prepare(db_,
                            "INSERT OR REPLACE INTO programming (serial, array, programmed_at_ms, "
                            "tol_uS, rows, cols, target_f32le, readback_f32le, within_tol_pct, "
                            "rounds, abandoned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            what));
  const auto target = to_f32le(rec.target_uS);
  const auto readback = to_f32le(rec.readback_uS);
  s->bind(1, serial)
      .bind(2, array)
      .bind(3, rec.programmed_at_ms == 0 ? store::now_ms() : rec.programmed_at_ms)
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
  XBAR_TRY(scope, write_scope(what, ChipRef{serial, array}));
  XBAR_RETURN_IF_ERROR(record_programming_locked(serial, array, scope->chip(), record, what));
  return scope->commit(what);
}

Result<std::optional<ProgrammingRecord>> ChipRecord::last_programming(std::string_view serial,
                                                                      int array) {
  const std::string what = fmt::format("last_programming({}, array {})", serial, array);
  XBAR_TRY(scope, read_scope(what, ChipRef{serial, array}));
  XBAR_TRY(s, Stmt::prepare(db_,
                            "SELECT programmed_at_ms, tol_uS, rows, cols, target_f32le, "
                            "readback_f32le, within_tol_pct, rounds, abandoned FROM programming "
                            "WHERE serial = ? AND array = ?",
                            what));
  s->bind(1, serial).bind(2, array);
  XBAR_TRY(row, s->step(what));
  if (!*row) return std::optional<ProgrammingRecord>();
  const int rows = static_cast<int>(s->int64(2)), cols = static_cast<int>(s->int64(3));
  const auto target = s->blob(4);
  const auto readback = s->blob(5);
  const size_t bytes = static_cast<size_t>(rows) * cols * 4;
  const Geometry& g = scope->chip();
  if (rows != g.rows || cols != g.cols || target.size() != bytes || readback.size() != bytes)
    return std::unexpected(store::corrupt(what, "programming matrices do not match the chip"));
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
  XBAR_TRY(scope, write_scope(what, ChipRef{serial, array}));
  const Geometry& g = scope->chip();
  XBAR_RETURN_IF_ERROR(record_programming_locked(serial, array, g, run.programming, what));
  XBAR_RETURN_IF_ERROR(add_pulses_locked(serial, array, g, run.set_delta, run.reset_delta, what));
  XBAR_RETURN_IF_ERROR(upsert_faults_locked(serial, g, run.faults, array, what));
  return scope->commit(what);
}

}  // namespace xbar::server
