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

namespace {

// One scan of one array: the phases of scan_faults as steps over the state they share. Every
// board error after the first pulse is reported as having disturbed the array.
class Scan {
 public:
  Scan(Board& board, int array, const FaultScanConfig& cfg, const ScanProgressFn& progress,
       const BeforeBatchFn& before_batch)
      : board_(board),
        array_(array),
        cfg_(cfg),
        progress_(progress),
        before_batch_(before_batch),
        rows_(board.info().rows),
        cols_(board.info().cols),
        hard_(hard_pulses(cfg, board.info())) {
    res_.array = array;
    res_.destructive = !cfg.restore;
    res_.fault.setConstant(rows_, cols_, static_cast<uint8_t>(wire::FaultKind::kNone));
  }

  Result<FaultScanResult> run() {
    auto st0 = board_.status();
    ++res_.transactions;
    if (!st0) return std::unexpected(st0.error());
    start_ns_ = st0->uptime_ns;
    XBAR_RETURN_IF_ERROR(remember());
    if (!report(ScanPhase::kRemember, 0, 0)) return cancelled(ScanPhase::kRemember);
    // SET first, so the scan ends hard-RESET: a destructive scan leaves the array in its known,
    // lowest-current state (HRS). The restore does equally well from either end (measured).
    XBAR_TRY(after_set, pulse_all_and_read(wire::Polarity::kSet));
    res_.after_set_uS = std::move(*after_set);
    const Mask low = (res_.after_set_uS.array() < cfg_.stuck_low_uS).matrix();
    if (!report(ScanPhase::kSet, 0, static_cast<int>(low.count()))) {
      return cancelled(ScanPhase::kSet);
    }
    XBAR_TRY(after_reset, pulse_all_and_read(wire::Polarity::kReset));
    res_.after_reset_uS = std::move(*after_reset);
    const Mask high = (res_.after_reset_uS.array() > cfg_.stuck_high_uS).matrix();
    // A device high after RESET is stuck-high whatever its SET read said (a stuck device does
    // not move either way; high after RESET is the stronger evidence).
    const Mask low_only = (low.array() && !high.array()).matrix();
    if (!report(ScanPhase::kReset, static_cast<int>(high.count()),
                static_cast<int>(low_only.count()))) {
      return cancelled(ScanPhase::kReset);
    }
    Mask stuck_high = high, stuck_low = low_only;
    const bool confirming = cfg_.confirm && (high.any() || low_only.any());
    if (confirming) XBAR_RETURN_IF_ERROR(confirm(high, low_only, stuck_high, stuck_low));
    record_findings(stuck_high, stuck_low);
    if (confirming && !report(ScanPhase::kConfirm, res_.stuck_high, res_.stuck_low)) {
      return cancelled(ScanPhase::kConfirm);
    }
    if (!cfg_.restore) return finish(ScanPhase::kDone);
    XBAR_RETURN_IF_ERROR(restore((stuck_high.array() || stuck_low.array()).matrix()));
    return finish(res_.cancelled ? ScanPhase::kRestore : ScanPhase::kDone);
  }

 private:
  // Board time is the board's own clock, so it includes settle waits and pulse widths on the
  // real board and on the twin alike.
  Result<FaultScanResult> finish(ScanPhase last) {
    auto st1 = board_.status();
    ++res_.transactions;
    if (!st1) return std::unexpected(disturbed_error(st1.error(), array_, batches_));
    res_.board_time_us = static_cast<double>(st1->uptime_ns - start_ns_) / 1000.0;
    if (!res_.restore) res_.scan_board_time_us = res_.board_time_us;
    if (progress_ && last == ScanPhase::kDone) {
      ScanProgress p{ScanPhase::kDone, res_.stuck_high, res_.stuck_low, res_.transactions, {}};
      progress_(p);
    }
    return std::move(res_);
  }
  Result<FaultScanResult> cancelled(ScanPhase phase) {
    res_.cancelled = true;
    return finish(phase);
  }
  bool report(ScanPhase phase, int high, int low) {
    if (!progress_) return true;
    return progress_(ScanProgress{phase, high, low, res_.transactions, {}});
  }
  Result<Eigen::MatrixXd> read(const ReadOptions& o) {
    auto m = board_.read_array(array_, o);
    ++res_.transactions;
    if (!m) return std::unexpected(disturbed_error(m.error(), array_, batches_));
    return std::move(m->g_uS);
  }
  Result<void> apply(const PulseBatch& batch) {
    if (batch.devices.empty()) return {};
    if (before_batch_ && !before_batch_(batch)) {
      return make_error(
          ErrorCode::kCancelled,
          fmt::format("scan of array {} stopped before a pulse batch by its caller", array_));
    }
    auto r = board_.pulse(array_, batch);
    ++res_.transactions;
    if (!r) return std::unexpected(disturbed_error(r.error(), array_, batches_));
    ++batches_;
    res_.pulses += r->n_pulsed;
    res_.disturbed = true;
    return {};
  }

  // The array's content before anything is pulsed, averaged over remember_passes reads.
  Result<void> remember() {
    res_.before_uS.setZero(rows_, cols_);
    for (int i = 0; i < cfg_.remember_passes; ++i) {
      XBAR_TRY(before, read(cfg_.remember_read));
      res_.before_uS += *before / cfg_.remember_passes;
    }
    return {};
  }

