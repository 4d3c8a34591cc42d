#include "xbar/drivers/fault_scan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace xbar {

namespace {

using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

std::unexpected<Error> bad(std::string message) {
  return make_error(ErrorCode::kInvalidArgument, std::move(message));
}

Result<void> check_array(int array, const BoardInfo& info) {
  if (array < 0 || array >= info.arrays) {
    return bad(fmt::format("array = {}: allowed 0..{}", array, info.arrays - 1));
  }
  return {};
}

Result<void> check_read(const ReadOptions& o, std::string_view field, const BoardInfo& info) {
  const int gains = static_cast<int>(info.tia_gains_ohm.size());
  if (o.gain_index < 0 || o.gain_index >= gains) {
    return bad(fmt::format("{}.gain_index = {}: allowed 0..{}", field, o.gain_index, gains - 1));
  }
  if (o.n_avg < 1 || o.n_avg > info.max_read_avg) {
    return bad(fmt::format("{}.n_avg = {}: allowed 1..{}", field, o.n_avg, info.max_read_avg));
  }
  if (o.settle_ms < 0 || o.settle_ms > wire::ReadRequest::kMaxSettleMs) {
    return bad(fmt::format("{}.settle_ms = {}: allowed 0..{}", field, o.settle_ms,
                           wire::ReadRequest::kMaxSettleMs));
  }
  return {};
}

Result<void> check_volts(const std::optional<double>& v, std::string_view field,
                         const VoltageRange& range) {
  if (v && !(std::isfinite(*v) && *v >= range.lo_V && *v <= range.hi_V)) {
    return bad(fmt::format("{} = {}: allowed {}..{} V", field, *v, range.lo_V, range.hi_V));
  }
  return {};
}

// The hard pulse parameters after the defaults (top of the board's ranges) are applied.
struct HardPulses {
  double reset_v, reset_gate, set_v, set_gate, width_ns;
};

HardPulses hard_pulses(const FaultScanConfig& c, const BoardInfo& info) {
  return {c.reset_v_V.value_or(info.reset_v.hi_V), c.reset_gate_V.value_or(info.reset_gate.hi_V),
          c.set_v_V.value_or(info.set_v.hi_V), c.set_gate_V.value_or(info.set_gate.hi_V),
          c.width_ns.value_or(static_cast<double>(info.width_max_ns))};
}

DevicePulse hard_pulse(const HardPulses& h, int row, int col, wire::Polarity p) {
  const bool set = p == wire::Polarity::kSet;
  return {row, col, set ? h.set_v : h.reset_v, set ? h.set_gate : h.reset_gate, h.width_ns, p};
}

// Tags a mid-scan board error with what the scan had already done to the array, so the caller
// knows the array is no longer what it was.
Error disturbed_error(Error e, int array, int batches) {
  if (batches > 0) {
    e.message += fmt::format(
        " (fault scan of array {} stopped after {} pulse batch(es): the "
        "array is disturbed)",
        array, batches);
  }
  return e;
}

}  // namespace

std::string_view fault_source_name(FaultSource s) {
  switch (s) {
    case FaultSource::kScan:
      return "scan";
    case FaultSource::kProgramVerify:
      return "program_verify";
    case FaultSource::kQuickCheck:
      return "quick_check";
  }
  return "?";
}

std::string_view scan_phase_name(ScanPhase p) {
  switch (p) {
    case ScanPhase::kRemember:
      return "remember";
    case ScanPhase::kSet:
      return "set";
    case ScanPhase::kReset:
      return "reset";
    case ScanPhase::kConfirm:
      return "confirm";
    case ScanPhase::kRestore:
      return "restore";
    case ScanPhase::kDone:
      return "done";
  }
  return "?";
}

