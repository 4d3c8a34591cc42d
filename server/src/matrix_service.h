// xbar.v1.MatrixService: DeployMatrix through the Deployer (a MatrixJob), and multiplication by
// a deployed matrix on the board (Multiply, StreamMultiply).
#pragma once

#include "call.h"
#include "deployer.h"
#include "deployment_states.h"
#include "matrix_proto.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/v1/matrices.grpc.pb.h"

namespace xbar::server {

/// Largest batch of one Multiply message: vectors, and values (vectors x inputs).
inline constexpr int kMaxMultiplyVectors = 4096;
inline constexpr int kMaxMultiplyValues = 262144;

/// Borrows everything it is given (the Daemon owns it all and outlives it).
/// \context handlers on gRPC's threads, any number at once: a multiply holds its deployment's
/// arrays shared and takes a board turn per chunk of vectors (scheduler.h), as inference does;
/// deploys go through the Deployer.
class MatrixServiceImpl final : public xbar::v1::MatrixService::Service {
 public:
  MatrixServiceImpl(Board& board, Scheduler& sched, DeploymentStates& states, Deployer& deployer)
      : board_(board), sched_(sched), states_(states), deployer_(deployer) {}

  grpc::Status DeployMatrix(grpc::ServerContext* ctx, const v1::DeployMatrixRequest* req,
                            grpc::ServerWriter<v1::DeployKernelResponse>* writer) override;
  grpc::Status Multiply(grpc::ServerContext* ctx, const v1::MultiplyRequest* req,
                        v1::MultiplyResponse* out) override;
  grpc::Status StreamMultiply(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::MultiplyResponse, v1::StreamMultiplyRequest>* stream) override;
  grpc::Status GetMatrixCapacity(grpc::ServerContext* ctx, const v1::GetMatrixCapacityRequest* req,
                                 v1::MatrixCapacity* out) override;

 private:
  /// A ready or degraded matrix deployment, loaded for multiplying.
  Result<LoadedMatrix> load(const std::string& id);
  /// One batch: checked, run on the board chunk by chunk, answered.
  grpc::Status multiply(grpc::ServerContext* ctx, const std::string& id, const LoadedMatrix& m,
                        const v1::MultiplyRequest& req, v1::MultiplyResponse* out);

  Board& board_;
  Scheduler& sched_;
  DeploymentStates& states_;
  Deployer& deployer_;
};

}  // namespace xbar::server
