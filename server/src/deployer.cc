#include "deployer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <expected>
#include <random>

#include "call.h"
#include "model_proto.h"
#include "operations.h"
#include "programming.h"
#include "request_checks.h"
#include "status.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/kernel/remap.h"

namespace xbar::server {

namespace {

// What a stuck device is assumed to sit at when the record does not know (DESIGN.md §2:
// stuck-high 300-600 uS, stuck-low below 1 uS).
constexpr double kAssumedStuckHigh_uS = 450.0;
constexpr double kAssumedStuckLow_uS = 0.5;

template <class T>
using StatusOr = std::expected<T, grpc::Status>;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string new_deployment_id() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(now_ms());
  return fmt::format("dep-{:012x}", v & 0xFFFFFFFFFFFFull);
}

StatusOr<std::vector<int>> requested_arrays(const v1::DeployKernelRequest& req,
                                            const BoardInfo& info) {
  std::vector<int> arrays;
  for (int i = 0; i < req.arrays_size(); ++i) {
    const uint32_t a = req.arrays(i);
    if (a >= static_cast<uint32_t>(info.arrays)) {
      return std::unexpected(
          invalid_argument(fmt::format("arrays[{}] = {}: allowed 0..{}", i, a, info.arrays - 1)));
    }
    if (std::find(arrays.begin(), arrays.end(), static_cast<int>(a)) != arrays.end()) {
      return std::unexpected(invalid_argument(fmt::format("arrays[{}] = {}: listed twice", i, a)));
    }
    arrays.push_back(static_cast<int>(a));
  }
  if (arrays.empty()) {
    for (int a = 0; a < info.arrays; ++a) arrays.push_back(a);
  }
  return arrays;
}

// The options every kind of deploy shares, checked before anything is held or pulsed.
StatusOr<DeployOptions> check_options(const v1::DeployKernelRequest& req, const BoardInfo& info,
                                      const ProgramVerifyConfig& defaults) {
  DeployOptions c;
  c.cfg = defaults;
  if (req.name().size() > 64) {
    return std::unexpected(
        invalid_argument(fmt::format("name: {} characters, allowed up to 64", req.name().size())));
  }
  auto arrays = requested_arrays(req, info);
  if (!arrays) return std::unexpected(arrays.error());
  c.arrays = std::move(*arrays);
  if (req.tol_us() != 0) c.cfg.tol_uS = req.tol_us();
  if (!(c.cfg.tol_uS > 0 && c.cfg.tol_uS <= 100)) {
    return std::unexpected(invalid_argument(
        fmt::format("tol_uS = {}: allowed (0, 100] (0 means the daemon's default)", c.cfg.tol_uS)));
  }
  if (req.max_rounds() != 0) {
    if (req.max_rounds() > 1000) {
      return std::unexpected(
          invalid_argument(fmt::format("max_rounds = {}: allowed 1..1000", req.max_rounds())));
    }
    c.cfg.max_rounds = static_cast<int>(req.max_rounds());
  }
  c.max_error = req.max_nrmse();
  if (!(c.max_error >= 0 && std::isfinite(c.max_error))) {
    return std::unexpected(invalid_argument(
        fmt::format("max_nrmse = {}: allowed > 0 (0 means the default)", req.max_nrmse())));
  }
  c.naive = req.remap() == v1::REMAP_NAIVE;
  return c;
}

// DeployProgress.stage_code for the stage's word (kernels.proto lists both, in order).
v1::DeployStage deploy_stage_code(std::string_view stage) {
  static constexpr std::pair<std::string_view, v1::DeployStage> kStages[] = {
      {"compile", v1::DEPLOY_STAGE_COMPILE}, {"queue", v1::DEPLOY_STAGE_QUEUE},
      {"remap", v1::DEPLOY_STAGE_REMAP},     {"program", v1::DEPLOY_STAGE_PROGRAM},
      {"verify", v1::DEPLOY_STAGE_VERIFY},   {"fidelity", v1::DEPLOY_STAGE_FIDELITY}};
  for (const auto& [word, code] : kStages)
    if (word == stage) return code;
  return v1::DEPLOY_STAGE_UNSPECIFIED;
}

// The deploy's progress messages on its RPC stream.
class Progress final : public DeployProgress {
 public:
  Progress(grpc::ServerContext* ctx, grpc::ServerWriterInterface<v1::DeployKernelResponse>* w,
           int max_rounds)
      : ctx_(ctx), writer_(w), max_rounds_(max_rounds) {}

