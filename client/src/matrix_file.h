// Matrices on disk for `xbarctl matrix`: NumPy .npy files (format 1.0-3.0, little-endian
// float64/float32/int64/int32, C or Fortran order, 1-D read as one row) and CSV (one row per
// line, comma-separated numbers; blank lines and lines starting with '#' skipped).
#pragma once

#include <Eigen/Core>
#include <expected>
#include <string>

namespace xbar::client {

/// Reads PATH by its extension (.npy, else CSV). Errors start with the path and say what is
/// wrong ("W.npy: dtype '>f8': allowed <f8, <f4, <i8, <i4", "X.csv: line 3: 31 values, line 1
/// has 32").
std::expected<Eigen::MatrixXd, std::string> read_matrix_file(const std::string& path);

/// Writes `m` to PATH: .npy as float64 (format 1.0), else CSV with 17 significant digits.
std::expected<void, std::string> write_matrix_file(const std::string& path,
                                                   const Eigen::MatrixXd& m);

/// `m` as CSV text.
std::string matrix_csv(const Eigen::MatrixXd& m);

}  // namespace xbar::client
