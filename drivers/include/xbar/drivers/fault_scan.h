// Stuck-device detection (DESIGN.md §3): an active scan that drives every device of one array to
// both ends of its range with hard pulses and flags what does not move, a read-only quick check,
// and the faults a program-verify run reveals on the way. Runs unchanged on the real board and on
// the twin; physical units throughout.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/wire/messages.h"

namespace xbar {

/// How a finding was made: with pulses (certain), from a program-verify run, or from one read
/// (a suspicion only).
enum class FaultSource : uint8_t { kScan = 0, kProgramVerify = 1, kQuickCheck = 2 };
std::string_view fault_source_name(FaultSource s);

struct FaultFinding {
  int row = 0;
  int col = 0;
  /// kStuckHigh / kStuckLow, or kSlow for a device program-verify gave up on that is neither
  /// (it moves, but not to its target within the ramps: "unresponsive", not proven stuck).
  wire::FaultKind kind = wire::FaultKind::kNone;
  FaultSource source = FaultSource::kScan;
  /// True when the evidence is one read (quick check): a RESET device can legitimately read low.
  bool suspected = false;
  double g_uS = 0;  // the conductance that gave it away (the read that crossed the threshold)
};

// ------------------------------------------------------------------------------------------------
// Active scan

struct FaultScanConfig {
  // Hard pulses. Unset = the top of the board's range (BoardInfo), which is what "hard" means:
  // a slow device (0.15x rates on the twin) still moves all the way with these.
  std::optional<double> reset_v_V;     // RESET source voltage
  std::optional<double> reset_gate_V;  // RESET gate
  std::optional<double> set_v_V;       // SET drain voltage
  std::optional<double> set_gate_V;    // SET gate: sets the compliance, so the top gives the most
  std::optional<double> width_ns;      // both polarities

  // A device above stuck_high_uS after the hard RESET is stuck-high; one below stuck_low_uS after
  // the hard SET is stuck-low. Defaults from the chip family: a hard RESET aims at the HRS floor
  // (1-2 uS), a hard SET at the top compliance (~256 uS, ceiling 300 uS), but one pulse's
  // cycle-to-cycle spread is 15-25 % of its ~250 uS step, so a healthy device lands anywhere
  // within ~40-65 uS (1 sigma) of its aim: the thresholds sit ~6 sigma (typical) to ~4 sigma
  // (harsh) from both aims and outside the stuck ranges (stuck-high 300-600 uS, stuck-low
  // 0.2-1 uS).
  double stuck_high_uS = 250.0;
  double stuck_low_uS = 5.0;

  // The read that remembers the array (averaged, no settle: it records what the array holds now).
  ReadOptions remember_read{.gain_index = 2, .n_avg = 64, .settle_ms = 0};
  // READs of remember_read averaged into the remembered map. The read fluctuation is
  // heavy-tailed (RMS ~5.5 uS per read at >= 50 uS): with 64 x 1 reads ~12 % of devices are
  // remembered more than 1 uS off, which the restore then faithfully reproduces.
  int remember_passes = 4;
  // The reads after each hard phase. Relaxation (sigma 5 uS away from 20-80 uS) and read noise
  // are small next to the pulse spread above, so one relaxation time constant of settle (not the
  // full ~1 s) is enough.
  ReadOptions scan_read{.gain_index = 2, .n_avg = 16, .settle_ms = 200};

  // Pulse the devices that look stuck once more (RESET the high ones, SET the low ones) and flag
  // only those that still do not move: on the harsh profile a healthy device lands past a
  // threshold with p ~ 1e-4 per hard pulse (measured: 16 candidates in 20 arrays, 0 on typical);
  // twice in a row ~1e-8. Costs one PULSE_BATCH + one READ, only when there are candidates.
  bool confirm = true;

