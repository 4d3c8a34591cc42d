#include "xbar/drivers/program_verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace xbar {

namespace {

using Outcome = DeviceOutcome;

// One scalar Kalman update in the log domain: an observation with variance `obs_var` moves
// the estimate (variance `var`) by the gain var / (var + obs_var). Observations taken through
// a large relaxation offset therefore teach little, clean ones a lot.
double learn(double estimate, double& var, double observed, double obs_var, double lo, double hi) {
  observed = std::clamp(observed, lo, hi);
  const double gain = var / (var + obs_var);
  var = (1 - gain) * var;
  return std::clamp(std::exp(std::log(estimate) + gain * (std::log(observed) - std::log(estimate))),
                    lo, hi);
}

// The controller's memory of one device: what it has learned of the device's response to
// SET (its compliance relative to the chip model) and RESET (its decay rate), and its ramp.
struct Ctl {
  Outcome state = Outcome::kPending;
  double compliance = 1.0;       // G_c of this device / model G_c
  double reset_rate = 1.0;       // RESET decay rate of this device / model rate
  double compliance_var = 0.01;  // variance of ln(compliance): 10 % device-to-device spread
  double reset_rate_var = 0.09;  // variance of ln(reset_rate): rate and threshold spread
  double width_ns = 100;
  int retries = 0;
  int weak_strikes = 0;  // consecutive pulses that moved far less than predicted
  bool pulsed = false;   // in the previous round
  bool learn = true;     // false when that pulse's batch met a board restart (applied or not?)
  wire::Polarity last = wire::Polarity::kSet;
  double g_before = 0;
  double g_c_model = 0, rem = 0;  // SET: model compliance used and remaining gap fraction
  double k_used = 0;              // RESET: model decay used
  bool at_limit = false;          // the last pulse was clamped at the top of its range
  // The verify reads since the last pulse: the device is settled and unchanged between them,
  // so their mean is a better estimate than any one of them.
  double read_sum_uS = 0;
  int reads = 0;
};

// Restarts during one program-verify before it gives up (a board that keeps restarting is
// broken, not glitching).
constexpr int kMaxRestarts = 8;

// Observed moves below this are read noise and relaxation, not the pulse.
constexpr double kNoMove_uS = 1.5;
// The relaxation spread a read after programming carries (DESIGN.md §2).
double relax_sigma(const ProgramVerifyConfig& c, double g_uS) {
  return g_uS > c.relax_mid_lo_uS && g_uS < c.relax_mid_hi_uS ? c.relax_sigma_mid_uS
                                                              : c.relax_sigma_other_uS;
}

double tolerance(const ProgramVerifyConfig& c, double target) {
  return std::max(c.tol_uS, c.tol_rel * target);
}

}  // namespace

double ProgramVerifyResult::within_tolerance(double tol_uS, double tol_rel) const {
  int n = 0, ok = 0;
  for (int r = 0; r < target_uS.rows(); ++r) {
    for (int c = 0; c < target_uS.cols(); ++c) {
      if (outcome(r, c) == static_cast<uint8_t>(Outcome::kSkipped)) continue;
      ++n;
      const double tol = std::max(tol_uS, tol_rel * target_uS(r, c));
      ok += std::abs(final_uS(r, c) - target_uS(r, c)) <= tol;
    }
  }
  return n ? 100.0 * ok / n : 100.0;
}

double ProgramVerifyResult::within_tolerance(const ProgramVerifyConfig& cfg) const {
  if (cfg.device_tol_uS.size() == 0) return within_tolerance(cfg.tol_uS, cfg.tol_rel);
  int n = 0, ok = 0;
  for (int r = 0; r < target_uS.rows(); ++r) {
    for (int c = 0; c < target_uS.cols(); ++c) {
      if (outcome(r, c) == static_cast<uint8_t>(Outcome::kSkipped)) continue;
      ++n;
      ok += std::abs(final_uS(r, c) - target_uS(r, c)) <= cfg.device_tol_uS(r, c);
    }
  }
  return n ? 100.0 * ok / n : 100.0;
}