  // One phase: one MIXED PULSE_BATCH giving every device `p`, then a settled averaged read.
  Result<Eigen::MatrixXd> pulse_all_and_read(wire::Polarity p) {
    PulseBatch b{wire::Polarity::kMixed, {}};
    b.devices.reserve(static_cast<size_t>(rows_) * cols_);
    for (int r = 0; r < rows_; ++r) {
      for (int c = 0; c < cols_; ++c) b.devices.push_back(hard_pulse(hard_, r, c, p));
    }
    XBAR_RETURN_IF_ERROR(apply(b));
    return read(cfg_.scan_read);
  }

  // Pulses the candidates once more; what still does not move is stuck.
  Result<void> confirm(const Mask& high, const Mask& low_only, Mask& stuck_high, Mask& stuck_low) {
    PulseBatch b{wire::Polarity::kMixed, {}};
    for (int r = 0; r < rows_; ++r) {
      for (int c = 0; c < cols_; ++c) {
        if (high(r, c)) b.devices.push_back(hard_pulse(hard_, r, c, wire::Polarity::kReset));
        if (low_only(r, c)) b.devices.push_back(hard_pulse(hard_, r, c, wire::Polarity::kSet));
      }
    }
    XBAR_RETURN_IF_ERROR(apply(b));
    XBAR_TRY(again, read(cfg_.scan_read));
    stuck_high = (high.array() && (again->array() > cfg_.stuck_high_uS)).matrix();
    stuck_low = (low_only.array() && (again->array() < cfg_.stuck_low_uS)).matrix();
    res_.rejected_candidates =
        static_cast<int>(high.count() + low_only.count() - stuck_high.count() - stuck_low.count());
    return {};
  }

  void record_findings(const Mask& stuck_high, const Mask& stuck_low) {
    for (int r = 0; r < rows_; ++r) {
      for (int c = 0; c < cols_; ++c) {
        wire::FaultKind k = wire::FaultKind::kNone;
        double g = 0;
        if (stuck_high(r, c)) {
          k = wire::FaultKind::kStuckHigh;
          g = res_.after_reset_uS(r, c);
          ++res_.stuck_high;
        } else if (stuck_low(r, c)) {
          k = wire::FaultKind::kStuckLow;
          g = res_.after_set_uS(r, c);
          ++res_.stuck_low;
        } else {
          continue;
        }
        res_.fault(r, c) = static_cast<uint8_t>(k);
        res_.findings.push_back({r, c, k, FaultSource::kScan, false, g});
      }
    }
  }

  // Program-verify back to what the array held, skipping the stuck devices.
  Result<void> restore(const Mask& skip) {
    const ProgramVerifyConfig& pv = cfg_.restore_config;
    Eigen::MatrixXd target = res_.before_uS;
    for (int r = 0; r < rows_; ++r) {
      for (int c = 0; c < cols_; ++c) {
        const double t = std::clamp(target(r, c), pv.target_min_uS, pv.target_max_uS);
        // Stuck devices are skipped; only the others count as clamped.
        res_.restore_report.clamped += !skip(r, c) && t != target(r, c);
        target(r, c) = t;
      }
    }
    auto st_scan = board_.status();
    ++res_.transactions;
    if (!st_scan) return std::unexpected(disturbed_error(st_scan.error(), array_, batches_));
    res_.scan_board_time_us = static_cast<double>(st_scan->uptime_ns - start_ns_) / 1000.0;
    auto restored = program_verify(
        board_, array_, target, pv,
        [&](const ProgramVerifyProgress& p) {
          if (p.batch && before_batch_ && !before_batch_(*p.batch)) return false;
          if (!progress_) return true;
          return progress_(ScanProgress{ScanPhase::kRestore, res_.stuck_high, res_.stuck_low,
                                        res_.transactions + p.transactions, p});
        },
        &skip);
    if (!restored) return std::unexpected(disturbed_error(restored.error(), array_, batches_));
    res_.transactions += restored->transactions;
    RestoreReport& rr = res_.restore_report;
    rr.rounds = restored->rounds;
    rr.abandoned = static_cast<int>(restored->abandoned.size());
    rr.within_tol_pct = restored->within_tolerance(pv.tol_uS, pv.tol_rel);
    double sq = 0;
    for (int r = 0; r < rows_; ++r) {
      for (int c = 0; c < cols_; ++c) {
        if (skip(r, c)) continue;
        ++rr.devices;
        sq += std::pow(restored->final_uS(r, c) - res_.before_uS(r, c), 2);
      }
    }
    rr.rms_error_uS = rr.devices ? std::sqrt(sq / rr.devices) : 0;
    res_.cancelled = restored->cancelled;
    // The array holds its old content again only if the restore ran to its end.
    res_.disturbed = restored->cancelled;
    res_.restore = std::move(*restored);
    return {};
  }

  Board& board_;
  const int array_;
  const FaultScanConfig& cfg_;
  const ScanProgressFn& progress_;
  const BeforeBatchFn& before_batch_;
  const int rows_, cols_;
  const HardPulses hard_;
  FaultScanResult res_;
  int batches_ = 0;
  uint64_t start_ns_ = 0;  // the board's uptime when the scan began
};

}  // namespace

Result<FaultScanResult> scan_faults(Board& board, int array, const FaultScanConfig& cfg,
                                    const ScanProgressFn& progress,
                                    const BeforeBatchFn& before_batch) {
  const BoardInfo& info = board.info();
  // Nothing is pulsed unless everything is valid.
  if (auto v = check_array(array, info); !v) return std::unexpected(v.error());
  if (auto v = validate(cfg, info); !v) return std::unexpected(v.error());
  return Scan(board, array, cfg, progress, before_batch).run();
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
