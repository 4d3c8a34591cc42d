#include "array_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "call.h"
#include "fault_proto.h"
#include "operations.h"
#include "programming.h"
#include "request_checks.h"
#include "status.h"
#include "xbar/drivers/fault_scan.h"
#include "xbar/drivers/program_verify.h"

namespace xbar::server {

namespace {

void fill_fault(v1::Fault* o, int array, const FaultFinding& f) {
  o->set_array(static_cast<uint32_t>(array));
  o->set_row(static_cast<uint32_t>(f.row));
  o->set_col(static_cast<uint32_t>(f.col));
  set_kind(*o, f.kind);
  set_method(*o, f.source);
  o->set_g_us(f.g_uS);
}

// Before pulses that change `array` (ProgramArray, a fault scan): the deployment that holds it,
// if ready or degraded, becomes stale with `why`, write-ahead, so that no crash or failure leaves
// it claimed as held while its devices are rewritten. Returns it as it was, for an operation
// that gives the array back (an active scan's restore).
Result<std::optional<DeploymentRow>> release_for_pulses(ChipRecord& record,
                                                        const std::string& serial, int array,
                                                        const std::string& why) {
  auto owners = record.array_owners(serial);
  if (!owners) return std::unexpected(owners.error());
  if (array >= static_cast<int>(owners->size())) return std::nullopt;
  const std::optional<std::string>& owner = (*owners)[static_cast<size_t>(array)];
  if (!owner.has_value()) return std::nullopt;
  auto row = record.deployment(owner.value());
  if (!row) return std::unexpected(row.error());
  if (!runs_on_board(row->state)) return std::nullopt;
  if (auto w = record.set_deployment_state(row->id, DeploymentState::kStale, why); !w) {
    return std::unexpected(w.error());
  }
  spdlog::info("deployment {}: stale: {}", row->id, why);
  return *row;
}

}  // namespace

grpc::Status ArrayServiceImpl::ProgramArray(grpc::ServerContext* ctx,
                                            const v1::ProgramArrayRequest* req,
                                            grpc::ServerWriter<v1::ProgramArrayResponse>* call) {
  return run_operation<v1::ProgramArrayResponse>(
      sched_.operations, ctx, call, "/xbar.v1.ArrayService/ProgramArray", request_id(ctx),
      [](v1::OperationEvent& e, const v1::ProgramArrayResponse& m) { *e.mutable_program() = m; },
      [&](grpc::ServerWriterInterface<v1::ProgramArrayResponse>* writer) {
        return program(ctx, req, writer);
      });
}

namespace {

using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

// A ProgramArrayRequest checked in full: what program-verify will run.
struct ProgramJob {
  int array = 0;
  Eigen::MatrixXd target;
  ProgramVerifyConfig cfg;
};

// Every field, before anything waits, reads or writes; the values as sent in the messages (a
// uint32 cast to int would show 4294967295 as -1).
std::expected<ProgramJob, grpc::Status> check_program(const v1::ProgramArrayRequest& req,
                                                      const BoardInfo& info,
                                                      const ProgramVerifyConfig& defaults) {
  if (req.array() >= static_cast<uint32_t>(info.arrays)) {
    return std::unexpected(
        invalid_argument(fmt::format("array = {}: allowed 0..{}", req.array(), info.arrays - 1)));
  }
  if (req.rows() != static_cast<uint32_t>(info.rows) ||
      req.cols() != static_cast<uint32_t>(info.cols)) {
    return std::unexpected(invalid_argument(fmt::format(
        "rows x cols = {}x{}: the array is {}x{}", req.rows(), req.cols(), info.rows, info.cols)));
  }
  const int n = info.rows * info.cols;
  if (req.target_us_size() != n) {
    return std::unexpected(invalid_argument(
        fmt::format("target_uS: {} values, rows x cols needs {}", req.target_us_size(), n)));
  }
  if (req.max_rounds() > 1000) {
    return std::unexpected(
        invalid_argument(fmt::format("max_rounds = {}: allowed 1..1000 (0 means the daemon's "
                                     "default, {})",
                                     req.max_rounds(), defaults.max_rounds)));
  }
  ProgramJob job{static_cast<int>(req.array()), Eigen::MatrixXd(info.rows, info.cols), defaults};
  for (int i = 0; i < n; ++i) job.target(i / info.cols, i % info.cols) = req.target_us(i);
  if (req.tol_us() != 0) job.cfg.tol_uS = req.tol_us();
  if (req.tol_rel() != 0) job.cfg.tol_rel = req.tol_rel();
  if (req.max_rounds() != 0) job.cfg.max_rounds = static_cast<int>(req.max_rounds());
  if (!(job.cfg.tol_uS > 0 && job.cfg.tol_uS <= 100)) {
    return std::unexpected(invalid_argument(fmt::format(
        "tol_uS = {}: allowed (0, 100] (0 means the daemon's default)", job.cfg.tol_uS)));
  }
  return job;
}

// The recorded stuck devices of `array` (slow ones are programmed: they move, slowly).
std::expected<Mask, grpc::Status> known_faults(ChipRecord& record, const BoardInfo& info,
                                               int array) {
  Mask skip = Mask::Constant(info.rows, info.cols, false);
  auto known = record.faults(info.serial, array);
  if (!known && known.error().code != ErrorCode::kNotFound) {
    return std::unexpected(to_status(known.error()));
  }
  if (known) {
    for (const FaultEntry& f : *known) {
      if (f.kind != wire::FaultKind::kSlow) skip(f.row, f.col) = true;
    }
  }
  return skip;
}

}  // namespace

grpc::Status ArrayServiceImpl::program(
    grpc::ServerContext* ctx, const v1::ProgramArrayRequest* req,
    grpc::ServerWriterInterface<v1::ProgramArrayResponse>* writer) {
  if (auto a = access_.authorize(ctx, "ProgramArray"); !a.ok()) return a;
  if (auto e = check_enums(*req); !e.ok()) return e;
  const BoardInfo& info = board_.info();
  auto job = check_program(*req, info, defaults_);
  if (!job) return job.error();
  const int array = job->array;
  const Eigen::MatrixXd& target = job->target;
  const ProgramVerifyConfig& cfg = job->cfg;
  const std::string& serial = info.serial;
  Mask skip = Mask::Constant(info.rows, info.cols, false);
  // Every target, tol_rel and the rest, exactly as program-verify will check them.
  if (auto v = validate_program(info, array, target, cfg, &skip); !v) return to_status(v.error());
  if (req->skip_known_faults()) {
    auto known = known_faults(record_, info, array);
    if (!known) return known.error();
    skip = std::move(*known);
  }

  auto hold = sched_.arrays.exclusive({array}, limits_of(ctx), sched_.refuse_busy_changes);
  if (!hold) return to_status(hold.error());
  auto turn = sched_.board.acquire(client_of(ctx), limits_of(ctx));
  if (!turn) return to_status(turn.error());
  if (auto s = stopped_before_start(ctx); !s.ok()) return s;
  // The deployment on the array becomes stale just before the first pulse (write-ahead), not
  // before: a run that pulses nothing leaves it serving.
  auto release = [&]() -> Result<void> {
    auto r = release_for_pulses(record_, serial, array,
                                fmt::format("array {} was reprogrammed (ProgramArray)", array));
    if (!r) return std::unexpected(r.error());
    return {};
  };
  auto res = program_and_record(
      board_, record_, array, target, cfg, skip,
      [&](const ProgramVerifyProgress& p) {
        v1::ProgramArrayResponse msg;
        fill_round(p, cfg.max_rounds, msg.mutable_round());
        writer->Write(msg);  // a vanished client: call_stopped
        return !call_stopped(ctx);
      },
      release, observer_);
  if (!res) return to_status(res.error());
  v1::ProgramArrayResponse msg;
  auto* rep = msg.mutable_report();
  fill_program_report(*res, cfg, rep);
  spdlog::info("program array {}: {:.2f} % within ±{} uS after {} rounds ({} transactions){}",
               array, rep->within_tol_pct(), cfg.tol_uS, res->rounds, res->transactions,
               res->cancelled ? ", cancelled" : "");
  writer->Write(msg);
  // A cancelled run ends CANCELLED (after its report, what was done), so that the operation
  // is recorded as cancelled, not done.
  if (res->cancelled) {
    return stopped_status(ctx, fmt::format("program-verify of array {} stopped after {} rounds "
                                           "(the report says what was done)",
                                           array, res->rounds));
  }
  return grpc::Status::OK;
}

grpc::Status ArrayServiceImpl::ScanFaults(grpc::ServerContext* ctx,
                                          const v1::ScanFaultsRequest* req,
                                          grpc::ServerWriter<v1::ScanFaultsResponse>* call) {
  return run_operation<v1::ScanFaultsResponse>(
      sched_.operations, ctx, call, "/xbar.v1.ArrayService/ScanFaults", request_id(ctx),
      [](v1::OperationEvent& e, const v1::ScanFaultsResponse& m) { *e.mutable_scan() = m; },
      [&](grpc::ServerWriterInterface<v1::ScanFaultsResponse>* writer) {
        return scan(ctx, req, writer);
      });
}

namespace {

// The quick check's report: what one read of the array suggests (nothing pulsed).
void fill_quick_report(const QuickCheckResult& q, int array, v1::ScanReport* rep) {
  rep->set_quick(true);
  rep->set_stuck_high(static_cast<uint32_t>(q.suspected_high));
  rep->set_stuck_low(static_cast<uint32_t>(q.suspected_low));
  for (const FaultFinding& f : q.findings) fill_fault(rep->add_faults(), array, f);
  for (int r = 0; r < q.g_uS.rows(); ++r) {
    for (int c = 0; c < q.g_uS.cols(); ++c) rep->add_read_us(static_cast<float>(q.g_uS(r, c)));
  }
  rep->set_transactions(1);
}

v1::ScanFaultsResponse phase_message(const ScanProgress& p) {
  v1::ScanFaultsResponse up;
  auto* ph = up.mutable_phase();
  set_phase(*ph, p.phase);
  ph->set_stuck_high(static_cast<uint32_t>(p.stuck_high));
  ph->set_stuck_low(static_cast<uint32_t>(p.stuck_low));
  ph->set_transactions(static_cast<uint32_t>(p.transactions));
  if (p.phase == ScanPhase::kRestore) {
    auto* r = ph->mutable_restore();
    r->set_round(static_cast<uint32_t>(p.restore.round));
    r->set_converged(static_cast<uint32_t>(p.restore.converged));
    r->set_pending(static_cast<uint32_t>(p.restore.pending));
    r->set_abandoned(static_cast<uint32_t>(p.restore.abandoned));
  }
  return up;
}

void fill_scan_report(const FaultScanResult& res, int array, v1::ScanReport* rep) {
  rep->set_stuck_high(static_cast<uint32_t>(res.stuck_high));
  rep->set_stuck_low(static_cast<uint32_t>(res.stuck_low));
  for (const FaultFinding& f : res.findings) fill_fault(rep->add_faults(), array, f);
  rep->set_destructive(res.destructive);
  rep->set_disturbed(res.disturbed);
  rep->set_cancelled(res.cancelled);
  rep->set_restore_within_tol_pct(res.restore_report.within_tol_pct);
  rep->set_restore_rms_error_us(res.restore_report.rms_error_uS);
  rep->set_transactions(static_cast<uint32_t>(res.transactions));
  rep->set_board_time_ms(res.board_time_us / 1000);
  rep->set_rejected_candidates(static_cast<uint32_t>(res.rejected_candidates));
  for (int r = 0; r < res.after_reset_uS.rows(); ++r) {
    for (int c = 0; c < res.after_reset_uS.cols(); ++c) {
      rep->add_after_reset_us(static_cast<float>(res.after_reset_uS(r, c)));
    }
  }
}

// A scan pulses the array's devices: the deployment there is stale until an active scan has
// put them back. Marked just before the first batch (write-ahead), so a scan cancelled
// before it pulses leaves the deployment serving. Endurance is write-ahead as in
// ProgramArray: every batch (the hard pulses, the confirm pulses, the restore's rounds) is
// counted before it is sent.
class ScanRecord {
 public:
  ScanRecord(ChipRecord& record, const BoardInfo& info, int array, bool restore)
      : record_(record), info_(info), array_(array), restore_(restore) {}