Result<void> validate(const ProgramVerifyConfig& c, const BoardInfo& info) {
  auto bad = [](std::string m) { return make_error(ErrorCode::kInvalidArgument, std::move(m)); };
  if (!(c.tol_uS > 0 && c.tol_uS <= 100)) {
    return bad(fmt::format("tol_uS = {}: allowed (0, 100]", c.tol_uS));
  }
  if (!(c.tol_rel >= 0 && c.tol_rel <= 1)) {
    return bad(fmt::format("tol_rel = {}: allowed 0..1", c.tol_rel));
  }
  if (!(c.verify_margin_uS >= 0 && c.verify_margin_uS <= 100)) {
    return bad(fmt::format("verify_margin_uS = {}: allowed 0..100", c.verify_margin_uS));
  }
  if (c.max_wait_reads < 1 || c.max_wait_reads > 100) {
    return bad(fmt::format("max_wait_reads = {}: allowed 1..100", c.max_wait_reads));
  }
  if (c.device_tol_uS.size() != 0 &&
      (c.device_tol_uS.rows() != info.rows || c.device_tol_uS.cols() != info.cols ||
       !(c.device_tol_uS.minCoeff() > 0) || !(c.device_tol_uS.maxCoeff() <= 100))) {
    return bad(
        fmt::format("device_tol_uS: need {}x{} values in (0, 100] uS", info.rows, info.cols));
  }
  if (!(c.read_noise_cap_uS > 0 && c.read_noise_slope >= 0 && c.read_noise_slope <= 2)) {
    return bad("read_noise_cap_uS > 0 and read_noise_slope 0..2 needed");
  }
  if (!(c.reopen_margin_uS >= 0 && c.reopen_margin_uS <= 100)) {
    return bad(fmt::format("reopen_margin_uS = {}: allowed 0..100", c.reopen_margin_uS));
  }
  if (c.max_rounds < 1 || c.max_rounds > 1000) {
    return bad(fmt::format("max_rounds = {}: allowed 1..1000", c.max_rounds));
  }
  if (!(c.set_v_V >= info.set_v.lo_V && c.set_v_V <= info.set_v.hi_V)) {
    return bad(
        fmt::format("set_v_V = {}: allowed {}..{} V", c.set_v_V, info.set_v.lo_V, info.set_v.hi_V));
  }
  if (!(c.reset_gate_V >= info.reset_gate.lo_V && c.reset_gate_V <= info.reset_gate.hi_V)) {
    return bad(fmt::format("reset_gate_V = {}: allowed {}..{} V", c.reset_gate_V,
                           info.reset_gate.lo_V, info.reset_gate.hi_V));
  }
  if (!(c.width_ns >= info.width_step_ns && c.width_ns <= info.width_max_ns)) {
    return bad(fmt::format("width_ns = {}: allowed {}..{} ns", c.width_ns, info.width_step_ns,
                           info.width_max_ns));
  }
  if (!(c.target_min_uS > 0 && c.target_max_uS > c.target_min_uS)) {
    return bad("target_min_uS/target_max_uS: need 0 < min < max");
  }
  if (c.max_retries < 1) return bad(fmt::format("max_retries = {}: allowed >= 1", c.max_retries));
  if (!(c.set_compliance_uS_per_V > 0 && c.reset_rate_per_V > 0 && c.set_k_nominal > 0)) {
    return bad("set_compliance_uS_per_V, reset_rate_per_V and set_k_nominal must be > 0");
  }
  return {};
}