Result<void> validate(const FaultScanConfig& c, const BoardInfo& info) {
  if (auto v = check_volts(c.reset_v_V, "reset_v_V", info.reset_v); !v) return v;
  if (auto v = check_volts(c.reset_gate_V, "reset_gate_V", info.reset_gate); !v) return v;
  if (auto v = check_volts(c.set_v_V, "set_v_V", info.set_v); !v) return v;
  if (auto v = check_volts(c.set_gate_V, "set_gate_V", info.set_gate); !v) return v;
  if (c.width_ns && !(std::isfinite(*c.width_ns) && *c.width_ns >= info.width_step_ns &&
                      *c.width_ns <= info.width_max_ns)) {
    return bad(fmt::format("width_ns = {}: allowed {}..{} ns", *c.width_ns, info.width_step_ns,
                           info.width_max_ns));
  }
  if (auto v = check_read(c.remember_read, "remember_read", info); !v) return v;
  if (c.remember_passes < 1 || c.remember_passes > 16) {
    return bad(fmt::format("remember_passes = {}: allowed 1..16", c.remember_passes));
  }
  if (auto v = check_read(c.scan_read, "scan_read", info); !v) return v;
  // A stuck-high device reads at most full scale: above it, the threshold could never trip.
  const double fs = info.full_scale_uS(c.scan_read.gain_index);
  if (!(std::isfinite(c.stuck_high_uS) && c.stuck_high_uS > 0 && c.stuck_high_uS < fs)) {
    return bad(
        fmt::format("stuck_high_uS = {}: allowed (0, {:.1f}) uS (full scale of "
                    "scan_read.gain_index {})",
                    c.stuck_high_uS, fs, c.scan_read.gain_index));
  }
  if (!(std::isfinite(c.stuck_low_uS) && c.stuck_low_uS > 0 && c.stuck_low_uS < c.stuck_high_uS)) {
    return bad(fmt::format("stuck_low_uS = {}: allowed (0, stuck_high_uS = {}) uS", c.stuck_low_uS,
                           c.stuck_high_uS));
  }
  if (c.restore) {
    if (auto v = validate(c.restore_config, info); !v) {
      return bad("restore_config." + v.error().message);
    }
  }
  return {};
}

