// Program-verify (DESIGN.md §3): drive every device of one array to its target conductance with
// batched rounds of one PULSE_BATCH (SETs and RESETs mixed) and one settled, averaged READ.
// Each device keeps its own controller state; devices that exhaust their ramps are abandoned
// and reported. Runs unchanged on the real board and on the twin.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/board.h"

namespace xbar {

struct ProgramVerifyConfig {
  // Tolerance with hysteresis. A device's estimate is the mean of the verify reads since its
  // last pulse (it is settled and unchanged between them), n of them. It is done when
  // |estimate - target| <= tol - min(verify_margin_uS, tol / 2) / sqrt(n) (tol_in) and pulsed
  // again only beyond tol + reopen_margin_uS / sqrt(n) (tol_out). With tol_rel > 0 the
  // tolerance is max(tol_uS, tol_rel * target). The margins absorb the averaged read's
  // fluctuation (~0.8 uS, heavy-tailed); more reads shrink them, so a device that landed near
  // the edge of the band is judged on more evidence instead of being sent back into the
  // relaxation lottery (measured in bench/RESULTS.md).
  double tol_uS = 4.0;
  double tol_rel = 0.0;
  double verify_margin_uS = 1.4;
  double reopen_margin_uS = 0.0;
  // The margins above are for devices at or above read_noise_cap_uS; below, they scale as
  // (G / cap)^slope like the read fluctuation (DESIGN.md §2: 0.782, 50 uS): a device at 7 uS
  // reads ~4x less noisily than one at 50 uS, so it can be held to a tighter band.
  double read_noise_cap_uS = 50.0;
  double read_noise_slope = 0.782;
  // Optional per-device tolerance (rows x cols, uS) instead of tol_uS / tol_rel: a deploy holds
  // devices outside the relaxation window, which land easily, to a tighter band.
  Eigen::MatrixXd device_tol_uS;
  // A pending device between tol_in and tol_out is read again (next round) instead of pulsed,
  // up to this many reads since its last pulse (1 = never wait).
  int max_wait_reads = 3;
  // Rounds of (PULSE_BATCH + READ) after the first READ: 29 rounds are 59 board transactions.
  int max_rounds = 29;
  // Verify reads: averaged, after the devices relaxed (READ.settle_ms).
  ReadOptions verify{.gain_index = 2, .n_avg = 64, .settle_ms = 1000};
  // Target window the devices can hold.
  double target_min_uS = 1.0;
  double target_max_uS = 250.0;

  // SET: the gate sets the compliance G_c = set_compliance_uS_per_V * (gate - set_gate_threshold_V)
  // (the chip family's calibration); the controller picks the compliance that lands on the
  // target given its estimate of how far one pulse goes, and learns each device's compliance.
  double set_v_V = 3.0;
  double set_compliance_uS_per_V = 160.0;
  double set_gate_threshold_V = 0.4;
  double set_k_nominal = 3.3;  // -ln(remaining fraction of the gap) of one SET pulse
  // RESET: G -> floor + (G - floor) exp(-k), k = reset_rate_per_V * (V - reset_v_threshold_V).
  double reset_gate_V = 5.2;
  double reset_rate_per_V = 1.5;
  double reset_v_threshold_V = 0.5;
  double g_floor_uS = 1.0;
  // What a read after programming is worth: relaxation spread (DESIGN.md §2) and the
  // cycle-to-cycle spread relative to a pulse's step; they weight what each pulse teaches.
  double relax_sigma_mid_uS = 15.0, relax_sigma_other_uS = 5.0;
  double relax_mid_lo_uS = 20.0, relax_mid_hi_uS = 80.0;
  double c2c_rel = 0.15;
  // Widths: start here, doubled for a device that moves less than half of what was asked
  // (slow devices need the top of the ramp), up to the board's maximum.
  double width_ns = 100.0;
  double reset_width_ns = 20.0;  // RESET pulses start shorter (scaled by the same ramp)
  // A device whose width ramp has topped out this many times without reaching the target is
  // abandoned.
  int max_retries = 3;
};

enum class DeviceOutcome : uint8_t { kConverged = 0, kPending = 1, kAbandoned = 2, kSkipped = 3 };

struct ProgramVerifyProgress {
  int round = 0;  // 0 = the first read, before any pulse
  int converged = 0;
  int pending = 0;
  int abandoned = 0;
  int pulses = 0;        // pulses applied in this round
  int transactions = 0;  // board requests issued so far (READs and PULSE_BATCHes)
  /// The batch about to be sent (nullptr when nothing more will be sent), so a caller can
  /// record the pulses before they happen (write-ahead: a crash over-counts, never under-counts).
  const PulseBatch* batch = nullptr;
};

struct ProgramVerifyResult {
  Eigen::MatrixXd target_uS;
  Eigen::MatrixXd final_uS;                                        // the last verify read
  Eigen::Matrix<uint8_t, Eigen::Dynamic, Eigen::Dynamic> outcome;  // DeviceOutcome
  Eigen::MatrixXi set_pulses, reset_pulses;
  int rounds = 0;
  int transactions = 0;      // board requests issued (READs and PULSE_BATCHes)
  double pulse_time_us = 0;  // board time spent pulsing (sum of PULSE_BATCH durations)
  bool cancelled = false;
  std::vector<wire::Cell> abandoned;
  // Board restarts met during a PULSE_BATCH (ErrorCode::kRestarted): whether that batch was
  // applied is unknown, so its devices were read back and programming went on from what the
  // read showed, learning nothing from that batch. Never resent as it was.
  int board_restarts = 0;

  /// Share of the programmed (not skipped) devices whose last read is within `tol_uS`.
  double within_tolerance(double tol_uS, double tol_rel = 0) const;
  /// The same with the config's tolerance (its per-device tolerance when it has one).
  double within_tolerance(const ProgramVerifyConfig& config) const;
};

/// Called after every round; return false to stop. Cancellation leaves every device as the
/// last pulse left it and the result says which devices converged (reported state).
using ProgressFn = std::function<bool(const ProgramVerifyProgress&)>;

/// Programs `target_uS` (rows x cols, uS) onto `array`. Devices where `skip` is true (e.g.
/// known stuck devices) are neither pulsed nor counted. Validates everything before the first
/// pulse: a bad target leaves the array untouched.
Result<ProgramVerifyResult> program_verify(
    Board& board, int array, const Eigen::MatrixXd& target_uS, const ProgramVerifyConfig& config,
    const ProgressFn& progress = {},
    const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>* skip = nullptr);

/// Checks a config (names the field and its allowed range).
Result<void> validate(const ProgramVerifyConfig& config, const BoardInfo& info);

/// Everything program_verify checks before its first exchange: the array, the target's shape
/// and every target within the config's window, the skip mask's shape, the config. A caller
/// with side effects of its own (a record to update, a deployment to mark) calls this first.
Result<void> validate_program(
    const BoardInfo& info, int array, const Eigen::MatrixXd& target_uS,
    const ProgramVerifyConfig& config,
    const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>* skip = nullptr);

}  // namespace xbar