Result<void> validate_program(const BoardInfo& info, int array, const Eigen::MatrixXd& target_uS,
                              const ProgramVerifyConfig& cfg,
                              const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>* skip) {
  if (array < 0 || array >= info.arrays) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("array = {}: allowed 0..{}", array, info.arrays - 1));
  }
  if (target_uS.rows() != info.rows || target_uS.cols() != info.cols) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("target: {}x{} matrix, the array is {}x{}", target_uS.rows(),
                                  target_uS.cols(), info.rows, info.cols));
  }
  if (skip && (skip->rows() != info.rows || skip->cols() != info.cols)) {
    return make_error(ErrorCode::kInvalidArgument, "skip: mask size differs from the array");
  }
  if (auto v = validate(cfg, info); !v) return std::unexpected(v.error());
  for (int r = 0; r < info.rows; ++r) {
    for (int c = 0; c < info.cols; ++c) {
      const double t = target_uS(r, c);
      if (!std::isfinite(t) || t < cfg.target_min_uS || t > cfg.target_max_uS) {
        return make_error(ErrorCode::kInvalidArgument,
                          fmt::format("target[{}][{}] = {:.6g} uS: allowed {}..{} uS", r, c, t,
                                      cfg.target_min_uS, cfg.target_max_uS));
      }
    }
  }
  return {};
}

namespace {

// What this round does with one device after its read.
enum class Step { kNone, kWait, kPulse };

std::vector<Ctl> initial_controls(int rows, int cols, const ProgramVerifyConfig& cfg,
                                  const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>* skip) {
  std::vector<Ctl> ctl(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      Ctl& d = ctl[static_cast<size_t>(r) * cols + c];
      d.width_ns = cfg.width_ns;
      if (skip && (*skip)(r, c)) d.state = Outcome::kSkipped;
    }
  }
  return ctl;
}

// What the last pulse taught: the device's compliance (SET) or decay rate (RESET), from how
// far it moved (`gi`, the mean of the reads since) against the model's prediction.
void learn_from_pulse(Ctl& d, double gi, const ProgramVerifyConfig& cfg) {
  const double moved = d.last == wire::Polarity::kSet ? gi - d.g_before : d.g_before - gi;
  bool weak = false;
  if (d.last == wire::Polarity::kSet) {
    const double g_c = d.g_c_model * d.compliance;
    const double predicted = (g_c - d.g_before) * (1 - d.rem);
    const double noise = relax_sigma(cfg, gi) + cfg.c2c_rel * std::abs(predicted);
    if (std::abs(moved) < kNoMove_uS) {
      // Did not move: its compliance is at or below where it sits, so the gate must go higher.
      d.compliance = std::clamp(0.97 * d.g_before / d.g_c_model, 0.2, d.compliance);
      weak = d.at_limit;
    } else {
      // A slow device looks like one with a low compliance: the gate rises until it tops out,
      // and only then do longer pulses help (the width ramp in decide_step).
      const double observed = (gi - d.g_before * d.rem) / ((1 - d.rem) * d.g_c_model);
      d.compliance = learn(d.compliance, d.compliance_var, observed,
                           std::pow(noise / std::max(gi, 1.0), 2), 0.2, 5.0);
      weak = d.at_limit && moved < 0.3 * predicted;
    }
  } else {
    const double floor = cfg.g_floor_uS;
    const double predicted = (d.g_before - floor) * (1 - std::exp(-d.k_used));
    const double noise = relax_sigma(cfg, gi) + cfg.c2c_rel * predicted;
    if (std::abs(moved) < kNoMove_uS) {
      d.reset_rate = std::max(0.05, d.reset_rate * 0.6);  // below threshold: more voltage
      weak = d.at_limit;
    } else if (gi > floor && d.k_used > 0) {
      const double k_obs = std::log((d.g_before - floor) / std::max(gi - floor, 1e-3));
      const double k_sd = noise / std::max(gi - floor, 1.0) / std::max(k_obs, 1e-3);
      d.reset_rate = learn(d.reset_rate, d.reset_rate_var, d.reset_rate * k_obs / d.k_used,
                           k_sd * k_sd, 0.05, 20.0);
    }
  }
  d.weak_strikes = weak ? d.weak_strikes + 1 : 0;
}