  // Program the array back to the remembered conductances after the scan (stuck devices are
  // skipped). With restore = false the scan is destructive: the array is left hard-RESET (most
  // healthy devices near the HRS floor, the rest spread up to ~100 uS by the pulse's
  // cycle-to-cycle noise), and the caller must have asked the user to confirm that.
  bool restore = true;
  ProgramVerifyConfig restore_config;
};

enum class ScanPhase : uint8_t {
  kRemember = 0,  // reading the array as it is
  kSet = 1,       // hard SET of every device + read
  kReset = 2,     // hard RESET of every device + read
  kConfirm = 3,   // second pulse for the candidates + read
  kRestore = 4,   // program-verify back to the remembered map
  kDone = 5,
};
std::string_view scan_phase_name(ScanPhase p);

struct ScanProgress {
  ScanPhase phase = ScanPhase::kRemember;  // the phase just completed (kRestore: one PV round)
  int stuck_high = 0;  // candidates (before kConfirm) or confirmed (from kConfirm on)
  int stuck_low = 0;
  int transactions = 0;           // so far
  ProgramVerifyProgress restore;  // valid in phase kRestore
};

/// Called after every phase (and after every restore round); return false to stop. A scan
/// stopped after the first pulse leaves the array disturbed and says so (result.disturbed); the
/// remembered map is in the result for a later restore.
using ScanProgressFn = std::function<bool(const ScanProgress&)>;

struct RestoreReport {
  int devices = 0;            // devices programmed back (not stuck)
  int clamped = 0;            // remembered value outside the program-verify target window
  double within_tol_pct = 0;  // of those, share whose last verify read is within tol
  double rms_error_uS = 0;    // RMS(last verify read - remembered value), not-stuck devices
  int abandoned = 0;          // devices program-verify gave up on
  int rounds = 0;
};

struct FaultScanResult {
  int array = 0;
  Eigen::Matrix<uint8_t, Eigen::Dynamic, Eigen::Dynamic> fault;  // wire::FaultKind per device
  Eigen::MatrixXd before_uS;                                     // the remembered map
  Eigen::MatrixXd after_set_uS;                                  // read after the hard SET
  Eigen::MatrixXd after_reset_uS;                                // read after the hard RESET
  std::vector<FaultFinding> findings;  // the stuck devices, row-major order
  int stuck_high = 0;
  int stuck_low = 0;
  int rejected_candidates = 0;    // looked stuck after the first pulse, moved on the second
  int pulses = 0;                 // device pulses applied by the scan (restore not included)
  int transactions = 0;           // board requests issued, restore and STATUS included
  double board_time_us = 0;       // board clock elapsed, restore included (STATUS before/after)
  double scan_board_time_us = 0;  // the part before the restore
  /// True when the scan was asked not to restore: the array's previous content is gone.
  bool destructive = false;
  /// True when the array does not hold its previous content at the end (destructive, or
  /// cancelled before the restore ran to its end). How well a finished restore did is in
  /// restore_report.
  bool disturbed = false;
  bool cancelled = false;
  std::optional<ProgramVerifyResult> restore;  // the restore run, when restore = true
  RestoreReport restore_report;
};

/// Called with every PULSE_BATCH the scan is about to send (its own and the restore's), so a
/// caller can count the pulses before they happen (write-ahead endurance). Return false to
/// stop before the batch is sent (the scan then fails with kCancelled and the array is left as
/// the result of the previous batch).
using BeforeBatchFn = std::function<bool(const PulseBatch&)>;

/// Runs the active scan on `array`. Validates everything before the first pulse.
Result<FaultScanResult> scan_faults(Board& board, int array, const FaultScanConfig& config,
                                    const ScanProgressFn& progress = {},
                                    const BeforeBatchFn& before_batch = {});

/// Checks a scan config against the board (names the field and its allowed range).
Result<void> validate(const FaultScanConfig& config, const BoardInfo& info);

// ------------------------------------------------------------------------------------------------
// Read-only quick check

struct QuickCheckConfig {
  ReadOptions read{.gain_index = 2, .n_avg = 16, .settle_ms = 0};
  // Above anything the programming window (<= 250 uS) and a healthy device's ceiling allow.
  double suspect_high_uS = 280.0;
  // Below the HRS floor: an unformed device, or a healthy one relaxed low after a deep RESET.
  double suspect_low_uS = 0.8;
};

struct QuickCheckResult {
  int array = 0;
  Eigen::MatrixXd g_uS;
  std::vector<FaultFinding> findings;  // all suspected = true
  int suspected_high = 0;
  int suspected_low = 0;
  int saturated = 0;  // devices above the read's full scale (certainly high)
};

/// One averaged read, no pulses: devices above suspect_high_uS are suspected stuck-high, below
/// suspect_low_uS suspected stuck-low.
Result<QuickCheckResult> quick_check(Board& board, int array, const QuickCheckConfig& config);

Result<void> validate(const QuickCheckConfig& config, const BoardInfo& info);

// ------------------------------------------------------------------------------------------------
// From program-verify

struct PvFaultThresholds {
  double high_uS = 280.0;  // abandoned going DOWN and still above this: stuck-high
  double low_uS = 1.5;     // abandoned going UP and still below this: never left the floor
};

/// The devices `result` abandoned, classified: stuck-high if it needed to go down and reads
/// high, stuck-low if it needed to go up and reads low, otherwise kSlow (unresponsive: moves,
/// but did not reach its target); plus devices still pending at the end that read above
/// `high_uS` while they needed to go down (stuck-high that the ramps did not give up on yet).
/// Row-major order.
std::vector<FaultFinding> faults_from_program_verify(const ProgramVerifyResult& result,
                                                     const PvFaultThresholds& thresholds = {});

}  // namespace xbar
