#include "matrix_service.h"

#include <fmt/format.h>

#include <chrono>

#include "matrix_job.h"
#include "request_checks.h"
#include "serving.h"
#include "status.h"

namespace xbar::server {

namespace {

// Vectors per board turn: a long batch lets other clients' requests in between.
constexpr Eigen::Index kVectorsPerTurn = 512;
constexpr uint32_t kMaxRepeats = 16;

// The batch's size limits, before its values are copied.
grpc::Status check_batch_size(const v1::MultiplyRequest& req) {
  const v1::Matrix& in = req.inputs();
  const uint64_t values = static_cast<uint64_t>(in.rows()) * in.cols();
  if (in.rows() > static_cast<uint32_t>(kMaxMultiplyVectors) ||
      values > static_cast<uint64_t>(kMaxMultiplyValues)) {
    return {grpc::StatusCode::RESOURCE_EXHAUSTED,
            fmt::format("inputs: {} x {}: one message holds up to {} vectors and {} values; send "
                        "larger batches with StreamMultiply",
                        in.rows(), in.cols(), kMaxMultiplyVectors, kMaxMultiplyValues)};
  }
  if (!std::isfinite(req.input_range()) || req.input_range() < 0) {
    return invalid_argument(
        fmt::format("input_range = {}: allowed a finite number >= 0 (0: calibrated or per vector)",
                    req.input_range()));
  }
  if (req.repeats() > kMaxRepeats) {
    return invalid_argument(
        fmt::format("repeats = {}: allowed 0..{} (0 means 1)", req.repeats(), kMaxRepeats));
  }
  return grpc::Status::OK;
}

double ratio(const Eigen::MatrixXd& num, const Eigen::MatrixXd& den) {
  const double d = den.norm();
  return d > 0 ? num.norm() / d : 0.0;
}

void fill_response(const LoadedMatrix& m, const Eigen::MatrixXd& x, const Eigen::MatrixXd& y,
                   const matrix::MultiplyOptions& opt, bool details, v1::MultiplyResponse* out) {
  matrix_to_proto(y, out->mutable_outputs());
  out->set_input_range(opt.input_range);
  const Eigen::MatrixXd yq = x * m.wq;
  out->set_estimated_error(ratio(x * m.w_read - yq, yq));
  out->set_quantization_error(ratio(yq - x * m.spec.w, x * m.spec.w));
  if (!details) return;
  const Eigen::VectorXd range = matrix::input_ranges(x, opt.input_range);
  for (Eigen::Index b = 0; b < x.rows(); ++b) {
    for (Eigen::Index i = 0; i < x.cols(); ++i) {
      const double code = std::clamp(std::round(x(b, i) / range(b) * 255.0), -255.0, 255.0);
      out->add_input_codes(static_cast<int32_t>(code));
    }
  }
  for (Eigen::Index j = 0; j < m.run.gain.size(); ++j) {
    out->add_gain(m.run.gain(j));
    out->add_offset(m.run.offset(j));
  }
}

}  // namespace

grpc::Status MatrixServiceImpl::DeployMatrix(grpc::ServerContext* ctx,
                                             const v1::DeployMatrixRequest* req,
                                             grpc::ServerWriter<v1::DeployKernelResponse>* writer) {
  if (auto e = check_enums(*req); !e.ok()) return e;
  return deployer_.deploy_operation(
      ctx, req->options(), writer, "/xbar.v1.MatrixService/DeployMatrix",
      [&](const DeployOptions& options) { return make_matrix_job(*req, options, board_); });
}

Result<LoadedMatrix> MatrixServiceImpl::load(const std::string& id) {
  auto row = find_deployment(states_, id, true, "a matrix deployment");
  if (!row) return std::unexpected(row.error());
  v1::Deployment dep;
  if (!dep.ParseFromString(row->blob) || !dep.has_matrix()) {
    return make_error(ErrorCode::kFailedPrecondition,
                      fmt::format("deployment {} has no matrix: deploy one with DeployMatrix", id));
  }
  if (dep.archived_at_ms() != 0) {
    return make_error(
        ErrorCode::kFailedPrecondition,
        fmt::format("deployment {} is archived: retention dropped its read-back", id));
  }
  auto l = loaded_matrix(dep);
  if (!l) {
    return make_error(
        l.error().code == ErrorCode::kFailedPrecondition ? l.error().code : ErrorCode::kInternal,
        fmt::format("deployment {}: {}", id, l.error().message));
  }
  return l;
}

grpc::Status MatrixServiceImpl::multiply(grpc::ServerContext* ctx, const std::string& id,
                                         const LoadedMatrix& m, const v1::MultiplyRequest& req,
                                         v1::MultiplyResponse* out) {
  if (auto c = check_batch_size(req); !c.ok()) return c;
  auto x = matrix_from_proto(req.inputs(), "inputs");
  if (!x) return to_status(x.error());
  if (x->cols() != m.spec.w.rows()) {
    return invalid_argument(fmt::format("inputs: vectors of {} values, the matrix has {} rows",
                                        x->cols(), m.spec.w.rows()));
  }
  matrix::MultiplyOptions opt;
  opt.input_range = req.input_range() > 0 ? req.input_range() : m.input_range;
  opt.repeats = req.repeats() == 0 ? 1 : static_cast<int>(req.repeats());
  opt.calibrated = !req.uncalibrated();
  Eigen::MatrixXd y(x->rows(), m.spec.w.cols());
  auto hold = sched_.arrays.shared(m.arrays, limits_of(ctx));
  if (!hold) return to_status(hold.error());
  const auto t0 = std::chrono::steady_clock::now();
  for (Eigen::Index at = 0; at < x->rows(); at += kVectorsPerTurn) {
    const Eigen::Index n = std::min(kVectorsPerTurn, x->rows() - at);
    auto turn = sched_.board.acquire(client_of(ctx), limits_of(ctx));
    if (!turn) return to_status(turn.error());
    const uint64_t epoch = states_.verified_epoch();
    if (auto again = still_servable(states_, id); !again.ok()) return again;
    auto part = matrix::multiply(board_, m.run, x->middleRows(at, n), opt);
    if (auto e = board_restarted_during(states_, board_.info(), epoch, id); !e.ok()) return e;
    if (!part) return to_status(part.error());
    y.middleRows(at, n) = *part;
  }
  out->set_board_ms(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  uint32_t per_vector = 0;
  for (const matrix::TileRun& t : m.run.tiles) {
    const bool two = m.run.orientation == matrix::Orientation::kRowPairs ||
                     (x->middleCols(t.tile.in_begin, t.tile.in_count).array() < 0).any();
    per_vector += (two ? 2u : 1u) * static_cast<uint32_t>(opt.repeats);
  }
  out->set_vmm_vectors(per_vector * static_cast<uint32_t>(x->rows()));
  fill_response(m, *x, y, opt, req.details(), out);
  return grpc::Status::OK;
}

grpc::Status MatrixServiceImpl::Multiply(grpc::ServerContext* ctx, const v1::MultiplyRequest* req,
                                         v1::MultiplyResponse* out) {
  if (auto c = check_batch_size(*req); !c.ok()) return c;
  auto m = load(req->deployment());
  if (!m) return to_status(m.error());
  return multiply(ctx, req->deployment(), *m, *req, out);
}

grpc::Status MatrixServiceImpl::StreamMultiply(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::MultiplyResponse, v1::StreamMultiplyRequest>* stream) {
  v1::StreamMultiplyRequest msg;
  if (!stream->Read(&msg)) return grpc::Status::OK;  // no batch at all
  const std::string id = msg.batch().deployment();
  auto m = load(id);
  if (!m) return to_status(m.error());
  for (int k = 1;; ++k) {
    v1::MultiplyResponse out;
    if (auto s = multiply(ctx, id, *m, msg.batch(), &out); !s.ok()) return s;
    if (!stream->Write(out)) return {grpc::StatusCode::CANCELLED, "the client went away"};
    if (!stream->Read(&msg)) break;
    if (!msg.batch().deployment().empty() && msg.batch().deployment() != id) {
      return invalid_argument(fmt::format(
          "batch.deployment = '{}' in message {}: a stream multiplies by one deployment ('{}')",
          msg.batch().deployment(), k, id));
    }
  }
  return grpc::Status::OK;
}

grpc::Status MatrixServiceImpl::GetMatrixCapacity(grpc::ServerContext* /*ctx*/,
                                                  const v1::GetMatrixCapacityRequest* /*req*/,
                                                  v1::MatrixCapacity* out) {
  const BoardInfo& info = board_.info();
  const matrix::TileShape c =
      matrix::tile_shape(matrix::Orientation::kColumnPairs, info.rows, info.cols);
  const matrix::TileShape r =
      matrix::tile_shape(matrix::Orientation::kRowPairs, info.rows, info.cols);
  out->set_arrays(static_cast<uint32_t>(info.arrays));
  out->set_column_pairs_inputs(static_cast<uint32_t>(c.inputs));
  out->set_column_pairs_outputs(static_cast<uint32_t>(c.outputs));
  out->set_row_pairs_inputs(static_cast<uint32_t>(r.inputs));
  out->set_row_pairs_outputs(static_cast<uint32_t>(r.outputs));
  out->set_text(matrix::capacity_text(info.arrays, info.rows, info.cols));
  return grpc::Status::OK;
}

}  // namespace xbar::server