Result<FaultScanResult> scan_faults(Board& board, int array, const FaultScanConfig& cfg,
                                    const ScanProgressFn& progress,
                                    const BeforeBatchFn& before_batch) {
  const BoardInfo& info = board.info();
  // ---- validation: nothing is pulsed unless everything is valid ----
  if (auto v = check_array(array, info); !v) return std::unexpected(v.error());
  if (auto v = validate(cfg, info); !v) return std::unexpected(v.error());

  const int rows = info.rows, cols = info.cols;
  const HardPulses hard = hard_pulses(cfg, info);
  FaultScanResult res;
  res.array = array;
  res.destructive = !cfg.restore;
  res.fault.setConstant(rows, cols, static_cast<uint8_t>(wire::FaultKind::kNone));
  int batches = 0;

  auto st0 = board.status();
  ++res.transactions;
  if (!st0) return std::unexpected(st0.error());
  // Board time is the board's own clock, so it includes settle waits and pulse widths on the
  // real board and on the twin alike.
  auto finish = [&](ScanPhase last) -> Result<FaultScanResult> {
    auto st1 = board.status();
    ++res.transactions;
    if (!st1) return std::unexpected(disturbed_error(st1.error(), array, batches));
    res.board_time_us = static_cast<double>(st1->uptime_ns - st0->uptime_ns) / 1000.0;
    if (!res.restore) res.scan_board_time_us = res.board_time_us;
    if (progress && last == ScanPhase::kDone) {
      ScanProgress p{ScanPhase::kDone, res.stuck_high, res.stuck_low, res.transactions, {}};
      progress(p);
    }
    return std::move(res);
  };
  auto report = [&](ScanPhase phase, int high, int low) {
    if (!progress) return true;
    return progress(ScanProgress{phase, high, low, res.transactions, {}});
  };
  auto read = [&](const ReadOptions& o) -> Result<Eigen::MatrixXd> {
    auto m = board.read_array(array, o);
    ++res.transactions;
    if (!m) return std::unexpected(disturbed_error(m.error(), array, batches));
    return std::move(m->g_uS);
  };
  auto apply = [&](const PulseBatch& batch) -> Result<void> {
    if (batch.devices.empty()) return {};
    if (before_batch && !before_batch(batch)) {
      return make_error(
          ErrorCode::kCancelled,
          fmt::format("scan of array {} stopped before a pulse batch by its caller", array));
    }
    auto r = board.pulse(array, batch);
    ++res.transactions;
    if (!r) return std::unexpected(disturbed_error(r.error(), array, batches));
    ++batches;
    res.pulses += r->n_pulsed;
    res.disturbed = true;
    return {};
  };
  // One phase = one MIXED PULSE_BATCH giving every device `p`, then a settled averaged read.
  auto all_devices = [&](wire::Polarity p) {
    PulseBatch b{wire::Polarity::kMixed, {}};
    b.devices.reserve(static_cast<size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) b.devices.push_back(hard_pulse(hard, r, c, p));
    }
    return b;
  };

  // ---- remember ----
  res.before_uS.setZero(rows, cols);
  for (int i = 0; i < cfg.remember_passes; ++i) {
    auto before = read(cfg.remember_read);
    if (!before) return std::unexpected(before.error());
    res.before_uS += *before / cfg.remember_passes;
  }
  if (!report(ScanPhase::kRemember, 0, 0)) {
    res.cancelled = true;
    return finish(ScanPhase::kRemember);
  }

  // ---- hard SET, then hard RESET ----
  // SET first, so the scan ends hard-RESET: a destructive scan leaves the array in its known,
  // lowest-current state (HRS). The restore does equally well from either end (measured).
  if (auto a = apply(all_devices(wire::Polarity::kSet)); !a) return std::unexpected(a.error());
  auto after_set = read(cfg.scan_read);
  if (!after_set) return std::unexpected(after_set.error());
  res.after_set_uS = std::move(*after_set);
  const Mask low = (res.after_set_uS.array() < cfg.stuck_low_uS).matrix();
  if (!report(ScanPhase::kSet, 0, static_cast<int>(low.count()))) {
    res.cancelled = true;
    return finish(ScanPhase::kSet);
  }

  if (auto a = apply(all_devices(wire::Polarity::kReset)); !a) return std::unexpected(a.error());
  auto after_reset = read(cfg.scan_read);
  if (!after_reset) return std::unexpected(after_reset.error());
  res.after_reset_uS = std::move(*after_reset);
  const Mask high = (res.after_reset_uS.array() > cfg.stuck_high_uS).matrix();
  // A device high after RESET is stuck-high whatever its SET read said (a stuck device does
  // not move either way; high after RESET is the stronger evidence).
  const Mask low_only = (low.array() && !high.array()).matrix();
  if (!report(ScanPhase::kReset, static_cast<int>(high.count()),
              static_cast<int>(low_only.count()))) {
    res.cancelled = true;
    return finish(ScanPhase::kReset);
  }

  // ---- confirm: pulse the candidates once more, flag what still does not move ----
  Mask stuck_high = high, stuck_low = low_only;
  const bool confirming = cfg.confirm && (high.any() || low_only.any());
  if (confirming) {
    PulseBatch b{wire::Polarity::kMixed, {}};
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        if (high(r, c)) b.devices.push_back(hard_pulse(hard, r, c, wire::Polarity::kReset));
        if (low_only(r, c)) b.devices.push_back(hard_pulse(hard, r, c, wire::Polarity::kSet));
      }
    }
    if (auto a = apply(b); !a) return std::unexpected(a.error());
    auto again = read(cfg.scan_read);
    if (!again) return std::unexpected(again.error());
    stuck_high = (high.array() && (again->array() > cfg.stuck_high_uS)).matrix();
    stuck_low = (low_only.array() && (again->array() < cfg.stuck_low_uS)).matrix();
    res.rejected_candidates =
        static_cast<int>(high.count() + low_only.count() - stuck_high.count() - stuck_low.count());
  }
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      wire::FaultKind k = wire::FaultKind::kNone;
      double g = 0;
      if (stuck_high(r, c)) {
        k = wire::FaultKind::kStuckHigh;
        g = res.after_reset_uS(r, c);
        ++res.stuck_high;
      } else if (stuck_low(r, c)) {
        k = wire::FaultKind::kStuckLow;
        g = res.after_set_uS(r, c);
        ++res.stuck_low;
      } else {
        continue;
      }
      res.fault(r, c) = static_cast<uint8_t>(k);
      res.findings.push_back({r, c, k, FaultSource::kScan, false, g});
    }
  }
  if (confirming && !report(ScanPhase::kConfirm, res.stuck_high, res.stuck_low)) {
    res.cancelled = true;
    return finish(ScanPhase::kConfirm);
  }

  // ---- restore ----
  if (!cfg.restore) return finish(ScanPhase::kDone);
  const ProgramVerifyConfig& pv = cfg.restore_config;
  Eigen::MatrixXd target = res.before_uS;
  const Mask skip = (stuck_high.array() || stuck_low.array()).matrix();
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const double t = std::clamp(target(r, c), pv.target_min_uS, pv.target_max_uS);
      // Stuck devices are skipped; only the others count as clamped.
      res.restore_report.clamped += !skip(r, c) && t != target(r, c);
      target(r, c) = t;
    }
  }
  auto st_scan = board.status();
  ++res.transactions;
  if (!st_scan) return std::unexpected(disturbed_error(st_scan.error(), array, batches));
  res.scan_board_time_us = static_cast<double>(st_scan->uptime_ns - st0->uptime_ns) / 1000.0;
  auto restored = program_verify(
      board, array, target, pv,
      [&](const ProgramVerifyProgress& p) {
        if (p.batch && before_batch && !before_batch(*p.batch)) return false;
        if (!progress) return true;
        return progress(ScanProgress{ScanPhase::kRestore, res.stuck_high, res.stuck_low,
                                     res.transactions + p.transactions, p});
      },
      &skip);
  if (!restored) return std::unexpected(disturbed_error(restored.error(), array, batches));
  res.transactions += restored->transactions;
  RestoreReport& rr = res.restore_report;
  rr.rounds = restored->rounds;
  rr.abandoned = static_cast<int>(restored->abandoned.size());
  rr.within_tol_pct = restored->within_tolerance(pv.tol_uS, pv.tol_rel);
  double sq = 0;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      if (skip(r, c)) continue;
      ++rr.devices;
      sq += std::pow(restored->final_uS(r, c) - res.before_uS(r, c), 2);
    }
  }
  rr.rms_error_uS = rr.devices ? std::sqrt(sq / rr.devices) : 0;
  res.cancelled = restored->cancelled;
  // The array holds its old content again only if the restore ran to its end.
  res.disturbed = restored->cancelled;
  res.restore = std::move(*restored);
  return finish(res.cancelled ? ScanPhase::kRestore : ScanPhase::kDone);
}

