#include "kernel_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>

#include "call.h"
#include "deployment_pages.h"
#include "operations.h"
#include "programming.h"
#include "request_checks.h"
#include "status.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/kernel/model.h"
#include "xbar/kernel/remap.h"

namespace xbar::server {

namespace {

using kernel::cd;

// What a stuck device is assumed to sit at when the record does not know (DESIGN.md §2:
// stuck-high 300-600 uS, stuck-low below 1 uS).
constexpr double kAssumedStuckHigh_uS = 450.0;
constexpr double kAssumedStuckLow_uS = 0.5;
constexpr double kDefaultMaxNrmse = 0.5;

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

grpc::Status record_status(const Error& e) {
  if (e.code == ErrorCode::kNotFound || e.code == ErrorCode::kInvalidArgument) return to_status(e);
  return {grpc::StatusCode::INTERNAL, "chip record: " + e.message};
}

}  // namespace

grpc::Status KernelServiceImpl::DeployKernel(grpc::ServerContext* ctx,
                                             const v1::DeployKernelRequest* req,
                                             grpc::ServerWriter<v1::DeployKernelResponse>* writer) {
  return deploy_operation(ctx, *req, writer, {}, "/xbar.v1.KernelService/DeployKernel");
}

grpc::Status KernelServiceImpl::deploy_operation(
    grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
    grpc::ServerWriterInterface<v1::DeployKernelResponse>* call, const std::string& model,
    const std::string& method, const DeployCheck& check) {
  return run_operation<v1::DeployKernelResponse>(
      sched_.operations, ctx, call, method, request_id(ctx),
      [](v1::OperationEvent& e, const v1::DeployKernelResponse& m) { *e.mutable_deploy() = m; },
      [&](grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer) {
        grpc::Status st = deploy(ctx, req, writer, model, check);
        retain();  // before the operation is finished: its end sees the record pruned
        return st;
      });
}

void KernelServiceImpl::retain() {
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

grpc::Status KernelServiceImpl::deploy(
    grpc::ServerContext* ctx, const v1::DeployKernelRequest& request,
    grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer, const std::string& model,
    const DeployCheck& check) {
  if (auto a = authorize_change(ctx, "Deploy"); !a.ok()) return a;
  if (auto e = check_enums(request); !e.ok()) return e;
  const v1::DeployKernelRequest* req = &request;
  const BoardInfo& info = board_.info();
  const std::string& serial = info.serial;
  // ---- validation: nothing is pulsed unless everything is valid ----
  auto spec = kernel_set_from_proto(req->kernel_set());
  if (!spec) return to_status(spec.error());
  ProgramVerifyConfig cfg = defaults_;
  if (auto v = kernel::validate(*spec, cfg.target_min_uS, cfg.target_max_uS); !v) {
    return to_status(v.error());
  }
  if (req->name().size() > 64) {
    return invalid_argument(
        fmt::format("name: {} characters, allowed up to 64", req->name().size()));
  }
  std::vector<int> allowed;
  for (int i = 0; i < req->arrays_size(); ++i) {
    const uint32_t a = req->arrays(i);
    if (a >= static_cast<uint32_t>(info.arrays)) {
      return invalid_argument(fmt::format("arrays[{}] = {}: allowed 0..{}", i, a, info.arrays - 1));
    }
    if (std::find(allowed.begin(), allowed.end(), static_cast<int>(a)) != allowed.end()) {
      return invalid_argument(fmt::format("arrays[{}] = {}: listed twice", i, a));
    }
    allowed.push_back(static_cast<int>(a));
  }
  if (allowed.empty()) {
    for (int a = 0; a < info.arrays; ++a) allowed.push_back(a);
  }
  const int nk = static_cast<int>(spec->kernels.size());
  if (nk > static_cast<int>(allowed.size())) {
    return invalid_argument(
        fmt::format("kernels: {} kernels for {} arrays: one array per kernel", nk, allowed.size()));
  }
  if (req->tol_us() != 0) cfg.tol_uS = req->tol_us();
  if (!(cfg.tol_uS > 0 && cfg.tol_uS <= 100)) {
    return invalid_argument(
        fmt::format("tol_uS = {}: allowed (0, 100] (0 means the daemon's default)", cfg.tol_uS));
  }
  if (req->max_rounds() != 0) {
    if (req->max_rounds() > 1000) {
      return invalid_argument(fmt::format("max_rounds = {}: allowed 1..1000", req->max_rounds()));
    }
    cfg.max_rounds = static_cast<int>(req->max_rounds());
  }
  const double max_nrmse = req->max_nrmse() != 0 ? req->max_nrmse() : kDefaultMaxNrmse;
  if (!(max_nrmse > 0 && std::isfinite(max_nrmse))) {
    return invalid_argument(fmt::format("max_nrmse = {}: allowed > 0", req->max_nrmse()));
  }
  const bool naive = req->remap() == v1::REMAP_NAIVE;

  auto progress = [&](std::string stage, int kernel, int array, std::string message,
                      const ProgramVerifyProgress* round = nullptr) {
    v1::DeployKernelResponse msg;
    auto* p = msg.mutable_progress();
    p->set_stage(std::move(stage));
    p->set_kernel(kernel);
    p->set_array(array);
    p->set_message(std::move(message));
    if (round) fill_round(*round, cfg.max_rounds, p->mutable_round());
    writer->Write(msg);
    return !call_stopped(ctx);
  };

  // ---- compile ----
  std::vector<kernel::CompiledKernel> compiled;
  const auto inputs = kernel::fidelity_inputs();
  std::vector<double> quant_nrmse;
  for (int k = 0; k < nk; ++k) {
    compiled.push_back(kernel::compile(spec->kernels[static_cast<size_t>(k)], spec->window));
    quant_nrmse.push_back(kernel::quantization_nrmse(compiled.back(), inputs));
    progress("compile", k, -1,
             fmt::format("kernel {}: {} states, quantization NRMSE {:.4g}", k, compiled.back().n,
                         quant_nrmse.back()));
  }

  // The arrays it may take, exclusive: no stream runs there until the deploy is done, and
  // new streams there wait behind it. Then the board, for the whole programming.
  auto hold = sched_.arrays.exclusive(allowed, limits_of(ctx), sched_.refuse_busy_changes);
  if (!hold) return to_status(hold.error());
  progress("queue", -1, -1, "arrays held; waiting for the board");
  auto turn = sched_.board.acquire(client_of(ctx), limits_of(ctx));
  if (!turn) return to_status(turn.error());
  if (auto s = stopped_before_start(ctx); !s.ok()) return s;
  if (auto t =
          record_.touch_chip({serial, info.firmware_version, info.arrays, info.rows, info.cols});
      !t) {
    return record_status(t.error());
  }
  // ---- arrays: free ones unless replace ----
  auto owners = record_.array_owners(serial);
  if (!owners) return record_status(owners.error());
  if (!req->replace()) {
    std::vector<int> free;
    std::string held;
    for (int a : allowed) {
      const auto& o = (*owners)[static_cast<size_t>(a)];
      if (o) {
        held += fmt::format("{}array {} holds {}", held.empty() ? "" : ", ", a, *o);
      } else {
        free.push_back(a);
      }
    }
    if (static_cast<int>(free.size()) < nk) {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              fmt::format("arrays: {} kernels need {} free arrays, {} free ({}); set replace to "
                          "take them",
                          nk, nk, free.size(), held)};
    }
    allowed = free;
  }
  // ---- remap ----
  auto faults = record_.faults(serial, std::nullopt);
  if (!faults) return record_status(faults.error());
  std::vector<std::vector<kernel::StuckDevice>> stuck(static_cast<size_t>(info.arrays));
  for (const FaultEntry& f : *faults) {
    if (f.kind != wire::FaultKind::kStuckHigh && f.kind != wire::FaultKind::kStuckLow) continue;
    const bool high = f.kind == wire::FaultKind::kStuckHigh;
    stuck[static_cast<size_t>(f.array)].push_back(
        {f.row, f.col, high, f.g_uS.value_or(high ? kAssumedStuckHigh_uS : kAssumedStuckLow_uS)});
  }
  kernel::RemapOptions ropt;
  ropt.naive = naive;
  ropt.prog_lo_uS = cfg.target_min_uS;
  ropt.prog_hi_uS = cfg.target_max_uS;
  auto plans = kernel::remap(compiled, stuck, allowed, ropt);
  if (!plans) return to_status(plans.error());
  for (const kernel::ArrayPlan& p : *plans) {
    progress(
        "remap", p.kernel, p.array,
        fmt::format("kernel {} -> array {}: {} stuck devices, {} avoided, {} compensated, "
                    "{} residual; predicted NRMSE {:.4g} (identity placement {:.4g}); {:.1f} ms",
                    p.kernel, p.array, p.faults, p.avoided, p.compensated, p.residual,
                    p.predicted_nrmse, p.naive_predicted_nrmse, p.solve_ms));
  }

  // ---- the deployment, recorded before the first pulse (state "deploying") ----
  v1::Deployment dep;
  dep.set_id(new_deployment_id());
  dep.set_name(req->name());
  dep.set_serial(serial);
  dep.set_created_at_ms(now_ms());
  dep.set_state("deploying");
  *dep.mutable_kernel_set() = req->kernel_set();
  dep.set_remap(req->remap());
  dep.set_model(model);
  DeploymentRow row;
  row.id = dep.id();
  row.serial = serial;
  row.name = dep.name();
  row.created_at_ms = dep.created_at_ms();
  for (const kernel::ArrayPlan& p : *plans) row.arrays.push_back(p.array);
  std::sort(row.arrays.begin(), row.arrays.end());
  auto save = [&](const std::string& state, const std::string& message) {
    dep.set_state(state);
    dep.set_message(message);
    row.state = state;
    row.message = message;
    row.blob = dep.SerializeAsString();
    return record_.put_deployment(row);
  };
  if (auto w = save("deploying", "programming"); !w) return record_status(w.error());
  // A deploy that stops early is `failed`, to every caller, even when the record cannot take
  // it (a full or failing disk): then the daemon remembers it (DeploymentStates), and the
  // start-up reconciliation fails the record's `deploying` row after a restart.
  auto fail = [&](const std::string& why) {
    if (auto w = save("failed", why); !w) {
      spdlog::error("deployment {}: recording the failure: {}", dep.id(), w.error().message);
      states_.remember_unrecorded(dep.id(), "failed",
                                  fmt::format("{} (not in the chip record, whose write failed: {})",
                                              why, w.error().message));
    }
  };

  // ---- program-verify each array, then verify by read-back ----
  std::vector<std::string> degraded;
  for (const kernel::ArrayPlan& plan : *plans) {
    const kernel::CompiledKernel& ck = compiled[static_cast<size_t>(plan.kernel)];
    progress(
        "program", plan.kernel, plan.array,
        fmt::format("programming array {} ({} devices skipped as stuck)", plan.array, plan.faults));
    ProgramVerifyConfig pcfg = cfg;
    pcfg.device_tol_uS = kernel::device_tolerance(plan.target_uS, cfg.tol_uS, cfg.relax_mid_lo_uS,
                                                  cfg.relax_mid_hi_uS);
    auto res = program_and_record(board_, record_, plan.array, plan.target_uS, pcfg, plan.skip,
                                  [&](const ProgramVerifyProgress& r) {
                                    return progress("program", plan.kernel, plan.array, "", &r);
                                  });
    if (!res) {
      fail(fmt::format("array {}: {}", plan.array, res.error().message));
      return to_status(res.error());
    }
    v1::Placement* pl = dep.add_placements();
    pl->set_kernel(static_cast<uint32_t>(plan.kernel));
    pl->set_array(static_cast<uint32_t>(plan.array));
    pl->set_states(static_cast<uint32_t>(ck.n));
    for (int i = 0; i < kernel::kSide; ++i) {
      pl->add_row_of_logical(static_cast<uint32_t>(plan.placement.row_of[static_cast<size_t>(i)]));
      pl->add_col_of_logical(static_cast<uint32_t>(plan.placement.col_of[static_cast<size_t>(i)]));
    }
    for (const kernel::Route& r : kernel::feedback_routes(ck.n, plan.placement)) {
      auto* route = pl->add_feedback();
      route->set_col(static_cast<uint32_t>(r.col));
      route->set_row(static_cast<uint32_t>(r.row));
    }
    pl->set_state_scale_us(ck.state_scale_uS);
    pl->set_output_scale_us(ck.output_scale_uS);
    pl->set_input_gain(ck.input_gain);
    pl->set_nrmse_predicted(plan.predicted_nrmse);
    pl->set_nrmse_naive_predicted(plan.naive_predicted_nrmse);
    pl->set_quantization_nrmse(quant_nrmse[static_cast<size_t>(plan.kernel)]);
    pl->set_faults(static_cast<uint32_t>(plan.faults));
    pl->set_faults_avoided(static_cast<uint32_t>(plan.avoided));
    pl->set_faults_compensated(static_cast<uint32_t>(plan.compensated));
    pl->set_faults_residual(static_cast<uint32_t>(plan.residual));
    pl->set_remap_ms(plan.solve_ms);
    fill_program_report(*res, pcfg, pl->mutable_programming());
    for (int r = 0; r < kernel::kSide; ++r) {
      for (int c = 0; c < kernel::kSide; ++c) {
        pl->add_target_us(static_cast<float>(plan.target_uS(r, c)));
        pl->add_readback_us(static_cast<float>(res->final_uS(r, c)));
      }
    }
    if (res->cancelled) {
      fail(fmt::format("cancelled while programming array {}", plan.array));
      return {grpc::StatusCode::CANCELLED, "deploy cancelled; recorded as failed"};
    }
    // Verify: the kernel as the loop runs it, through the conductances the array reads back
    // with the device fixes (none for naive); and through the analog array alone.
    kernel::LoopPlanOptions lopt;
    lopt.fix_devices = !naive;
    const std::vector<kernel::DeviceFix> fixes =
        kernel::device_fixes(ck, plan.placement, res->final_uS, lopt);
    const Eigen::MatrixXd seen = kernel::apply_device_fixes(res->final_uS, fixes);
    const double nrmse = kernel::fidelity_nrmse(ck, plan.placement, seen, inputs);
    const double radius =
        kernel::spectral_radius(kernel::effective_state_matrix(ck, plan.placement, seen));
    const double nrmse_analog =
        fixes.empty() ? nrmse : kernel::fidelity_nrmse(ck, plan.placement, res->final_uS, inputs);
    const double radius_analog = fixes.empty()
                                     ? radius
                                     : kernel::spectral_radius(kernel::effective_state_matrix(
                                           ck, plan.placement, res->final_uS));
    pl->set_nrmse(nrmse);
    pl->set_spectral_radius(radius);
    pl->set_device_fixes(static_cast<uint32_t>(fixes.size()));
    pl->set_nrmse_analog(nrmse_analog);
    pl->set_spectral_radius_analog(radius_analog);
    progress("verify", plan.kernel, plan.array,
             fmt::format("array {}: read-back NRMSE {:.4g} (predicted {:.4g}), spectral radius "
                         "{:.4f}; {} device fixes (analog alone: NRMSE {:.4g}, radius {:.4f})",
                         plan.array, nrmse, plan.predicted_nrmse, radius, fixes.size(),
                         nrmse_analog, radius_analog));
    if (!(radius < 1.0)) {
      degraded.push_back(
          fmt::format("kernel {} on array {}: unstable as programmed (spectral "
                      "radius {:.4f})",
                      plan.kernel, plan.array, radius));
    } else if (!(nrmse <= max_nrmse)) {
      degraded.push_back(fmt::format("kernel {} on array {}: NRMSE {:.4g} > {:.4g}", plan.kernel,
                                     plan.array, nrmse, max_nrmse));
    }
  }
  if (check) {
    for (std::string& d :
         check(dep, [&](const std::string& m) { progress("fidelity", -1, -1, m); })) {
      degraded.push_back(std::move(d));
    }
  }
  std::string why;
  for (const std::string& d : degraded) why += (why.empty() ? "" : "; ") + d;
  if (auto w = save(degraded.empty() ? "ready" : "degraded", why); !w) {
    // Programmed and verified, but not recorded as such: it must not serve (the record would
    // not know what its arrays hold after a restart), and it must not stay `deploying`.
    fail(fmt::format("programmed, but its verified state could not be recorded: {}",
                     w.error().message));
    return record_status(w.error());
  }
  spdlog::info("deployment {} ({}): {} kernel(s), {}", dep.id(), dep.name(), nk, dep.state());
  v1::DeployKernelResponse msg;
  *msg.mutable_deployment() = dep;
  writer->Write(msg);
  return grpc::Status::OK;
}

grpc::Status KernelServiceImpl::GetDeployment(grpc::ServerContext*,
                                              const v1::GetDeploymentRequest* req,
                                              v1::Deployment* out) {
  if (req->id().empty()) return invalid_argument("id: empty: give a deployment id (dep-...)");
  auto row = states_.get(req->id());
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return {grpc::StatusCode::NOT_FOUND, fmt::format("id = '{}': no such deployment", req->id())};
    }
    return record_status(row.error());
  }
  if (!out->ParseFromString(row->blob)) {
    return {grpc::StatusCode::DATA_LOSS,
            fmt::format("deployment {}: record unreadable", req->id())};
  }
  out->set_state(row->state);  // the record's state wins (e.g. stale), as corrected in memory
  out->set_message(row->message);
  return grpc::Status::OK;
}