  // FaultScan's before_batch: false (the scan stops) when the record cannot take it.
  bool before_batch(const PulseBatch& batch) {
    if (!released_) {
      released_ = true;
      auto r = release_for_pulses(
          record_, info_.serial, array_,
          restore_ ? fmt::format("array {} is being scanned for faults (its devices are pulsed "
                                 "and then restored)",
                                 array_)
                   : fmt::format("array {} was overwritten by a destructive fault scan", array_));
      if (!r) return failed(r.error());
      held_ = std::move(*r);
    }
    Eigen::MatrixXi set = Eigen::MatrixXi::Zero(info_.rows, info_.cols), reset = set;
    for (const DevicePulse& d : batch.devices) {
      (d.polarity == wire::Polarity::kSet ? set : reset)(d.row, d.col) += 1;
    }
    if (auto a = record_.add_pulses(info_.serial, array_, set, reset); !a) return failed(a.error());
    return true;
  }

  // After the scan: a restored array holds its deployment again (degraded unless 99 % of its
  // devices are back within tolerance); a completed scan replaces the array's findings.
  grpc::Status after(const Result<FaultScanResult>& res) {
    if (res && held_.has_value() && !res->disturbed && !res->cancelled) {
      const DeploymentRow& prev = held_.value();
      const double pct = res->restore_report.within_tol_pct;
      const std::string note = fmt::format(
          "an active fault scan restored array {} ({:.1f} % of its devices within tolerance)",
          array_, pct);
      if (auto w = record_.set_deployment_state(
              prev.id, pct >= 99.0 ? prev.state : DeploymentState::kDegraded,
              prev.message.empty() ? note : prev.message + "; " + note);
          !w) {
        return {grpc::StatusCode::INTERNAL, "chip record: " + w.error().message};
      }
    }
    if (error_) return {grpc::StatusCode::INTERNAL, "chip record: " + error_->message};
    if (!res) return to_status(res.error());
    if (!res->cancelled) {  // a completed scan is authoritative for its array
      if (auto w =
              record_.replace_faults(info_.serial, array_, fault_entries(res->findings, array_));
          !w) {
        return {grpc::StatusCode::INTERNAL, "chip record: " + w.error().message};
      }
    }
    return grpc::Status::OK;
  }