  bool operator()(std::string stage, int unit, int array, std::string message,
                  const ProgramVerifyProgress* round = nullptr) const override {
    v1::DeployKernelResponse msg;
    auto* p = msg.mutable_progress();
    p->set_stage_code(deploy_stage_code(stage));
    p->set_stage(std::move(stage));
    p->set_kernel(unit);
    p->set_array(array);
    p->set_message(std::move(message));
    if (round) fill_round(*round, max_rounds_, p->mutable_round());
    writer_->Write(msg);
    return !call_stopped(ctx_);
  }

 private:
  grpc::ServerContext* ctx_;
  grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer_;
  int max_rounds_;
};

// Of `arrays`, the ones no deployment holds (all of them with `replace`); FAILED_PRECONDITION
// when fewer than `needed` are free, naming who holds the others.
StatusOr<std::vector<int>> free_arrays(ChipRecord& record, const std::string& serial,
                                       const std::vector<int>& arrays, size_t needed,
                                       bool replace) {
  if (replace) return arrays;
  auto owners = record.array_owners(serial);
  if (!owners) return std::unexpected(record_status(owners.error()));
  std::vector<int> free;
  std::string held;
  for (int a : arrays) {
    const auto& o = (*owners)[static_cast<size_t>(a)];
    if (o) {
      held += fmt::format("{}array {} holds {}", held.empty() ? "" : ", ", a, *o);
    } else {
      free.push_back(a);
    }
  }
  if (free.size() < needed) {
    return std::unexpected(grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        fmt::format("arrays: the deploy needs {} free arrays, {} free ({}); set replace to "
                    "take them",
                    needed, free.size(), held)));
  }
  return free;
}

// The stuck devices the record knows, per array.
StatusOr<std::vector<std::vector<kernel::StuckDevice>>> stuck_devices(ChipRecord& record,
                                                                      const BoardInfo& info) {
  auto faults = record.faults(info.serial, std::nullopt);
  if (!faults) return std::unexpected(record_status(faults.error()));
  std::vector<std::vector<kernel::StuckDevice>> stuck(static_cast<size_t>(info.arrays));
  for (const FaultEntry& f : *faults) {
    if (f.kind != wire::FaultKind::kStuckHigh && f.kind != wire::FaultKind::kStuckLow) continue;
    const bool high = f.kind == wire::FaultKind::kStuckHigh;
    stuck[static_cast<size_t>(f.array)].push_back(
        {f.row, f.col, high, f.g_uS.value_or(high ? kAssumedStuckHigh_uS : kAssumedStuckLow_uS)});
  }
  return stuck;
}

// The deployment as the record holds it while it is made: written before the first pulse
// ("deploying") and at every change of state.
class Draft {
 public:
  Draft(ChipRecord& record, DeploymentStates& states) : record_(record), states_(states) {}

  v1::Deployment dep;
  DeploymentRow row;

  Result<void> save(DeploymentState state, const std::string& message) {
    set_state(dep, state);
    dep.set_message(message);
    row.state = state;
    row.message = message;
    row.blob = dep.SerializeAsString();
    return record_.put_deployment(row);
  }
  // A deploy that stops early is `failed`, to every caller, even when the record cannot take
  // it (a full or failing disk): then the daemon remembers it (DeploymentStates), and the
  // start-up reconciliation fails the record's `deploying` row after a restart.
  void fail(const std::string& why) {
    if (auto w = save(DeploymentState::kFailed, why); !w) {
      spdlog::error("deployment {}: recording the failure: {}", dep.id(), w.error().message);
      states_.remember_unrecorded(dep.id(), DeploymentState::kFailed,
                                  fmt::format("{} (not in the chip record, whose write failed: {})",
                                              why, w.error().message));
    }
  }

