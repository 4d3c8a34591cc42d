#include "xbar/matrix/multiply.h"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

namespace xbar::matrix {

namespace {

constexpr double kMaxMagnitude = 255.0;

uint8_t magnitude(double v, double range) {
  return static_cast<uint8_t>(
      std::clamp(std::round(v / range * kMaxMagnitude), 0.0, kMaxMagnitude));
}

// One tile's VMM inputs for a batch: per input vector, `passes` vectors of `repeats` copies,
// each rows bytes long.
struct TileInputs {
  std::vector<uint8_t> bytes;
  Eigen::MatrixXd xq;  // B x in_count: the inputs as their 8-bit magnitudes give them back
  int passes = 1;
};

TileInputs tile_inputs(const TileRun& t, Orientation o, const Eigen::MatrixXd& x,
                       const Eigen::VectorXd& range, int repeats, int rows) {
  const Eigen::Index batch = x.rows();
  TileInputs in;
  in.xq.resize(batch, t.tile.in_count);
  const Eigen::MatrixXd seg = x.middleCols(t.tile.in_begin, t.tile.in_count);
  const bool negative = (seg.array() < 0).any();
  in.passes = o == Orientation::kRowPairs || negative ? 2 : 1;
  const auto vec = static_cast<size_t>(rows);
  in.bytes.assign(static_cast<size_t>(batch) * static_cast<size_t>(in.passes * repeats) * vec, 0);
  for (Eigen::Index b = 0; b < batch; ++b) {
    for (int i = 0; i < t.tile.in_count; ++i) {
      const uint8_t plus = magnitude(std::max(seg(b, i), 0.0), range(b));
      const uint8_t minus = magnitude(std::max(-seg(b, i), 0.0), range(b));
      in.xq(b, i) = (plus - minus) / kMaxMagnitude;  // at unit range
      for (int pass = 0; pass < in.passes; ++pass) {
        // Column pairs: pass 0 drives x+, pass 1 x-. Row pairs: pass 0 drives x+ on the +
        // rows and x- on the - rows, pass 1 the other way round.
        const uint8_t first = pass == 0 ? plus : minus, second = pass == 0 ? minus : plus;
        for (int r = 0; r < repeats; ++r) {
          const size_t at = ((static_cast<size_t>(b) * static_cast<size_t>(in.passes) +
                              static_cast<size_t>(pass)) *
                                 static_cast<size_t>(repeats) +
                             static_cast<size_t>(r)) *
                            vec;
          if (o == Orientation::kColumnPairs) {
            in.bytes[at + static_cast<size_t>(t.row_of[static_cast<size_t>(i)])] = first;
          } else {
            in.bytes[at + static_cast<size_t>(t.row_of[2 * static_cast<size_t>(i)])] = first;
            in.bytes[at + static_cast<size_t>(t.row_of[(2 * static_cast<size_t>(i)) + 1])] = second;
          }
        }
      }
    }
  }
  return in;
}

// The differential code of output j of the tile in one VMM's accumulators.
double output_code(const TileRun& t, Orientation o, const uint32_t* acc, int j) {
  if (o == Orientation::kColumnPairs) {
    return static_cast<double>(acc[t.col_of[2 * static_cast<size_t>(j)]]) -
           static_cast<double>(acc[t.col_of[(2 * static_cast<size_t>(j)) + 1]]);
  }
  return static_cast<double>(acc[t.col_of[static_cast<size_t>(j)]]);
}

// Adds the tile's outputs (weight units at unit input range) to `u`.
Result<void> run_tile(Board& board, const MatrixRun& run, const TileRun& t,
                      const Eigen::MatrixXd& x, const Eigen::VectorXd& range, int repeats,
                      Eigen::MatrixXd& u) {
  const int rows = board.info().rows, cols = board.info().cols;
  const TileInputs in = tile_inputs(t, run.orientation, x, range, repeats, rows);
  XBAR_TRY(acc, board.vmm(t.array, in.bytes, t.gain_index));
  const double per_unit = 1.0 / (kMaxMagnitude * t.codes_per_uS * run.scale_uS * repeats);
  const size_t per_vector = static_cast<size_t>(in.passes) * static_cast<size_t>(repeats);
  for (Eigen::Index b = 0; b < x.rows(); ++b) {
    const uint32_t* base =
        acc->data() + static_cast<size_t>(b) * per_vector * static_cast<size_t>(cols);
    for (int j = 0; j < t.tile.out_count; ++j) {
      double d = 0;
      for (size_t v = 0; v < per_vector; ++v) {
        const double code =
            output_code(t, run.orientation, base + v * static_cast<size_t>(cols), j);
        d += (v / static_cast<size_t>(repeats)) == 0 ? code : -code;
      }
      u(b, t.tile.out_begin + j) += d * per_unit;
    }
    for (const WeightFix& f : t.fixes) {
      u(b, t.tile.out_begin + f.j) -= in.xq(b, f.i) * f.err;
    }
  }
  return {};
}

}  // namespace

Eigen::VectorXd input_ranges(const Eigen::MatrixXd& x, double input_range) {
  Eigen::VectorXd r(x.rows());
  for (Eigen::Index b = 0; b < x.rows(); ++b) {
    const double m = x.cols() > 0 ? x.row(b).cwiseAbs().maxCoeff() : 0.0;
    r(b) = input_range > 0 ? input_range : (m > 0 ? m : 1.0);  // an all-zero vector: any range
  }
  return r;
}

std::vector<WeightFix> weight_fixes(const Eigen::MatrixXd& read_w, const Eigen::MatrixXd& wq_tile,
                                    double threshold_uS, double scale_uS, int max_fixes) {
  std::vector<WeightFix> fixes;
  for (Eigen::Index i = 0; i < read_w.rows(); ++i) {
    for (Eigen::Index j = 0; j < read_w.cols(); ++j) {
      const double err = read_w(i, j) - wq_tile(i, j);
      if (std::abs(err) * scale_uS > threshold_uS) {
        fixes.push_back({static_cast<int>(i), static_cast<int>(j), err});
      }
    }
  }
  std::stable_sort(fixes.begin(), fixes.end(), [](const WeightFix& a, const WeightFix& b) {
    return std::abs(a.err) > std::abs(b.err);
  });
  if (fixes.size() > static_cast<size_t>(max_fixes)) fixes.resize(static_cast<size_t>(max_fixes));
  return fixes;
}

Result<Eigen::MatrixXd> multiply(Board& board, const MatrixRun& run, const Eigen::MatrixXd& x,
                                 const MultiplyOptions& opt) {
  const Eigen::VectorXd range = input_ranges(x, opt.input_range);
  Eigen::MatrixXd u = Eigen::MatrixXd::Zero(x.rows(), run.n);
  for (const TileRun& t : run.tiles) {
    XBAR_RETURN_IF_ERROR(run_tile(board, run, t, x, range, opt.repeats, u));
  }
  if (opt.calibrated && run.gain.size() == run.n) {
    for (Eigen::Index j = 0; j < run.n; ++j) {
      u.col(j) = (u.col(j).array() - run.offset(j)) / run.gain(j);
    }
  }
  return (range.asDiagonal() * u).eval();
}

Result<void> calibrate(Board& board, MatrixRun& run, const Eigen::MatrixXd& wq,
                       const Eigen::MatrixXd& x) {
  XBAR_TRY(y, multiply(board, run, x, {.input_range = 0, .repeats = 1, .calibrated = false}));
  const Eigen::VectorXd inv = input_ranges(x, 0).cwiseInverse();
  const Eigen::MatrixXd u_board = inv.asDiagonal() * *y;
  const Eigen::MatrixXd u_ref = inv.asDiagonal() * (x * wq);
  run.gain.resize(run.n);
  run.offset.resize(run.n);
  for (Eigen::Index j = 0; j < run.n; ++j) {
    Eigen::MatrixXd a(x.rows(), 2);
    a.col(0) = u_ref.col(j);
    a.col(1).setOnes();
    const Eigen::Vector2d fit = a.colPivHouseholderQr().solve(u_board.col(j));
    // A column whose reference is all zero (a zero output) keeps gain 1.
    const bool usable = u_ref.col(j).squaredNorm() > 0 && std::isfinite(fit(0)) && fit(0) > 0.2;
    run.gain(j) = usable ? fit(0) : 1.0;
    run.offset(j) = usable ? fit(1) : u_board.col(j).mean();
  }
  return {};
}

}  // namespace xbar::matrix