 private:
  bool failed(const Error& e) {
    error_ = e;
    return false;
  }

  ChipRecord& record_;
  const BoardInfo& info_;
  int array_;
  bool restore_;
  bool released_ = false;
  std::optional<DeploymentRow> held_;
  std::optional<Error> error_;
};

}  // namespace

grpc::Status ArrayServiceImpl::scan(grpc::ServerContext* ctx, const v1::ScanFaultsRequest* req,
                                    grpc::ServerWriterInterface<v1::ScanFaultsResponse>* writer) {
  if (!req->quick()) {  // a quick check only reads
    if (auto a = access_.authorize(ctx, "ScanFaults"); !a.ok()) return a;
  }
  if (auto e = check_enums(*req); !e.ok()) return e;
  const BoardInfo& info = board_.info();
  if (req->array() >= static_cast<uint32_t>(info.arrays)) {
    return invalid_argument(
        fmt::format("array = {}: allowed 0..{}", req->array(), info.arrays - 1));
  }
  if (req->quick() && req->destructive()) {
    return invalid_argument(
        "quick and destructive: a quick check only reads, a destructive scan pulses every "
        "device; set one of them");
  }
  const int array = static_cast<int>(req->array());
  auto hold = sched_.arrays.exclusive({array}, limits_of(ctx), sched_.refuse_busy_changes);
  if (!hold) return to_status(hold.error());
  auto turn = sched_.board.acquire(client_of(ctx), limits_of(ctx));
  if (!turn) return to_status(turn.error());
  if (auto s = stopped_before_start(ctx); !s.ok()) return s;
  v1::ScanFaultsResponse msg;
  auto* rep = msg.mutable_report();
  rep->set_array(req->array());
  if (req->quick()) {
    auto q = quick_check(board_, array, {});
    if (!q) return to_status(q.error());
    fill_quick_report(*q, array, rep);
    writer->Write(msg);
    return grpc::Status::OK;
  }
  FaultScanConfig cfg;
  cfg.restore = !req->destructive();
  ScanRecord record(record_, info, array, cfg.restore);
  auto res = scan_faults(
      board_, array, cfg,
      [&](const ScanProgress& p) {
        writer->Write(phase_message(p));
        return !call_stopped(ctx);
      },
      [&](const PulseBatch& batch) { return record.before_batch(batch); });
  if (auto w = record.after(res); !w.ok()) return w;
  fill_scan_report(*res, array, rep);
  spdlog::info("scan array {}: {} stuck-high, {} stuck-low{}{}", array, res->stuck_high,
               res->stuck_low, res->destructive ? " (destructive)" : "",
               res->cancelled ? " (cancelled)" : "");
  writer->Write(msg);
  if (res->cancelled) {  // recorded as a cancelled operation (the report says what was done)
    return stopped_status(
        ctx, fmt::format("fault scan of array {} stopped (the report says what was done)", array));
  }
  return grpc::Status::OK;
}

grpc::Status ArrayServiceImpl::GetFaultMap(grpc::ServerContext*, const v1::GetFaultMapRequest* req,
                                           v1::FaultMap* out) {
  const BoardInfo& info = board_.info();
  std::optional<int> array;
  if (req->has_array()) {
    if (req->array() >= static_cast<uint32_t>(info.arrays)) {
      return invalid_argument(
          fmt::format("array = {}: allowed 0..{}", req->array(), info.arrays - 1));
    }
    array = static_cast<int>(req->array());
  }
  out->set_serial(info.serial);
  auto faults = record_.faults(info.serial, array);
  if (!faults) {
    if (faults.error().code == ErrorCode::kNotFound) return grpc::Status::OK;  // never met: none
    return to_status(faults.error());
  }
  for (const FaultEntry& f : *faults) {
    auto* o = out->add_faults();
    o->set_array(static_cast<uint32_t>(f.array));
    o->set_row(static_cast<uint32_t>(f.row));
    o->set_col(static_cast<uint32_t>(f.col));
    set_kind(*o, f.kind);
    set_method(*o, f.method);
    o->set_found_at_ms(f.found_at_ms);
    o->set_confirmed_at_ms(f.confirmed_at_ms);
    if (f.g_uS) o->set_g_us(*f.g_uS);
  }
  return grpc::Status::OK;
}

}  // namespace xbar::server
