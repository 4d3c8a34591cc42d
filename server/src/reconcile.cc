#include "reconcile.h"

#include <fmt/format.h>

#include <cmath>

#include "kernel_service.h"
#include "model_proto.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/v1/kernels.pb.h"

namespace xbar::server {

Result<std::vector<ReconcileOutcome>> reconcile_deployments(Board& board, ChipRecord& record,
                                                            double tol_uS, const std::string& when,
                                                            bool at_start) {
  const BoardInfo& info = board.info();
  auto rows = record.deployments(info.serial);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound) return std::vector<ReconcileOutcome>{};
    return std::unexpected(rows.error());
  }
  std::vector<ReconcileOutcome> out;
  for (const DeploymentRow& row : *rows) {
    ReconcileOutcome o{row.id, row.state, row.state, row.message};
    if (row.state == DeploymentState::kDeploying) {
      if (!at_start) continue;
      o.after = DeploymentState::kFailed;
      o.message =
          "interrupted: xbard stopped during this deploy and it was never verified; deploy "
          "again";
    } else if (row.state == DeploymentState::kReady || row.state == DeploymentState::kDegraded) {
      v1::Deployment dep;
      if (!dep.ParseFromString(row.blob)) {
        o.after = DeploymentState::kFailed;
        o.message = "record unreadable at start";
      } else {
        auto ks = kernel_set_from_proto(dep.kernel_set());
        if (!ks) return std::unexpected(ks.error());
        const auto inputs = kernel::fidelity_inputs();
        std::string figures;
        bool lost = false, worse = false;
        for (const v1::Placement& p : dep.placements()) {
          const int n = info.rows * info.cols;
          if (p.readback_us_size() != n || p.kernel() >= ks->kernels.size() ||
              p.row_of_logical_size() != info.rows || p.col_of_logical_size() != info.cols) {
            continue;
          }
          auto g = board.read_array(static_cast<int>(p.array()),
                                    {.gain_index = 2, .n_avg = 16, .settle_ms = 0});
          if (!g) return std::unexpected(g.error());
          double sum2 = 0;
          int within = 0;
          for (int i = 0; i < n; ++i) {
            const double d = g->g_uS(i / info.cols, i % info.cols) - p.readback_us(i);
            sum2 += d * d;
            within += std::abs(d) <= 2 * tol_uS ? 1 : 0;
          }
          // The measured error that matters: the kernel through what the array holds now.
          const kernel::CompiledKernel ck = kernel::compile(ks->kernels[p.kernel()], ks->window);
          kernel::Placement pl;
          pl.row_of.assign(p.row_of_logical().begin(), p.row_of_logical().end());
          pl.col_of.assign(p.col_of_logical().begin(), p.col_of_logical().end());
          // As the loop runs it: the device fixes are made from the recorded read-back.
          Eigen::MatrixXd recorded(info.rows, info.cols);
          for (int i = 0; i < n; ++i) recorded(i / info.cols, i % info.cols) = p.readback_us(i);
          kernel::LoopPlanOptions lopt;
          lopt.fix_devices = dep.remap() != v1::REMAP_NAIVE;
          const Eigen::MatrixXd seen =
              kernel::apply_device_fixes(g->g_uS, kernel::device_fixes(ck, pl, recorded, lopt));
          const double nrmse = kernel::fidelity_nrmse(ck, pl, seen, inputs);
          const double radius =
              kernel::spectral_radius(kernel::effective_state_matrix(ck, pl, seen));
          figures += fmt::format(
              "{}array {}: NRMSE {:.3g} (at deploy {:.3g}), spectral radius {:.4f}, RMS {:.2f} uS "
              "from the verified conductances, {:.1f} % within 2 tol",
              figures.empty() ? "" : "; ", p.array(), nrmse, p.nrmse(), radius, std::sqrt(sum2 / n),
              100.0 * within / n);
          if (!(radius < 1.0) && p.spectral_radius() < 1.0) lost = true;
          if (!(nrmse < 1.0) && p.nrmse() < 1.0) lost = true;
          if (!(nrmse <= std::max(1.5 * p.nrmse(), p.nrmse() + 0.05))) worse = true;
        }
        if (lost) {
          o.after = DeploymentState::kLost;
          o.message = "read back " + when + ", the arrays no longer hold it: " + figures;
        } else if (worse) {
          o.after = DeploymentState::kDegraded;
          o.message = "read back " + when + ", worse than deployed: " + figures;
        } else {
          // A degraded one keeps why it is degraded, not the figures of earlier verifications
          // (a board that restarts often would grow the message without bound).
          std::string why = row.state == DeploymentState::kDegraded ? row.message : std::string();
          if (const size_t at = why.find("verified "); at != std::string::npos) {
            why.erase(at >= 2 ? at - 2 : at);
          }
          o.message =
              (why.empty() ? std::string() : why + "; ") + "verified " + when + ": " + figures;
        }
      }
    } else {
      continue;
    }
    if (auto w = record.set_deployment_state(row.id, o.after, o.message); !w) {
      return std::unexpected(w.error());
    }
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace xbar::server