// The verdict on a device whose averaged read is `gi` against target `t` with tolerance
// `tol`: converged, still pending (pulse it), in the grey zone (read again), or abandoned.
Step decide_step(Ctl& d, double gi, double t, double tol, const ProgramVerifyConfig& cfg,
                 double width_max_ns) {
  const double e = gi - t;
  // Hysteresis: converge inside tol - margin, re-open only beyond tol + margin, so read noise
  // alone never sends a converged device back into the relaxation lottery. The margins are
  // for one averaged read and shrink as 1/sqrt(reads) with the reads since the last pulse. A
  // device in between (the grey zone) waits for the next round's read rather than re-entering
  // the lottery on a noisy verdict, up to max_wait_reads reads; then it is pulsed.
  const double sqrt_n = std::sqrt(static_cast<double>(d.reads));
  // The averaged read's fluctuation grows with G (DESIGN.md §2: sigma ~ min(G, cap)^slope), so
  // the margins are given at the cap and scale with it.
  const double noise = std::pow(std::clamp(gi, 1.0, cfg.read_noise_cap_uS) / cfg.read_noise_cap_uS,
                                cfg.read_noise_slope);
  const double tol_in = tol - std::min(cfg.verify_margin_uS * noise, tol / 2) / sqrt_n;
  const double tol_out = tol + cfg.reopen_margin_uS * noise / sqrt_n;
  if (d.state == Outcome::kConverged && std::abs(e) > tol_out) d.state = Outcome::kPending;
  if (d.state == Outcome::kPending && std::abs(e) <= tol_in) d.state = Outcome::kConverged;
  if (d.state == Outcome::kPending && std::abs(e) <= tol_out && d.reads < cfg.max_wait_reads) {
    return Step::kWait;  // grey zone: read again before deciding
  }
  if (d.state != Outcome::kPending) return Step::kNone;
  // A device that keeps moving far less than asked gets longer pulses; at the top of the width
  // ramp it counts a retry, and after max_retries it is abandoned.
  if (d.weak_strikes >= 1) {
    d.weak_strikes = 0;
    if (d.width_ns < width_max_ns) {
      d.width_ns = std::min(width_max_ns, d.width_ns * 3);
    } else if (++d.retries >= cfg.max_retries) {
      d.state = Outcome::kAbandoned;
      return Step::kNone;
    }
  }
  return Step::kPulse;
}

// SET: choose the compliance so that one pulse of strength k lands on the target. A long step
// lands with a spread of c2c_rel * step: aim short by that much so the next pulse is a small,
// precise SET rather than a RESET from above. Sets p's polarity and voltages; returns whether
// the gate was clamped at the top of its range.
bool plan_set(Ctl& d, DevicePulse& p, double gi, double t, double tol,
              const ProgramVerifyConfig& cfg, const BoardInfo& info) {
  const double wf = std::sqrt(d.width_ns / cfg.width_ns);  // pulse effect ~ sqrt(width)
  const double gap = t - gi;
  // Not worth it where the relaxation spread swamps the step's spread anyway.
  const bool short_aim = gap > 4 * tol && cfg.c2c_rel * gap > relax_sigma(cfg, t);
  const double aim = short_aim ? t - cfg.c2c_rel * gap : t;
  const double rem = std::exp(-cfg.set_k_nominal * wf);
  const double g_c = (aim - gi * rem) / (1 - rem) / d.compliance;
  double gate = cfg.set_gate_threshold_V + g_c / cfg.set_compliance_uS_per_V;
  const bool saturated = gate >= info.set_gate.hi_V;
  gate = std::clamp(gate, info.set_gate.lo_V, info.set_gate.hi_V);
  p.polarity = wire::Polarity::kSet;
  p.v_V = cfg.set_v_V;
  p.gate_V = gate;
  d.g_c_model = cfg.set_compliance_uS_per_V * (gate - cfg.set_gate_threshold_V);
  d.rem = rem;
  return saturated;
}