grpc::Status KernelServiceImpl::ListDeployments(grpc::ServerContext*,
                                                const v1::ListDeploymentsRequest* req,
                                                v1::ListDeploymentsResponse* out) {
  auto page = list_deployments_page(record_, board_.info().serial, *req,
                                    [this](DeploymentRow& r) { states_.correct(r); });
  if (!page) return record_status(page.error());
  *out = std::move(*page);
  return grpc::Status::OK;
}

grpc::Status KernelServiceImpl::DeleteDeployment(grpc::ServerContext* ctx,
                                                 const v1::DeleteDeploymentRequest* req,
                                                 v1::DeleteDeploymentResponse*) {
  if (auto a = authorize_change(ctx, "DeleteDeployment"); !a.ok()) return a;
  if (req->id().empty()) return invalid_argument("id: empty: give a deployment id (dep-...)");
  // Never while a stream runs on its arrays, nor while a deploy there writes its record.
  auto row = record_.deployment(req->id());
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return {grpc::StatusCode::NOT_FOUND, fmt::format("id = '{}': no such deployment", req->id())};
    }
    return record_status(row.error());
  }
  auto hold = sched_.arrays.exclusive(row->arrays, limits_of(ctx), sched_.refuse_busy_changes);
  if (!hold) return to_status(hold.error());
  if (auto s = stopped_before_start(ctx); !s.ok()) return s;
  if (auto d = record_.delete_deployment(req->id()); !d) {
    if (d.error().code == ErrorCode::kNotFound) {
      return {grpc::StatusCode::NOT_FOUND, fmt::format("id = '{}': no such deployment", req->id())};
    }
    return record_status(d.error());
  }
  spdlog::info("deployment {} deleted", req->id());
  return grpc::Status::OK;
}

}  // namespace xbar::server