 private:
  ChipRecord& record_;
  DeploymentStates& states_;
};

void start_draft(Draft& d, const v1::DeployKernelRequest& req, const std::string& serial,
                 const DeployJob& job, const std::vector<ArrayTarget>& targets) {
  d.dep.set_id(new_deployment_id());
  d.dep.set_name(req.name());
  d.dep.set_serial(serial);
  d.dep.set_created_at_ms(now_ms());
  d.dep.set_remap(req.remap());
  job.describe(d.dep);
  d.row.id = d.dep.id();
  d.row.serial = serial;
  d.row.name = d.dep.name();
  d.row.created_at_ms = d.dep.created_at_ms();
  for (const ArrayTarget& t : targets) d.row.arrays.push_back(t.array);
  std::sort(d.row.arrays.begin(), d.row.arrays.end());
}

// Where a deploy programs: the board, the record of what its arrays hold, and who is told what
// each programming applied.
struct ProgrammingSite {
  Board& board;
  ChipRecord& record;
  const ProgrammingObserver& observer;
};

// Programs one array to its target and lets the job add and verify its placement; why it is
// degraded, if it is, goes to `degraded`. Returns the status that ends the deploy (the draft
// then failed), or nullopt to go on.
std::optional<grpc::Status> program_array(const ProgrammingSite& site, grpc::ServerContext* ctx,
                                          Draft& draft, DeployJob& job, const ArrayTarget& t,
                                          const DeployOptions& c, const Progress& progress,
                                          std::vector<std::string>& degraded) {
  progress("program", t.unit, t.array,
           fmt::format("programming array {} ({} devices skipped as stuck)", t.array, t.faults));
  ProgramVerifyConfig pcfg = c.cfg;
  pcfg.device_tol_uS = kernel::device_tolerance(t.target_uS, c.cfg.tol_uS, c.cfg.relax_mid_lo_uS,
                                                c.cfg.relax_mid_hi_uS);
  auto res = program_and_record(
      site.board, site.record, t.array, t.target_uS, pcfg, t.skip,
      [&](const ProgramVerifyProgress& r) { return progress("program", t.unit, t.array, "", &r); },
      {}, site.observer);
  if (!res) {
    draft.fail(fmt::format("array {}: {}", t.array, res.error().message));
    return to_status(res.error());
  }
  std::optional<std::string> why = job.programmed(draft.dep, t, *res, pcfg, progress);
  if (res->cancelled) {
    draft.fail(fmt::format("cancelled while programming array {}", t.array));
    return stopped_status(ctx, "deploy stopped; recorded as failed");
  }
  if (why) degraded.push_back(std::move(*why));
  return std::nullopt;
}

