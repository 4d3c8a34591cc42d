// DeployMatrix's DeployJob: the matrix quantized and tiled, each tile placed around its array's
// stuck devices, programmed, read back (its TIA gain, the weights fixed digitally, its error),
// and the whole matrix calibrated on the board per output (docs/matrices.md).
#pragma once

#include <grpcpp/grpcpp.h>

#include <expected>
#include <memory>

#include "deploy_job.h"
#include "xbar/v1/matrices.pb.h"

namespace xbar::server {

/// DeployMatrixRequest.options.max_nrmse when 0: the read-back error above which a matrix
/// deployment is degraded.
inline constexpr double kDefaultMaxMatrixError = 0.1;
/// options.tol_uS when 0: tighter than a kernel's 4 uS, because every device's error reaches
/// the results directly (bench/RESULTS.md, "Matrices").
inline constexpr double kDefaultMatrixTol_uS = 2.0;

/// The request checked (INVALID_ARGUMENT naming the field; a matrix larger than the chip names
/// its capacity) and wrapped as a job. `board` runs the calibration in finish(); `req` must
/// outlive the job.
std::expected<std::unique_ptr<DeployJob>, grpc::Status> make_matrix_job(
    const v1::DeployMatrixRequest& req, const DeployOptions& options, Board& board);

}  // namespace xbar::server
