#include "matrix_job.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "matrix_proto.h"
#include "programming.h"
#include "status.h"
#include "xbar/matrix/deploy.h"

namespace xbar::server {

namespace {

constexpr int kCalibrationVectors = 64;
constexpr int kMaxCalibrationVectors = 1024;
constexpr uint32_t kCalibrationSeed = 20261207;

std::string quant_text(const matrix::Quantization& q) {
  if (!q.levels.empty()) {
    return fmt::format("{} level table{}", q.levels.size(), q.levels.size() == 1 ? "" : "s");
  }
  return q.bits > 0 ? fmt::format("{}-bit uniform", q.bits) : std::string("unquantized");
}

class MatrixJob final : public DeployJob {
 public:
  MatrixJob(const v1::DeployMatrixRequest& req, matrix::MatrixSpec spec, matrix::TilePlan plan,
            Eigen::MatrixXd calibration, DeployOptions opt, Board& board)
      : req_(req),
        spec_(std::move(spec)),
        plan_(std::move(plan)),
        calibration_(std::move(calibration)),
        opt_(std::move(opt)),
        board_(board) {}

  const DeployOptions& options() const override { return opt_; }
  size_t arrays_needed() const override { return plan_.tiles.size(); }

  void compile(const DeployProgress& progress) override {
    wq_ = matrix::quantize(spec_);
    range_ = matrix::effective_range(spec_);
    scale_uS_ = (spec_.window.g_max_uS - spec_.window.g_min_uS) / range_;
    const matrix::TileShape s =
        matrix::tile_shape(plan_.orientation, board_.info().rows, board_.info().cols);
    progress(
        "compile", -1, -1,
        fmt::format(
            "{} x {} matrix, {}: quantization error {:.4g}; {} tile(s) on arrays of "
            "{} x {} ({})",
            spec_.w.rows(), spec_.w.cols(), quant_text(spec_.quant),
            matrix::relative_error(wq_, spec_.w), plan_.tiles.size(), s.inputs, s.outputs,
            plan_.orientation == matrix::Orientation::kColumnPairs ? "column pairs" : "row pairs"));
  }

  Result<std::vector<ArrayTarget>> place(const std::vector<std::vector<kernel::StuckDevice>>& stuck,
                                         const std::vector<int>& free,
                                         const DeployProgress& progress) override {
    matrix::PlaceOptions popt;
    popt.naive = opt_.naive;
    popt.prog_lo_uS = opt_.cfg.target_min_uS;
    popt.prog_hi_uS = opt_.cfg.target_max_uS;
    assigned_ = matrix::assign_tiles(plan_, wq_, spec_.window, scale_uS_, board_.info().rows,
                                     board_.info().cols, stuck, free, popt);
    std::vector<ArrayTarget> targets;
    for (const matrix::TileAssignment& a : assigned_) {
      const matrix::TilePlacement& p = a.placement;
      progress(
          "remap", a.tile, a.array,
          fmt::format("tile {} -> array {}: {} stuck devices, {} avoided, {} compensated, {} "
                      "residual; predicted error {:.4g} (identity placement {:.4g}); {:.1f} ms",
                      a.tile, a.array, p.faults, p.avoided, p.compensated, p.residual,
                      p.predicted_error, p.naive_predicted_error, p.solve_ms));
      targets.push_back({a.tile, a.array, p.target_uS, p.skip, p.faults});
    }
    return targets;
  }

  void describe(v1::Deployment& dep) const override {
    v1::MatrixDeployment& md = *dep.mutable_matrix();
    *md.mutable_matrix() = req_.matrix();
    *md.mutable_quantization() = req_.quantization();
    md.set_g_min_us(spec_.window.g_min_uS);
    md.set_g_max_us(spec_.window.g_max_uS);
    md.set_orientation(plan_.orientation == matrix::Orientation::kRowPairs
                           ? v1::MATRIX_ORIENTATION_ROW_PAIRS
                           : v1::MATRIX_ORIENTATION_COLUMN_PAIRS);
    md.set_range(range_);
    md.set_scale_us(scale_uS_);
    md.set_quantization_error(matrix::relative_error(wq_, spec_.w));
  }

  std::optional<std::string> programmed(v1::Deployment& dep, const ArrayTarget& target,
                                        const ProgramVerifyResult& res,
                                        const ProgramVerifyConfig& cfg,
                                        const DeployProgress& progress) override;

  std::vector<std::string> finish(v1::Deployment& dep, const DeployProgress& progress) override;