// The end of a deploy whose arrays are programmed: the job's last check run, the deployment
// recorded ready or degraded, and sent to the caller.
grpc::Status finish_deploy(Draft& draft, std::vector<std::string> degraded, DeployJob& job,
                           const Progress& progress,
                           grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer) {
  for (std::string& d : job.finish(draft.dep, progress)) degraded.push_back(std::move(d));
  std::string why;
  for (const std::string& d : degraded) why += (why.empty() ? "" : "; ") + d;
  if (auto w =
          draft.save(degraded.empty() ? DeploymentState::kReady : DeploymentState::kDegraded, why);
      !w) {
    // Programmed and verified, but not recorded as such: it must not serve (the record would
    // not know what its arrays hold after a restart), and it must not stay `deploying`.
    draft.fail(fmt::format("programmed, but its verified state could not be recorded: {}",
                           w.error().message));
    return record_status(w.error());
  }
  spdlog::info("deployment {} ({}): {} array(s), {}", draft.dep.id(), draft.dep.name(),
               draft.row.arrays.size(), draft.dep.state());
  v1::DeployKernelResponse msg;
  *msg.mutable_deployment() = draft.dep;
  writer->Write(msg);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status Deployer::deploy_operation(grpc::ServerContext* ctx,
                                        const v1::DeployKernelRequest& req,
                                        grpc::ServerWriterInterface<v1::DeployKernelResponse>* call,
                                        const std::string& method, const JobFactory& make) {
  return run_operation<v1::DeployKernelResponse>(
      sched_.operations, ctx, call, method, request_id(ctx),
      [](v1::OperationEvent& e, const v1::DeployKernelResponse& m) { *e.mutable_deploy() = m; },
      [&](grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer) {
        grpc::Status st = deploy(ctx, req, writer, make);
        retain();  // before the operation is finished: its end sees the record pruned
        return st;
      });
}

grpc::Status Deployer::deploy_kernels(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                                      grpc::ServerWriterInterface<v1::DeployKernelResponse>* call,
                                      const v1::Model* model, const std::string& method,
                                      const DeployCheck& check) {
  return deploy_operation(ctx, req, call, method, [&](const DeployOptions& options) {
    return make_kernel_job(req, options, model, check);
  });
}

void Deployer::retain() {
  auto archived = apply_retention(record_, board_.info().serial, keep_inactive_);
  if (!archived) {
    spdlog::warn("retention: {}", archived.error().message);
    return;
  }
  for (const std::string& id : *archived) {
    spdlog::info("deployment {} archived (retention: the newest {} inactive ones are kept whole)",
                 id, *keep_inactive_);
  }
}

grpc::Status Deployer::deploy(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                              grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer,
                              const JobFactory& make) {
  if (auto a = access_.authorize(ctx, "Deploy"); !a.ok()) return a;
  if (auto e = check_enums(req); !e.ok()) return e;
  const BoardInfo& info = board_.info();
  auto c = check_options(req, info, defaults_);  // nothing is pulsed unless all is valid
  if (!c) return c.error();
  auto made = make(*c);
  if (!made) return made.error();
  DeployJob& job = **made;
  const DeployOptions& opt = job.options();
  const Progress progress(ctx, writer, opt.cfg.max_rounds);
  job.compile(progress);

  // The arrays it may take, exclusive: no stream runs there until the deploy is done, and
  // new streams there wait behind it. Then the board, for the whole programming.
  auto hold = sched_.arrays.exclusive(opt.arrays, limits_of(ctx), sched_.refuse_busy_changes);
  if (!hold) return to_status(hold.error());
  progress("queue", -1, -1, "arrays held; waiting for the board");
  auto turn = sched_.board.acquire(client_of(ctx), limits_of(ctx));
  if (!turn) return to_status(turn.error());
  if (auto s = stopped_before_start(ctx); !s.ok()) return s;
  if (auto t = record_.touch_chip(
          {info.serial, info.firmware_version, info.arrays, info.rows, info.cols});
      !t) {
    return record_status(t.error());
  }
  auto arrays = free_arrays(record_, info.serial, opt.arrays, job.arrays_needed(), req.replace());
  if (!arrays) return arrays.error();
  auto stuck = stuck_devices(record_, info);
  if (!stuck) return stuck.error();
  auto targets = job.place(*stuck, *arrays, progress);
  if (!targets) return to_status(targets.error());

  Draft draft(record_, states_);
  start_draft(draft, req, info.serial, job, *targets);
  if (auto w = draft.save(DeploymentState::kDeploying, "programming"); !w)
    return record_status(w.error());
  std::vector<std::string> degraded;
  const ProgrammingSite site{board_, record_, observer_};
  for (const ArrayTarget& t : *targets) {
    if (auto stop = program_array(site, ctx, draft, job, t, opt, progress, degraded)) {
      return *stop;
    }
  }
  return finish_deploy(draft, std::move(degraded), job, progress, writer);
}

}  // namespace xbar::server