// RESET: exponential decay toward the floor; pick the voltage for the needed decay. Short
// pulses: the same decay then needs more overdrive, so the device-to-device spread of the
// threshold matters less. Returns whether the voltage was clamped at the top of its range.
bool plan_reset(Ctl& d, DevicePulse& p, double gi, double t, const ProgramVerifyConfig& cfg,
                const BoardInfo& info) {
  const double rwidth = std::min(d.width_ns, cfg.reset_width_ns * d.width_ns / cfg.width_ns);
  const double wf = std::sqrt(rwidth / cfg.width_ns);
  p.width_ns = rwidth;
  const double floor = cfg.g_floor_uS;
  const double k = std::log(std::max(gi - floor, 1e-3) / std::max(t - floor, 1e-3));
  double v =
      cfg.reset_v_threshold_V + std::max(k, 0.0) / (cfg.reset_rate_per_V * d.reset_rate * wf);
  const bool saturated = v >= info.reset_v.hi_V;
  v = std::clamp(v, info.reset_v.lo_V, info.reset_v.hi_V);
  p.polarity = wire::Polarity::kReset;
  p.v_V = v;
  p.gate_V = cfg.reset_gate_V;
  d.k_used = cfg.reset_rate_per_V * d.reset_rate * std::max(v - cfg.reset_v_threshold_V, 0.0) * wf;
  return saturated;
}

// One round's plan: every device's read folded into its mean, what the last pulse taught, its
// verdict and, for those still pending, its pulse.
struct Round {
  PulseBatch batch{wire::Polarity::kMixed, {}};
  int waiting = 0;  // pending devices read again before a verdict
};

Round plan_round(std::vector<Ctl>& ctl, const Eigen::MatrixXd& g, Eigen::MatrixXd& est,
                 const Eigen::MatrixXd& target_uS, const ProgramVerifyConfig& cfg,
                 const BoardInfo& info, ProgramVerifyResult& res) {
  Round out;
  const int rows = info.rows, cols = info.cols;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      Ctl& d = ctl[static_cast<size_t>(r) * cols + c];
      if (d.state == Outcome::kSkipped || d.state == Outcome::kAbandoned) continue;
      if (d.pulsed) {
        d.read_sum_uS = 0;
        d.reads = 0;
      }
      d.read_sum_uS += g(r, c);
      ++d.reads;
      const double t = target_uS(r, c), gi = d.read_sum_uS / d.reads;
      est(r, c) = gi;
      if (d.pulsed && d.learn) learn_from_pulse(d, gi, cfg);
      d.pulsed = false;
      d.learn = true;
      const double tol = cfg.device_tol_uS.size() ? cfg.device_tol_uS(r, c) : tolerance(cfg, t);
      const Step step = decide_step(d, gi, t, tol, cfg, info.width_max_ns);
      if (step == Step::kWait) ++out.waiting;
      if (d.state == Outcome::kAbandoned) {
        res.abandoned.push_back({static_cast<uint8_t>(r), static_cast<uint8_t>(c)});
      }
      if (step != Step::kPulse) continue;
      DevicePulse p{r, c, 0, 0, d.width_ns, wire::Polarity::kSet};
      const bool saturated =
          gi - t < 0 ? plan_set(d, p, gi, t, tol, cfg, info) : plan_reset(d, p, gi, t, cfg, info);
      ++(p.polarity == wire::Polarity::kSet ? res.set_pulses : res.reset_pulses)(r, c);
      d.at_limit = saturated;
      d.last = p.polarity;
      d.pulsed = true;
      d.g_before = gi;
      out.batch.devices.push_back(p);
    }
  }
  return out;
}

// The result of a run that ends after `round` (its last batch, if any, not sent).
void finish(ProgramVerifyResult& res, const std::vector<Ctl>& ctl, const Eigen::MatrixXd& est,
            int round, const PulseBatch& unsent) {
  // Devices not pulsed this round keep the state the last read showed.
  const int rows = static_cast<int>(res.outcome.rows()),
            cols = static_cast<int>(res.outcome.cols());
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      res.outcome(r, c) = static_cast<uint8_t>(ctl[static_cast<size_t>(r) * cols + c].state);
    }
  }
  res.final_uS = est;
  res.rounds = round;
  // Pulses planned for a round that was not sent did not happen.
  for (const DevicePulse& p : unsent.devices) {
    (p.polarity == wire::Polarity::kSet ? res.set_pulses : res.reset_pulses)(p.row, p.col) -= 1;
  }
}

