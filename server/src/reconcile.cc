#include "reconcile.h"

#include <fmt/format.h>

#include <cmath>

#include "kernel_service.h"
#include "matrix_proto.h"
#include "model_proto.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/v1/kernels.pb.h"

namespace xbar::server {

namespace {

// What reading a deployment's arrays back found: each array's figures, and whether one lost the
// kernel or got worse than at deploy.
struct Findings {
  std::string figures;
  bool lost = false;
  bool worse = false;
};

// The RMS difference (uS) of the array's read-back from the conductances verified at deploy,
// and the fraction (%) within 2 tol of them.
std::pair<double, double> drift_from_verified(const Eigen::MatrixXd& g_uS, const v1::Placement& p,
                                              const BoardInfo& info, double tol_uS) {
  const int n = info.rows * info.cols;
  double sum2 = 0;
  int within = 0;
  for (int i = 0; i < n; ++i) {
    const double d = g_uS(i / info.cols, i % info.cols) - p.readback_us(i);
    sum2 += d * d;
    within += std::abs(d) <= 2 * tol_uS ? 1 : 0;
  }
  return {std::sqrt(sum2 / n), 100.0 * within / n};
}

// Reads back one placement's array and adds its figures to `found`; a placement that does not
// fit the board or its kernel set is skipped.
Result<void> check_placement(Board& board, const v1::Deployment& dep,
                             const kernel::KernelSetSpec& ks, const v1::Placement& p, double tol_uS,
                             const std::vector<Eigen::VectorXd>& inputs, Findings& found) {
  const BoardInfo& info = board.info();
  const int n = info.rows * info.cols;
  if (p.readback_us_size() != n || p.kernel() >= ks.kernels.size() ||
      p.row_of_logical_size() != info.rows || p.col_of_logical_size() != info.cols) {
    return {};
  }
  auto g =
      board.read_array(static_cast<int>(p.array()), {.gain_index = 2, .n_avg = 16, .settle_ms = 0});
  if (!g) return std::unexpected(g.error());
  const auto [rms_uS, within_pct] = drift_from_verified(g->g_uS, p, info, tol_uS);
  // The measured error that matters: the kernel through what the array holds now.
  const kernel::CompiledKernel ck = kernel::compile(ks.kernels[p.kernel()], ks.window);
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
  const double radius = kernel::spectral_radius(kernel::effective_state_matrix(ck, pl, seen));
  found.figures += fmt::format(
      "{}array {}: NRMSE {:.3g} (at deploy {:.3g}), spectral "
      "radius {:.4f}, RMS {:.2f} uS "
      "from the verified conductances, {:.1f} % within 2 tol",
      found.figures.empty() ? "" : "; ", p.array(), nrmse, p.nrmse(), radius, rms_uS, within_pct);
  if (!(radius < 1.0) && p.spectral_radius() < 1.0) found.lost = true;
  if (!(nrmse < 1.0) && p.nrmse() < 1.0) found.lost = true;
  if (!(nrmse <= std::max(1.5 * p.nrmse(), p.nrmse() + 0.05))) found.worse = true;
  return {};
}

// A matrix deployment's tile: its array read back, and the tile's weights from what it holds
// now against the quantized matrix (the fixes made at deploy applied), against its error then.
Result<void> check_matrix_tile(Board& board, const LoadedMatrix& m, const v1::MatrixTile& mt,
                               const matrix::TileRun& t, Findings& found) {
  auto g = board.read_array(t.array, {.gain_index = 2, .n_avg = 16, .settle_ms = 0});
  if (!g) return std::unexpected(g.error());
  Eigen::MatrixXd w =
      matrix::tile_weights(g->g_uS, t.tile, m.run.orientation, t.row_of, t.col_of, m.run.scale_uS);
  for (const matrix::WeightFix& f : t.fixes) w(f.i, f.j) -= f.err;
  const double err = matrix::relative_error(
      w, m.wq.block(t.tile.in_begin, t.tile.out_begin, t.tile.in_count, t.tile.out_count));
  found.figures +=
      fmt::format("{}array {}: read-back error {:.3g} (at deploy {:.3g})",
                  found.figures.empty() ? "" : "; ", t.array, err, mt.readback_error());
  if (!(err < 1.0) && mt.readback_error() < 1.0) found.lost = true;
  if (!(err <= std::max(1.5 * mt.readback_error(), mt.readback_error() + 0.05))) {
    found.worse = true;
  }
  return {};
}

Result<void> check_matrix(Board& board, const v1::Deployment& dep, Findings& found) {
  auto m = loaded_matrix(dep);
  if (!m) return {};  // a record this daemon cannot read is left as it is
  for (size_t i = 0; i < m->run.tiles.size(); ++i) {
    XBAR_RETURN_IF_ERROR(check_matrix_tile(board, *m, dep.matrix().tiles(static_cast<int>(i)),
                                           m->run.tiles[i], found));
  }
  return {};
}

// The state and message a deployment read back `when` gets from what was found.
void conclude(ReconcileOutcome& o, const DeploymentRow& row, const std::string& when,
              const Findings& found) {
  if (found.lost) {
    o.after = DeploymentState::kLost;
    o.message = "read back " + when + ", the arrays no longer hold it: " + found.figures;
  } else if (found.worse) {
    o.after = DeploymentState::kDegraded;
    o.message = "read back " + when + ", worse than deployed: " + found.figures;
  } else {
    // A degraded one keeps why it is degraded, not the figures of earlier verifications
    // (a board that restarts often would grow the message without bound).
    std::string why = row.state == DeploymentState::kDegraded ? row.message : std::string();
    if (const size_t at = why.find("verified "); at != std::string::npos) {
      why.erase(at >= 2 ? at - 2 : at);
    }
    o.message =
        (why.empty() ? std::string() : why + "; ") + "verified " + when + ": " + found.figures;
  }
}

// A ready or degraded deployment: its arrays read back and its state and message set from what
// they hold now.
Result<void> reverify(Board& board, const DeploymentRow& row, double tol_uS,
                      const std::string& when, ReconcileOutcome& o) {
  v1::Deployment dep;
  if (!dep.ParseFromString(row.blob)) {
    o.after = DeploymentState::kFailed;
    o.message = "record unreadable at start";
    return {};
  }
  Findings found;
  if (dep.has_matrix()) {
    XBAR_RETURN_IF_ERROR(check_matrix(board, dep, found));
    conclude(o, row, when, found);
    return {};
  }
  auto ks = kernel_set_from_proto(dep.kernel_set());
  if (!ks) return std::unexpected(ks.error());
  const auto inputs = kernel::fidelity_inputs();
  for (const v1::Placement& p : dep.placements()) {
    if (auto c = check_placement(board, dep, *ks, p, tol_uS, inputs, found); !c) {
      return std::unexpected(c.error());
    }
  }
  conclude(o, row, when, found);
  return {};
}

}  // namespace

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
          "interrupted: xbard stopped during this deploy and it was "
          "never verified; deploy "
          "again";
    } else if (row.state == DeploymentState::kReady || row.state == DeploymentState::kDegraded) {
      if (auto r = reverify(board, row, tol_uS, when, o); !r) return std::unexpected(r.error());
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
