#include "kernel_job.h"

#include <fmt/format.h>

#include "model_proto.h"
#include "programming.h"
#include "status.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/loop_plan.h"

namespace xbar::server {

namespace {

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

class KernelJob final : public DeployJob {
 public:
  KernelJob(const v1::DeployKernelRequest& req, kernel::KernelSetSpec spec, DeployOptions opt,
            const v1::Model* model, DeployCheck check)
      : req_(req),
        spec_(std::move(spec)),
        opt_(std::move(opt)),
        model_(model),
        check_(std::move(check)) {}

  const DeployOptions& options() const override { return opt_; }
  size_t arrays_needed() const override { return spec_.kernels.size(); }

  void compile(const DeployProgress& progress) override {
    const auto inputs = kernel::fidelity_inputs();
    for (size_t k = 0; k < spec_.kernels.size(); ++k) {
      kernels_.push_back(kernel::compile(spec_.kernels[k], spec_.window));
      quant_nrmse_.push_back(kernel::quantization_nrmse(kernels_.back(), inputs));
      progress("compile", static_cast<int>(k), -1,
               fmt::format("kernel {}: {} states, quantization NRMSE {:.4g}", k, kernels_.back().n,
                           quant_nrmse_.back()));
    }
  }

  Result<std::vector<ArrayTarget>> place(const std::vector<std::vector<kernel::StuckDevice>>& stuck,
                                         const std::vector<int>& free,
                                         const DeployProgress& progress) override;

  void describe(v1::Deployment& dep) const override {
    *dep.mutable_kernel_set() = req_.kernel_set();
    dep.set_remap(req_.remap());
    if (model_ != nullptr) *dep.mutable_model() = *model_;
  }

  std::optional<std::string> programmed(v1::Deployment& dep, const ArrayTarget& target,
                                        const ProgramVerifyResult& res,
                                        const ProgramVerifyConfig& cfg,
                                        const DeployProgress& progress) override {
    const kernel::ArrayPlan& plan = plans_[static_cast<size_t>(target.unit)];
    const kernel::CompiledKernel& ck = kernels_[static_cast<size_t>(plan.kernel)];
    v1::Placement& pl = *dep.add_placements();
    fill_placement(pl, plan, ck, quant_nrmse_[static_cast<size_t>(plan.kernel)], res, cfg);
    if (res.cancelled) return std::nullopt;  // recorded as it stands; the deploy fails
    return verify(pl, plan, ck, res.final_uS, progress);
  }

  std::vector<std::string> finish(v1::Deployment& dep, const DeployProgress& progress) override {
    if (!check_) return {};
    return check_(dep, [&](const std::string& m) { progress("fidelity", -1, -1, m); });
  }

 private:
  std::optional<std::string> verify(v1::Placement& pl, const kernel::ArrayPlan& plan,
                                    const kernel::CompiledKernel& ck,
                                    const Eigen::MatrixXd& final_uS,
                                    const DeployProgress& progress) const;

  const v1::DeployKernelRequest& req_;
  kernel::KernelSetSpec spec_;
  DeployOptions opt_;
  const v1::Model* model_;
  DeployCheck check_;
  std::vector<kernel::CompiledKernel> kernels_;
  std::vector<double> quant_nrmse_;       // per kernel, on the fidelity inputs
  std::vector<kernel::ArrayPlan> plans_;  // in the order place() returned them
};

Result<std::vector<ArrayTarget>> KernelJob::place(
    const std::vector<std::vector<kernel::StuckDevice>>& stuck, const std::vector<int>& free,
    const DeployProgress& progress) {
  kernel::RemapOptions ropt;
  ropt.naive = opt_.naive;
  ropt.prog_lo_uS = opt_.cfg.target_min_uS;
  ropt.prog_hi_uS = opt_.cfg.target_max_uS;
  XBAR_TRY(plans, kernel::remap(kernels_, stuck, free, ropt));
  std::vector<ArrayTarget> targets;
  for (const kernel::ArrayPlan& p : *plans) {
    progress(
        "remap", p.kernel, p.array,
        fmt::format("kernel {} -> array {}: {} stuck devices, {} avoided, {} compensated, "
                    "{} residual; predicted NRMSE {:.4g} (identity placement {:.4g}); {:.1f} ms",
                    p.kernel, p.array, p.faults, p.avoided, p.compensated, p.residual,
                    p.predicted_nrmse, p.naive_predicted_nrmse, p.solve_ms));
    targets.push_back({static_cast<int>(targets.size()), p.array, p.target_uS, p.skip, p.faults});
  }
  plans_ = std::move(*plans);
  return targets;
}

// Verifies a programmed array: the kernel as the loop runs it, through the conductances the
// array reads back with the device fixes (none for naive), and through the analog array
// alone. Fills the placement's figures; returns why it is degraded (nullopt: it is not).
std::optional<std::string> KernelJob::verify(v1::Placement& pl, const kernel::ArrayPlan& plan,
                                             const kernel::CompiledKernel& ck,
                                             const Eigen::MatrixXd& final_uS,
                                             const DeployProgress& progress) const {
  const auto inputs = kernel::fidelity_inputs();
  kernel::LoopPlanOptions lopt;
  lopt.fix_devices = !opt_.naive;
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
  if (!(nrmse <= opt_.max_error)) {
    return fmt::format("kernel {} on array {}: NRMSE {:.4g} > {:.4g}", plan.kernel, plan.array,
                       nrmse, opt_.max_error);
  }
  return std::nullopt;
}

}  // namespace

std::expected<std::unique_ptr<DeployJob>, grpc::Status> make_kernel_job(
    const v1::DeployKernelRequest& req, const DeployOptions& options, const v1::Model* model,
    DeployCheck check) {
  auto spec = kernel_set_from_proto(req.kernel_set());
  if (!spec) return std::unexpected(to_status(spec.error()));
  if (auto v = kernel::validate(*spec, options.cfg.target_min_uS, options.cfg.target_max_uS); !v) {
    return std::unexpected(to_status(v.error()));
  }
  if (spec->kernels.size() > options.arrays.size()) {
    return std::unexpected(
        invalid_argument(fmt::format("kernels: {} kernels for {} arrays: one array per kernel",
                                     spec->kernels.size(), options.arrays.size())));
  }
  DeployOptions opt = options;
  if (opt.max_error == 0) opt.max_error = kDefaultMaxNrmse;
  return std::make_unique<KernelJob>(req, std::move(*spec), std::move(opt), model,
                                     std::move(check));
}

}  // namespace xbar::server