 private:
  const v1::DeployMatrixRequest& req_;
  matrix::MatrixSpec spec_;
  matrix::TilePlan plan_;
  Eigen::MatrixXd calibration_;  // C x K, or empty: random inputs
  DeployOptions opt_;
  Board& board_;
  Eigen::MatrixXd wq_;
  double range_ = 1, scale_uS_ = 1;
  std::vector<matrix::TileAssignment> assigned_;
};

void fill_tile_placement(v1::Placement& pl, const matrix::TileAssignment& a,
                         const ProgramVerifyResult& res, const ProgramVerifyConfig& cfg) {
  const matrix::TilePlacement& p = a.placement;
  pl.set_kernel(static_cast<uint32_t>(a.tile));
  pl.set_array(static_cast<uint32_t>(a.array));
  for (int r : p.row_of) pl.add_row_of_logical(static_cast<uint32_t>(r));
  for (int c : p.col_of) pl.add_col_of_logical(static_cast<uint32_t>(c));
  pl.set_nrmse_predicted(p.predicted_error);
  pl.set_nrmse_naive_predicted(p.naive_predicted_error);
  pl.set_faults(static_cast<uint32_t>(p.faults));
  pl.set_faults_avoided(static_cast<uint32_t>(p.avoided));
  pl.set_faults_compensated(static_cast<uint32_t>(p.compensated));
  pl.set_faults_residual(static_cast<uint32_t>(p.residual));
  pl.set_remap_ms(p.solve_ms);
  fill_program_report(res, cfg, pl.mutable_programming());
  for (Eigen::Index r = 0; r < p.target_uS.rows(); ++r) {
    for (Eigen::Index c = 0; c < p.target_uS.cols(); ++c) {
      pl.add_target_us(static_cast<float>(p.target_uS(r, c)));
      pl.add_readback_us(static_cast<float>(res.final_uS(r, c)));
    }
  }
}

std::optional<std::string> MatrixJob::programmed(v1::Deployment& dep, const ArrayTarget& target,
                                                 const ProgramVerifyResult& res,
                                                 const ProgramVerifyConfig& cfg,
                                                 const DeployProgress& progress) {
  const matrix::TileAssignment& a = assigned_[static_cast<size_t>(target.unit)];
  const matrix::Tile& t = plan_.tiles[static_cast<size_t>(a.tile)];
  v1::Placement& pl = *dep.add_placements();
  fill_tile_placement(pl, a, res, cfg);
  v1::MatrixTile& mt = *dep.mutable_matrix()->add_tiles();
  mt.set_input_begin(static_cast<uint32_t>(t.in_begin));
  mt.set_inputs(static_cast<uint32_t>(t.in_count));
  mt.set_output_begin(static_cast<uint32_t>(t.out_begin));
  mt.set_outputs(static_cast<uint32_t>(t.out_count));
  mt.set_array(static_cast<uint32_t>(a.array));
  mt.set_predicted_error(a.placement.predicted_error);
  mt.set_naive_predicted_error(a.placement.naive_predicted_error);
  if (res.cancelled) return std::nullopt;  // recorded as it stands; the deploy fails
  auto rb = matrix::tile_readback(board_.info(), t, plan_.orientation, a.placement.row_of,
                                  a.placement.col_of, res.final_uS, wq_, scale_uS_, !opt_.naive);
  if (!rb) return fmt::format("tile {} on array {}: {}", a.tile, a.array, rb.error().message);
  mt.set_gain_index(static_cast<uint32_t>(rb->gain_index));
  mt.set_codes_per_us(rb->codes_per_uS);
  for (const matrix::WeightFix& f : rb->fixes) {
    v1::MatrixFix& fx = *mt.add_fixes();
    fx.set_input(static_cast<uint32_t>(f.i));
    fx.set_output(static_cast<uint32_t>(f.j));
    fx.set_error(f.err);
  }
  mt.set_readback_error(rb->error);
  mt.set_readback_error_analog(rb->error_analog);
  pl.set_nrmse(rb->error);
  pl.set_nrmse_analog(rb->error_analog);
  pl.set_device_fixes(static_cast<uint32_t>(rb->fixes.size()));
  progress("verify", a.tile, a.array,
           fmt::format("array {}: read-back error {:.4g} (predicted {:.4g}); {} weights fixed "
                       "digitally (analog alone: {:.4g}); TIA gain {}",
                       a.array, rb->error, a.placement.predicted_error, rb->fixes.size(),
                       rb->error_analog, rb->gain_index));
  if (!(rb->error <= opt_.max_error)) {
    return fmt::format("tile {} on array {}: read-back error {:.4g} > {:.4g}", a.tile, a.array,
                       rb->error, opt_.max_error);
  }
  return std::nullopt;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

std::vector<std::string> MatrixJob::finish(v1::Deployment& dep, const DeployProgress& progress) {
  v1::MatrixDeployment& md = *dep.mutable_matrix();
  auto loaded = loaded_matrix(dep);
  if (!loaded) return {fmt::format("calibration not run: {}", loaded.error().message)};
  md.set_readback_error(matrix::relative_error(loaded->w_read, wq_));
  Eigen::MatrixXd x = calibration_;
  if (x.size() == 0) {
    std::mt19937 rng(kCalibrationSeed);
    std::normal_distribution<double> z;
    x = Eigen::MatrixXd::NullaryExpr(kCalibrationVectors, spec_.w.rows(), [&] { return z(rng); });
  } else {
    md.set_input_range(x.cwiseAbs().maxCoeff());
  }
  if (auto c = matrix::calibrate(board_, loaded->run, wq_, x); !c) {
    return {fmt::format("calibration not measured: {}", c.error().message)};
  }
  for (Eigen::Index j = 0; j < loaded->run.n; ++j) {
    md.add_gain(loaded->run.gain(j));
    md.add_offset(loaded->run.offset(j));
  }
  auto y = matrix::multiply(board_, loaded->run, x, {});
  if (!y) return {fmt::format("calibration not checked: {}", y.error().message)};
  std::vector<double> err;
  const Eigen::MatrixXd ref = x * wq_;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    if (ref.row(i).norm() > 0) err.push_back((y->row(i) - ref.row(i)).norm() / ref.row(i).norm());
  }
  md.set_calibrated_error(median(err));
  progress("fidelity", -1, -1,
           fmt::format("calibrated on {} vectors: median error {:.4g} after calibration; read-back "
                       "error {:.4g}",
                       x.rows(), md.calibrated_error(), md.readback_error()));
  return {};
}

}  // namespace

std::expected<std::unique_ptr<DeployJob>, grpc::Status> make_matrix_job(
    const v1::DeployMatrixRequest& req, const DeployOptions& options, Board& board) {
  if (req.options().has_kernel_set()) {
    return std::unexpected(invalid_argument(
        "options.kernel_set: must be empty for DeployMatrix (the matrix is `matrix`)"));
  }
  auto spec =
      matrix_spec_from_proto(req.matrix(), req.quantization(), req.g_min_us(), req.g_max_us());
  if (!spec) return std::unexpected(to_status(spec.error()));
  if (auto v = matrix::validate(*spec, options.cfg.target_min_uS, options.cfg.target_max_uS); !v) {
    return std::unexpected(to_status(v.error()));
  }
  const BoardInfo& info = board.info();
  auto plan = matrix::plan_tiles(static_cast<int>(spec->w.rows()), static_cast<int>(spec->w.cols()),
                                 info.arrays, info.rows, info.cols);
  if (!plan) return std::unexpected(to_status(plan.error()));
  if (plan->tiles.size() > options.arrays.size()) {
    return std::unexpected(invalid_argument(fmt::format(
        "options.arrays: {} arrays allowed, the {} x {} matrix needs {} ({})",
        options.arrays.size(), spec->w.rows(), spec->w.cols(), plan->tiles.size(),
        matrix::capacity_text(static_cast<int>(options.arrays.size()), info.rows, info.cols))));
  }
  Eigen::MatrixXd calibration;
  if (req.has_calibration_inputs()) {
    auto x = matrix_from_proto(req.calibration_inputs(), "calibration_inputs");
    if (!x) return std::unexpected(to_status(x.error()));
    if (x->cols() != spec->w.rows() || x->rows() > kMaxCalibrationVectors) {
      return std::unexpected(invalid_argument(fmt::format(
          "calibration_inputs: {} x {}: allowed 1..{} rows of {} values (the matrix's rows)",
          x->rows(), x->cols(), kMaxCalibrationVectors, spec->w.rows())));
    }
    calibration = std::move(*x);
  }
  DeployOptions opt = options;
  if (opt.max_error == 0) opt.max_error = kDefaultMaxMatrixError;
  if (req.options().tol_us() == 0) opt.cfg.tol_uS = kDefaultMatrixTol_uS;
  return std::make_unique<MatrixJob>(req, std::move(*spec), std::move(*plan),
                                     std::move(calibration), std::move(opt), board);
}

}  // namespace xbar::server
