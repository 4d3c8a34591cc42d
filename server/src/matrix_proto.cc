#include "matrix_proto.h"

#include <fmt/format.h>

#include <cmath>

#include "xbar/matrix/tiles.h"

namespace xbar::server {

Result<Eigen::MatrixXd> matrix_from_proto(const v1::Matrix& m, const std::string& field) {
  if (m.rows() < 1 || m.rows() > matrix::kMaxSide || m.cols() < 1 || m.cols() > matrix::kMaxSide) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: {} x {}: allowed 1..{} rows and 1..{} columns", field,
                                  m.rows(), m.cols(), matrix::kMaxSide, matrix::kMaxSide));
  }
  const uint64_t n = static_cast<uint64_t>(m.rows()) * m.cols();
  if (static_cast<uint64_t>(m.values_size()) != n) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}.values: {} values, rows x cols = {} x {} needs {}", field,
                                  m.values_size(), m.rows(), m.cols(), n));
  }
  Eigen::MatrixXd out(m.rows(), m.cols());
  for (int i = 0; i < m.values_size(); ++i) {
    const double v = m.values(i);
    if (!std::isfinite(v)) {
      return make_error(
          ErrorCode::kInvalidArgument,
          fmt::format("{}.values[{}] (row {}, column {}) = {}: allowed finite numbers", field, i,
                      i / static_cast<int>(m.cols()), i % static_cast<int>(m.cols()), v));
    }
    out(i / static_cast<int>(m.cols()), i % static_cast<int>(m.cols())) = v;
  }
  return out;
}

void matrix_to_proto(const Eigen::MatrixXd& m, v1::Matrix* out) {
  out->set_rows(static_cast<uint32_t>(m.rows()));
  out->set_cols(static_cast<uint32_t>(m.cols()));
  out->mutable_values()->Reserve(static_cast<int>(m.size()));
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    for (Eigen::Index c = 0; c < m.cols(); ++c) out->add_values(m(r, c));
  }
}

Result<matrix::MatrixSpec> matrix_spec_from_proto(const v1::Matrix& m,
                                                  const v1::MatrixQuantization& q, double g_min_uS,
                                                  double g_max_uS) {
  matrix::MatrixSpec spec;
  XBAR_TRY(w, matrix_from_proto(m, "matrix"));
  spec.w = std::move(*w);
  if (q.bits() > static_cast<uint32_t>(matrix::kMaxBits)) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("quantization.bits = {}: allowed 0 (none) or 2..{}", q.bits(),
                                  matrix::kMaxBits));
  }
  spec.quant.bits = static_cast<int>(q.bits());
  spec.quant.range = q.range();
  for (const v1::LevelTable& t : q.tables()) {
    spec.quant.levels.emplace_back(t.levels().begin(), t.levels().end());
  }
  if (g_min_uS != 0) spec.window.g_min_uS = g_min_uS;
  if (g_max_uS != 0) spec.window.g_max_uS = g_max_uS;
  return spec;
}

namespace {

Result<matrix::TileRun> tile_run(const v1::MatrixTile& mt, const v1::Placement& pl,
                                 const matrix::MatrixSpec& spec) {
  matrix::TileRun t;
  t.tile = {static_cast<int>(mt.input_begin()), static_cast<int>(mt.inputs()),
            static_cast<int>(mt.output_begin()), static_cast<int>(mt.outputs())};
  if (t.tile.in_begin + t.tile.in_count > spec.w.rows() ||
      t.tile.out_begin + t.tile.out_count > spec.w.cols()) {
    return make_error(ErrorCode::kInternal, "recorded matrix tile outside its matrix");
  }
  t.array = static_cast<int>(mt.array());
  t.row_of.assign(pl.row_of_logical().begin(), pl.row_of_logical().end());
  t.col_of.assign(pl.col_of_logical().begin(), pl.col_of_logical().end());
  t.gain_index = static_cast<int>(mt.gain_index());
  t.codes_per_uS = mt.codes_per_us();
  if (!(t.codes_per_uS > 0)) {
    // A tile whose read-back gave no VMM gain (its deploy recorded why it is degraded).
    return make_error(ErrorCode::kFailedPrecondition,
                      fmt::format("matrix tile on array {} has no VMM gain: its read-back failed "
                                  "at deploy (see the deployment's message)",
                                  t.array));
  }
  for (const v1::MatrixFix& f : mt.fixes()) {
    t.fixes.push_back({static_cast<int>(f.input()), static_cast<int>(f.output()), f.error()});
  }
  return t;
}

}  // namespace

Result<LoadedMatrix> loaded_matrix(const v1::Deployment& dep) {
  const v1::MatrixDeployment& md = dep.matrix();
  LoadedMatrix l;
  XBAR_TRY(spec,
           matrix_spec_from_proto(md.matrix(), md.quantization(), md.g_min_us(), md.g_max_us()));
  l.spec = std::move(*spec);
  l.wq = matrix::quantize(l.spec);
  l.run.k = static_cast<int>(l.spec.w.rows());
  l.run.n = static_cast<int>(l.spec.w.cols());
  l.run.orientation = md.orientation() == v1::MATRIX_ORIENTATION_ROW_PAIRS
                          ? matrix::Orientation::kRowPairs
                          : matrix::Orientation::kColumnPairs;
  l.run.scale_uS = md.scale_us();
  if (md.tiles_size() != dep.placements_size() || md.tiles_size() == 0 || !(l.run.scale_uS > 0)) {
    return make_error(ErrorCode::kInternal, "recorded matrix deployment is incomplete");
  }
  l.w_read = l.wq;
  for (int i = 0; i < md.tiles_size(); ++i) {
    const v1::Placement& pl = dep.placements(i);
    XBAR_TRY(t, tile_run(md.tiles(i), pl, l.spec));
    const int n = static_cast<int>(std::sqrt(static_cast<double>(pl.readback_us_size())));
    if (n * n == pl.readback_us_size() && n > 0 && static_cast<int>(t->row_of.size()) == n) {
      Eigen::MatrixXd g(n, n);
      for (int k = 0; k < n * n; ++k) g(k / n, k % n) = pl.readback_us(k);
      Eigen::MatrixXd w =
          matrix::tile_weights(g, t->tile, l.run.orientation, t->row_of, t->col_of, l.run.scale_uS);
      for (const matrix::WeightFix& f : t->fixes) w(f.i, f.j) -= f.err;
      l.w_read.block(t->tile.in_begin, t->tile.out_begin, t->tile.in_count, t->tile.out_count) = w;
    }
    l.arrays.push_back(t->array);
    l.run.tiles.push_back(std::move(*t));
  }
  if (md.gain_size() == l.run.n && md.offset_size() == l.run.n) {
    l.run.gain = Eigen::Map<const Eigen::VectorXd>(md.gain().data(), l.run.n);
    l.run.offset = Eigen::Map<const Eigen::VectorXd>(md.offset().data(), l.run.n);
  }
  l.input_range = md.input_range();
  return l;
}

}  // namespace xbar::server