// Sends a round's batch. A board restart meanwhile is survived (up to kMaxRestarts): applied
// or not, the verify read after it shows where each device is now, and the controller programs
// on from there without learning from those pulses (a resend could apply the batch twice).
Result<void> send_batch(Board& board, int array, const PulseBatch& batch, std::vector<Ctl>& ctl,
                        ProgramVerifyResult& res) {
  auto pr = board.pulse(array, batch);
  ++res.transactions;
  if (!pr && pr.error().code == ErrorCode::kRestarted && res.board_restarts < kMaxRestarts) {
    ++res.board_restarts;
    const int cols = static_cast<int>(res.outcome.cols());
    for (const DevicePulse& p : batch.devices) {
      ctl[static_cast<size_t>(p.row) * cols + p.col].learn = false;
    }
    return {};
  }
  if (!pr) return std::unexpected(pr.error());
  res.pulse_time_us += pr->duration_us;
  return {};
}

}  // namespace

Result<ProgramVerifyResult> program_verify(
    Board& board, int array, const Eigen::MatrixXd& target_uS, const ProgramVerifyConfig& cfg,
    const ProgressFn& progress, const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>* skip) {
  const BoardInfo& info = board.info();
  // Nothing is pulsed unless everything is valid.
  if (auto v = validate_program(info, array, target_uS, cfg, skip); !v) {
    return std::unexpected(v.error());
  }
  ProgramVerifyResult res;
  res.target_uS = target_uS;
  res.outcome.setConstant(info.rows, info.cols, static_cast<uint8_t>(Outcome::kPending));
  res.set_pulses.setZero(info.rows, info.cols);
  res.reset_pulses.setZero(info.rows, info.cols);
  std::vector<Ctl> ctl = initial_controls(info.rows, info.cols, cfg, skip);

  ReadOptions first = cfg.verify;
  first.settle_ms = 0;  // nothing was pulsed yet
  auto m = board.read_array(array, first);
  ++res.transactions;
  if (!m) return std::unexpected(m.error());
  Eigen::MatrixXd g = m->g_uS;
  Eigen::MatrixXd est = g;  // per device: the mean of the reads since its last pulse

  for (int round = 0;; ++round) {
    const Round plan = plan_round(ctl, g, est, target_uS, cfg, info, res);
    const PulseBatch& batch = plan.batch;
    ProgramVerifyProgress prog;
    prog.round = round;
    for (const Ctl& d : ctl) {
      prog.converged += d.state == Outcome::kConverged;
      prog.abandoned += d.state == Outcome::kAbandoned;
    }
    prog.pending = static_cast<int>(batch.devices.size());
    prog.pulses = static_cast<int>(batch.devices.size());
    prog.transactions = res.transactions;
    const bool last_round = (batch.devices.empty() && plan.waiting == 0) || round >= cfg.max_rounds;
    prog.batch = last_round || batch.devices.empty() ? nullptr : &batch;
    const bool go_on = progress ? progress(prog) : true;
    if (!go_on) res.cancelled = true;
    if (!go_on || last_round) {
      finish(res, ctl, est, round, batch);
      return res;
    }
    // A round of only waiting devices is a read alone.
    if (!batch.devices.empty()) XBAR_RETURN_IF_ERROR(send_batch(board, array, batch, ctl, res));
    ReadOptions verify = cfg.verify;
    if (batch.devices.empty()) verify.settle_ms = 0;  // nothing moved: no relaxation to wait for
    auto mr = board.read_array(array, verify);
    ++res.transactions;
    if (!mr) return std::unexpected(mr.error());
    g = mr->g_uS;
  }
}

}  // namespace xbar
