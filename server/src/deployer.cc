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
constexpr double kDefaultMaxNrmse = 0.5;

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

// A request checked whole before anything is held or pulsed.
struct Checked {
  kernel::KernelSetSpec spec;
  ProgramVerifyConfig cfg;
  std::vector<int> arrays;  // the arrays the deploy may take (all when the request lists none)
  double max_nrmse = kDefaultMaxNrmse;
  bool naive = false;
};

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

StatusOr<Checked> check_request(const v1::DeployKernelRequest& req, const BoardInfo& info,
                                const ProgramVerifyConfig& defaults) {
  Checked c;
  auto spec = kernel_set_from_proto(req.kernel_set());
  if (!spec) return std::unexpected(to_status(spec.error()));
  c.spec = std::move(*spec);
  c.cfg = defaults;
  if (auto v = kernel::validate(c.spec, c.cfg.target_min_uS, c.cfg.target_max_uS); !v) {
    return std::unexpected(to_status(v.error()));
  }
  if (req.name().size() > 64) {
    return std::unexpected(
        invalid_argument(fmt::format("name: {} characters, allowed up to 64", req.name().size())));
  }
  auto arrays = requested_arrays(req, info);
  if (!arrays) return std::unexpected(arrays.error());
  c.arrays = std::move(*arrays);
  if (c.spec.kernels.size() > c.arrays.size()) {
    return std::unexpected(
        invalid_argument(fmt::format("kernels: {} kernels for {} arrays: one array per kernel",
                                     c.spec.kernels.size(), c.arrays.size())));
  }
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
  if (req.max_nrmse() != 0) c.max_nrmse = req.max_nrmse();
  if (!(c.max_nrmse > 0 && std::isfinite(c.max_nrmse))) {
    return std::unexpected(
        invalid_argument(fmt::format("max_nrmse = {}: allowed > 0", req.max_nrmse())));
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

// The deploy's progress messages; false once the caller has gone (cancelled, deadline).
class Progress {
 public:
  Progress(grpc::ServerContext* ctx, grpc::ServerWriterInterface<v1::DeployKernelResponse>* w,
           int max_rounds)
      : ctx_(ctx), writer_(w), max_rounds_(max_rounds) {}

  bool operator()(std::string stage, int kernel, int array, std::string message,
                  const ProgramVerifyProgress* round = nullptr) const {
    v1::DeployKernelResponse msg;
    auto* p = msg.mutable_progress();
    p->set_stage_code(deploy_stage_code(stage));
    p->set_stage(std::move(stage));
    p->set_kernel(kernel);
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

struct Compiled {
  std::vector<kernel::CompiledKernel> kernels;
  std::vector<double> quant_nrmse;  // per kernel, on the fidelity inputs
};

Compiled compile_all(const kernel::KernelSetSpec& spec, const Progress& progress) {
  Compiled c;
  const auto inputs = kernel::fidelity_inputs();
  for (size_t k = 0; k < spec.kernels.size(); ++k) {
    c.kernels.push_back(kernel::compile(spec.kernels[k], spec.window));
    c.quant_nrmse.push_back(kernel::quantization_nrmse(c.kernels.back(), inputs));
    progress("compile", static_cast<int>(k), -1,
             fmt::format("kernel {}: {} states, quantization NRMSE {:.4g}", k, c.kernels.back().n,
                         c.quant_nrmse.back()));
  }
  return c;
}

// Of `arrays`, the ones no deployment holds (all of them with `replace`); FAILED_PRECONDITION
// when fewer than `kernels` are free, naming who holds the others.
StatusOr<std::vector<int>> free_arrays(ChipRecord& record, const std::string& serial,
                                       const std::vector<int>& arrays, size_t kernels,
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
  if (free.size() < kernels) {
    return std::unexpected(grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        fmt::format("arrays: {} kernels need {} free arrays, {} free ({}); set replace to "
                    "take them",
                    kernels, kernels, free.size(), held)));
  }
  return free;
}

// Each kernel onto one of `arrays`, placed around the stuck devices the record knows.
StatusOr<std::vector<kernel::ArrayPlan>> remap_around_faults(
    ChipRecord& record, const BoardInfo& info, const Compiled& compiled,
    const std::vector<int>& arrays, const Checked& c, const Progress& progress) {
  auto faults = record.faults(info.serial, std::nullopt);
  if (!faults) return std::unexpected(record_status(faults.error()));
  std::vector<std::vector<kernel::StuckDevice>> stuck(static_cast<size_t>(info.arrays));
  for (const FaultEntry& f : *faults) {
    if (f.kind != wire::FaultKind::kStuckHigh && f.kind != wire::FaultKind::kStuckLow) continue;
    const bool high = f.kind == wire::FaultKind::kStuckHigh;
    stuck[static_cast<size_t>(f.array)].push_back(
        {f.row, f.col, high, f.g_uS.value_or(high ? kAssumedStuckHigh_uS : kAssumedStuckLow_uS)});
  }
  kernel::RemapOptions ropt;
  ropt.naive = c.naive;
  ropt.prog_lo_uS = c.cfg.target_min_uS;
  ropt.prog_hi_uS = c.cfg.target_max_uS;
  auto plans = kernel::remap(compiled.kernels, stuck, arrays, ropt);
  if (!plans) return std::unexpected(to_status(plans.error()));
  for (const kernel::ArrayPlan& p : *plans) {
    progress(
        "remap", p.kernel, p.array,
        fmt::format("kernel {} -> array {}: {} stuck devices, {} avoided, {} compensated, "
                    "{} residual; predicted NRMSE {:.4g} (identity placement {:.4g}); {:.1f} ms",
                    p.kernel, p.array, p.faults, p.avoided, p.compensated, p.residual,
                    p.predicted_nrmse, p.naive_predicted_nrmse, p.solve_ms));
  }
  return std::move(*plans);
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
                 const v1::Model* model, const std::vector<kernel::ArrayPlan>& plans) {
  d.dep.set_id(new_deployment_id());
  d.dep.set_name(req.name());
  d.dep.set_serial(serial);
  d.dep.set_created_at_ms(now_ms());
  *d.dep.mutable_kernel_set() = req.kernel_set();
  d.dep.set_remap(req.remap());
  if (model != nullptr) *d.dep.mutable_model() = *model;
  d.row.id = d.dep.id();
  d.row.serial = serial;
  d.row.name = d.dep.name();
  d.row.created_at_ms = d.dep.created_at_ms();
  for (const kernel::ArrayPlan& p : plans) d.row.arrays.push_back(p.array);
  std::sort(d.row.arrays.begin(), d.row.arrays.end());
}

// Placement, prediction and programming report of one programmed array.
void fill_placement(v1::Placement& pl, const kernel::ArrayPlan& plan,
                    const kernel::CompiledKernel& ck, double quant_nrmse,
                    const ProgramVerifyResult& res, const ProgramVerifyConfig& pcfg) {
  pl.set_kernel(static_cast<uint32_t>(plan.kernel));
  pl.set_array(static_cast<uint32_t>(plan.array));
  pl.set_states(static_cast<uint32_t>(ck.n));
  for (int i = 0; i < kernel::kSide; ++i) {
    pl.add_row_of_logical(static_cast<uint32_t>(plan.placement.row_of[static_cast<size_t>(i)]));
    pl.add_col_of_logical(static_cast<uint32_t>(plan.placement.col_of[static_cast<size_t>(i)]));
  }
  for (const kernel::Route& r : kernel::feedback_routes(ck.n, plan.placement)) {
    auto* route = pl.add_feedback();
    route->set_col(static_cast<uint32_t>(r.col));
    route->set_row(static_cast<uint32_t>(r.row));
  }
  pl.set_state_scale_us(ck.state_scale_uS);
  pl.set_output_scale_us(ck.output_scale_uS);
  pl.set_input_gain(ck.input_gain);
  pl.set_nrmse_predicted(plan.predicted_nrmse);
  pl.set_nrmse_naive_predicted(plan.naive_predicted_nrmse);
  pl.set_quantization_nrmse(quant_nrmse);
  pl.set_faults(static_cast<uint32_t>(plan.faults));
  pl.set_faults_avoided(static_cast<uint32_t>(plan.avoided));
  pl.set_faults_compensated(static_cast<uint32_t>(plan.compensated));
  pl.set_faults_residual(static_cast<uint32_t>(plan.residual));
  pl.set_remap_ms(plan.solve_ms);
  fill_program_report(res, pcfg, pl.mutable_programming());
  for (int r = 0; r < kernel::kSide; ++r) {
    for (int c = 0; c < kernel::kSide; ++c) {
      pl.add_target_us(static_cast<float>(plan.target_uS(r, c)));
      pl.add_readback_us(static_cast<float>(res.final_uS(r, c)));
    }
  }
}

// Verifies a programmed array: the kernel as the loop runs it, through the conductances the
// array reads back with the device fixes (none for naive), and through the analog array
// alone. Fills the placement's figures; returns why it is degraded (nullopt: it is not).
std::optional<std::string> verify_array(v1::Placement& pl, const kernel::ArrayPlan& plan,
                                        const kernel::CompiledKernel& ck,
                                        const Eigen::MatrixXd& final_uS, const Checked& c,
                                        const Progress& progress) {
  const auto inputs = kernel::fidelity_inputs();
  kernel::LoopPlanOptions lopt;
  lopt.fix_devices = !c.naive;
  const std::vector<kernel::DeviceFix> fixes =
      kernel::device_fixes(ck, plan.placement, final_uS, lopt);
  const Eigen::MatrixXd seen = kernel::apply_device_fixes(final_uS, fixes);
  const double nrmse = kernel::fidelity_nrmse(ck, plan.placement, seen, inputs);
  const double radius =
      kernel::spectral_radius(kernel::effective_state_matrix(ck, plan.placement, seen));
  const double nrmse_analog =
      fixes.empty() ? nrmse : kernel::fidelity_nrmse(ck, plan.placement, final_uS, inputs);
  const double radius_analog =
      fixes.empty()
          ? radius
          : kernel::spectral_radius(kernel::effective_state_matrix(ck, plan.placement, final_uS));
  pl.set_nrmse(nrmse);
  pl.set_spectral_radius(radius);
  pl.set_device_fixes(static_cast<uint32_t>(fixes.size()));
  pl.set_nrmse_analog(nrmse_analog);
  pl.set_spectral_radius_analog(radius_analog);
  progress("verify", plan.kernel, plan.array,
           fmt::format("array {}: read-back NRMSE {:.4g} (predicted {:.4g}), spectral radius "
                       "{:.4f}; {} device fixes (analog alone: NRMSE {:.4g}, radius {:.4f})",
                       plan.array, nrmse, plan.predicted_nrmse, radius, fixes.size(), nrmse_analog,
                       radius_analog));
  if (!(radius < 1.0)) {
    return fmt::format("kernel {} on array {}: unstable as programmed (spectral radius {:.4f})",
                       plan.kernel, plan.array, radius);
  }
  if (!(nrmse <= c.max_nrmse)) {
    return fmt::format("kernel {} on array {}: NRMSE {:.4g} > {:.4g}", plan.kernel, plan.array,
                       nrmse, c.max_nrmse);
  }
  return std::nullopt;
}

// Where a deploy programs: the board, the record of what its arrays hold, and who is told what
// each programming applied.
struct ProgrammingSite {
  Board& board;
  ChipRecord& record;
  const ProgrammingObserver& observer;
};

// Programs one array to its plan and adds its placement to the draft; why it is degraded, if it
// is, goes to `degraded`. Returns the status that ends the deploy (the draft then failed), or
// nullopt to go on.
std::optional<grpc::Status> program_array(const ProgrammingSite& site, grpc::ServerContext* ctx,
                                          Draft& draft, const kernel::ArrayPlan& plan,
                                          const Compiled& compiled, const Checked& c,
                                          const Progress& progress,
                                          std::vector<std::string>& degraded) {
  const kernel::CompiledKernel& ck = compiled.kernels[static_cast<size_t>(plan.kernel)];
  progress(
      "program", plan.kernel, plan.array,
      fmt::format("programming array {} ({} devices skipped as stuck)", plan.array, plan.faults));
  ProgramVerifyConfig pcfg = c.cfg;
  pcfg.device_tol_uS = kernel::device_tolerance(plan.target_uS, c.cfg.tol_uS, c.cfg.relax_mid_lo_uS,
                                                c.cfg.relax_mid_hi_uS);
  auto res = program_and_record(
      site.board, site.record, plan.array, plan.target_uS, pcfg, plan.skip,
      [&](const ProgramVerifyProgress& r) {
        return progress("program", plan.kernel, plan.array, "", &r);
      },
      {}, site.observer);
  if (!res) {
    draft.fail(fmt::format("array {}: {}", plan.array, res.error().message));
    return to_status(res.error());
  }
  v1::Placement& pl = *draft.dep.add_placements();
  fill_placement(pl, plan, ck, compiled.quant_nrmse[static_cast<size_t>(plan.kernel)], *res, pcfg);
  if (res->cancelled) {
    draft.fail(fmt::format("cancelled while programming array {}", plan.array));
    return stopped_status(ctx, "deploy stopped; recorded as failed");
  }
  if (auto why = verify_array(pl, plan, ck, res->final_uS, c, progress)) {
    degraded.push_back(std::move(*why));
  }
  return std::nullopt;
}

// The end of a deploy whose arrays are programmed: the check (if set) run, the deployment
// recorded ready or degraded, and sent to the caller.
grpc::Status finish_deploy(Draft& draft, std::vector<std::string> degraded,
                           const DeployCheck& check, const Progress& progress, size_t kernels,
                           grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer) {
  if (check) {
    for (std::string& d :
         check(draft.dep, [&](const std::string& m) { progress("fidelity", -1, -1, m); })) {
      degraded.push_back(std::move(d));
    }
  }
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
  spdlog::info("deployment {} ({}): {} kernel(s), {}", draft.dep.id(), draft.dep.name(), kernels,
               draft.dep.state());
  v1::DeployKernelResponse msg;
  *msg.mutable_deployment() = draft.dep;
  writer->Write(msg);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status Deployer::deploy_operation(grpc::ServerContext* ctx,
                                        const v1::DeployKernelRequest& req,
                                        grpc::ServerWriterInterface<v1::DeployKernelResponse>* call,
                                        const v1::Model* model, const std::string& method,
                                        const DeployCheck& check) {
  return run_operation<v1::DeployKernelResponse>(
      sched_.operations, ctx, call, method, request_id(ctx),
      [](v1::OperationEvent& e, const v1::DeployKernelResponse& m) { *e.mutable_deploy() = m; },
      [&](grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer) {
        grpc::Status st = deploy(ctx, req, writer, model, check);
        retain();  // before the operation is finished: its end sees the record pruned
        return st;
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
                              const v1::Model* model, const DeployCheck& check) {
  if (auto a = access_.authorize(ctx, "Deploy"); !a.ok()) return a;
  if (auto e = check_enums(req); !e.ok()) return e;
  const BoardInfo& info = board_.info();
  auto c = check_request(req, info, defaults_);  // nothing is pulsed unless all is valid
  if (!c) return c.error();
  const Progress progress(ctx, writer, c->cfg.max_rounds);
  const Compiled compiled = compile_all(c->spec, progress);

  // The arrays it may take, exclusive: no stream runs there until the deploy is done, and
  // new streams there wait behind it. Then the board, for the whole programming.
  auto hold = sched_.arrays.exclusive(c->arrays, limits_of(ctx), sched_.refuse_busy_changes);
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
  auto arrays =
      free_arrays(record_, info.serial, c->arrays, compiled.kernels.size(), req.replace());
  if (!arrays) return arrays.error();
  auto plans = remap_around_faults(record_, info, compiled, *arrays, *c, progress);
  if (!plans) return plans.error();

  Draft draft(record_, states_);
  start_draft(draft, req, info.serial, model, *plans);
  if (auto w = draft.save(DeploymentState::kDeploying, "programming"); !w)
    return record_status(w.error());
  std::vector<std::string> degraded;
  const ProgrammingSite site{board_, record_, observer_};
  for (const kernel::ArrayPlan& plan : *plans) {
    if (auto stop = program_array(site, ctx, draft, plan, compiled, *c, progress, degraded)) {
      return *stop;
    }
  }
  return finish_deploy(draft, std::move(degraded), check, progress, compiled.kernels.size(),
                       writer);
}

}  // namespace xbar::server
