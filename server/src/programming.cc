#include "programming.h"

#include <algorithm>
#include <cmath>

namespace xbar::server {

namespace {

FaultMethod method_of(FaultSource s) {
  switch (s) {
    case FaultSource::kScan:
      return FaultMethod::kScan;
    case FaultSource::kProgramVerify:
      return FaultMethod::kProgramVerify;
    case FaultSource::kQuickCheck:
      return FaultMethod::kQuickCheck;
  }
  return FaultMethod::kManual;
}

}  // namespace

std::vector<FaultEntry> fault_entries(const std::vector<FaultFinding>& findings, int array) {
  std::vector<FaultEntry> out;
  for (const FaultFinding& f : findings) {
    FaultEntry e;
    e.array = array;
    e.row = f.row;
    e.col = f.col;
    e.kind = f.kind;
    e.method = method_of(f.source);
    if (std::isfinite(f.g_uS)) e.g_uS = f.g_uS;
    out.push_back(e);
  }
  return out;
}

Result<ProgramVerifyResult> program_and_record(
    Board& board, ChipRecord& record, int array, const Eigen::MatrixXd& target_uS,
    const ProgramVerifyConfig& cfg, const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& skip,
    const std::function<bool(const ProgramVerifyProgress&)>& on_round,
    const std::function<Result<void>()>& before_first_pulse, const ProgrammingObserver& observer) {
  const BoardInfo& info = board.info();
  const std::string& serial = info.serial;
  if (auto v = validate_program(info, array, target_uS, cfg, &skip); !v) {
    return std::unexpected(v.error());
  }
  if (auto t =
          record.touch_chip({serial, info.firmware_version, info.arrays, info.rows, info.cols});
      !t) {
    return std::unexpected(t.error());
  }
  std::optional<Error> record_error;
  bool pulsed = false;
  auto progress = [&](const ProgramVerifyProgress& p) {
    // The caller first (its progress, and whether to go on): a batch that will not be sent is
    // neither counted nor allowed to change anything.
    if (on_round && !on_round(p)) return false;
    if (!p.batch) return true;
    if (!pulsed) {
      pulsed = true;
      if (before_first_pulse) {
        if (auto b = before_first_pulse(); !b) {
          record_error = b.error();
          return false;
        }
      }
    }
    // Write-ahead: the pulses of this round are counted before they are sent.
    Eigen::MatrixXi set = Eigen::MatrixXi::Zero(info.rows, info.cols), reset = set;
    for (const DevicePulse& d : p.batch->devices) {
      (d.polarity == wire::Polarity::kSet ? set : reset)(d.row, d.col) += 1;
    }
    if (auto a = record.add_pulses(serial, array, set, reset); !a) {
      record_error = a.error();
      return false;
    }
    return true;
  };
  auto res = program_verify(board, array, target_uS, cfg, progress, &skip);
  if (!res) return res;
  if (observer) {
    observer(static_cast<uint64_t>(res->set_pulses.sum()) +
                 static_cast<uint64_t>(res->reset_pulses.sum()),
             res->abandoned.size());
  }
  if (record_error) {
    return make_error(ErrorCode::kInternal, "chip record: " + record_error->message);
  }
  // Stopped before its first pulse (cancelled, its deadline passed while it waited): the
  // arrays are as they were, and so is the record.
  if (res->cancelled && !pulsed) return res;
  // The programming record and the faults found, in one transaction (endurance is already in).
  ProgrammingRun run;
  run.programming.tol_uS = cfg.tol_uS;
  run.programming.target_uS = target_uS;
  run.programming.readback_uS = res->final_uS;
  run.programming.within_tol_pct = res->within_tolerance(cfg);
  run.programming.rounds = res->rounds;
  run.programming.abandoned = static_cast<int>(res->abandoned.size());
  run.set_delta = Eigen::MatrixXi::Zero(info.rows, info.cols);
  run.reset_delta = run.set_delta;
  run.faults = fault_entries(faults_from_program_verify(*res), array);
  if (auto w = record.record_programming_run(serial, array, run); !w) {
    return make_error(ErrorCode::kInternal, "chip record: " + w.error().message);
  }
  return res;
}

void fill_program_report(const ProgramVerifyResult& res, const ProgramVerifyConfig& cfg,
                         v1::ProgramReport* rep) {
  rep->set_within_tol_pct(res.within_tolerance(cfg));
  double sq = 0;
  int programmed = 0, skipped = 0;
  std::vector<int> pulses;
  for (int r = 0; r < res.final_uS.rows(); ++r) {
    for (int c = 0; c < res.final_uS.cols(); ++c) {
      rep->add_final_us(static_cast<float>(res.final_uS(r, c)));
      if (res.outcome(r, c) == static_cast<uint8_t>(DeviceOutcome::kSkipped)) {
        ++skipped;
        continue;
      }
      ++programmed;
      const double e = res.final_uS(r, c) - res.target_uS(r, c);
      sq += e * e;
      pulses.push_back(res.set_pulses(r, c) + res.reset_pulses(r, c));
    }
  }
  std::sort(pulses.begin(), pulses.end());
  double mean = 0;
  for (int p : pulses) mean += p;
  rep->set_error_sigma_us(programmed ? std::sqrt(sq / programmed) : 0);
  rep->set_rounds(static_cast<uint32_t>(res.rounds));
  rep->set_transactions(static_cast<uint32_t>(res.transactions));
  rep->set_pulses_per_device_mean(pulses.empty() ? 0 : mean / static_cast<double>(pulses.size()));
  rep->set_pulses_per_device_p99(
      pulses.empty() ? 0 : static_cast<uint32_t>(pulses[(pulses.size() - 1) * 99 / 100]));
  for (const wire::Cell& c : res.abandoned) {
    auto* a = rep->add_abandoned();
    a->set_row(c.row);
    a->set_col(c.col);
  }
  rep->set_cancelled(res.cancelled);
  rep->set_pulse_time_ms(res.pulse_time_us / 1000);
  rep->set_skipped(static_cast<uint32_t>(skipped));
}

void fill_round(const ProgramVerifyProgress& p, int max_rounds, v1::ProgramRound* r) {
  r->set_round(static_cast<uint32_t>(p.round));
  r->set_converged(static_cast<uint32_t>(p.converged));
  r->set_pending(static_cast<uint32_t>(p.pending));
  r->set_abandoned(static_cast<uint32_t>(p.abandoned));
  r->set_max_rounds(static_cast<uint32_t>(max_rounds));
}

}  // namespace xbar::server