// ------------------------------------------------------------------------------------------------

Result<void> validate(const QuickCheckConfig& c, const BoardInfo& info) {
  if (auto v = check_read(c.read, "read", info); !v) return v;
  const double fs = info.full_scale_uS(c.read.gain_index);
  if (!(std::isfinite(c.suspect_high_uS) && c.suspect_high_uS > 0 && c.suspect_high_uS < fs)) {
    return bad(
        fmt::format("suspect_high_uS = {}: allowed (0, {:.1f}) uS (full scale of "
                    "read.gain_index {})",
                    c.suspect_high_uS, fs, c.read.gain_index));
  }
  if (!(std::isfinite(c.suspect_low_uS) && c.suspect_low_uS > 0 &&
        c.suspect_low_uS < c.suspect_high_uS)) {
    return bad(fmt::format("suspect_low_uS = {}: allowed (0, suspect_high_uS = {}) uS",
                           c.suspect_low_uS, c.suspect_high_uS));
  }
  return {};
}

Result<QuickCheckResult> quick_check(Board& board, int array, const QuickCheckConfig& cfg) {
  const BoardInfo& info = board.info();
  if (auto v = check_array(array, info); !v) return std::unexpected(v.error());
  if (auto v = validate(cfg, info); !v) return std::unexpected(v.error());
  auto m = board.read_array(array, cfg.read);
  if (!m) return std::unexpected(m.error());
  QuickCheckResult res;
  res.array = array;
  res.g_uS = std::move(m->g_uS);
  res.saturated = m->saturated;
  for (int r = 0; r < res.g_uS.rows(); ++r) {
    for (int c = 0; c < res.g_uS.cols(); ++c) {
      const double g = res.g_uS(r, c);
      wire::FaultKind k = wire::FaultKind::kNone;
      if (g > cfg.suspect_high_uS) {
        k = wire::FaultKind::kStuckHigh;
        ++res.suspected_high;
      } else if (g < cfg.suspect_low_uS) {
        k = wire::FaultKind::kStuckLow;
        ++res.suspected_low;
      } else {
        continue;
      }
      res.findings.push_back({r, c, k, FaultSource::kQuickCheck, true, g});
    }
  }
  return res;
}

// ------------------------------------------------------------------------------------------------

std::vector<FaultFinding> faults_from_program_verify(const ProgramVerifyResult& result,
                                                     const PvFaultThresholds& t) {
  std::vector<FaultFinding> out;
  for (int r = 0; r < result.outcome.rows(); ++r) {
    for (int c = 0; c < result.outcome.cols(); ++c) {
      const double g = result.final_uS(r, c), e = g - result.target_uS(r, c);
      const auto outcome = result.outcome(r, c);
      if (outcome == static_cast<uint8_t>(DeviceOutcome::kSkipped)) continue;
      if (outcome != static_cast<uint8_t>(DeviceOutcome::kAbandoned)) {
        // Not given up on, but after the whole run it still reads above anything a healthy
        // device can be programmed to while it needed to go down: it ignored every RESET.
        if (e > 0 && g > t.high_uS && outcome == static_cast<uint8_t>(DeviceOutcome::kPending)) {
          out.push_back({r, c, wire::FaultKind::kStuckHigh, FaultSource::kProgramVerify, false, g});
        }
        continue;
      }
      wire::FaultKind k = wire::FaultKind::kSlow;
      if (e > 0 && g > t.high_uS) {
        k = wire::FaultKind::kStuckHigh;
      } else if (e < 0 && g < t.low_uS) {
        k = wire::FaultKind::kStuckLow;
      }
      out.push_back({r, c, k, FaultSource::kProgramVerify, false, g});
    }
  }
  return out;
}

}  // namespace xbar
