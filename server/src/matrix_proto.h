// xbar.v1 matrix messages <-> the matrix library's types (matrix.proto, compute/matrix/).
#pragma once

#include <Eigen/Core>
#include <string>

#include "xbar/base/error.h"
#include "xbar/matrix/matrix.h"
#include "xbar/matrix/multiply.h"
#include "xbar/v1/kernels.pb.h"
#include "xbar/v1/matrix.pb.h"

namespace xbar::server {

/// A Matrix message -> rows x cols; INVALID_ARGUMENT naming `field` for sizes out of 1..4096 or
/// a value count other than rows x cols, and `field`.values[i] for a value that is not finite.
Result<Eigen::MatrixXd> matrix_from_proto(const v1::Matrix& m, const std::string& field);
void matrix_to_proto(const Eigen::MatrixXd& m, v1::Matrix* out);

/// The matrix, its quantization and window of a request (not yet validated against the chip).
Result<matrix::MatrixSpec> matrix_spec_from_proto(const v1::Matrix& m,
                                                  const v1::MatrixQuantization& q, double g_min_uS,
                                                  double g_max_uS);

/// What Multiply needs of a recorded matrix deployment: its tiles, their placements (the
/// deployment's placements, one per tile) and calibration, and the weights as read back.
struct LoadedMatrix {
  matrix::MatrixSpec spec;
  Eigen::MatrixXd wq;      // quantized
  Eigen::MatrixXd w_read;  // as read back at deploy, fixes applied
  matrix::MatrixRun run;
  std::vector<int> arrays;
  double input_range = 0;  // calibrated at deploy (0: none)
};
Result<LoadedMatrix> loaded_matrix(const v1::Deployment& dep);

}  // namespace xbar::server
