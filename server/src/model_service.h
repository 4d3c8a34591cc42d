// xbar.v1.ModelService: deploy a model (its kernels through KernelService's deploy path) and
// classify clips with it, on the board's closed loop or in software.
#pragma once

#include <mutex>

#include "chip_record.h"
#include "kernel_service.h"
#include "xbar/drivers/board.h"
#include "xbar/model/model.h"
#include "xbar/v1/models.grpc.pb.h"

namespace xbar::server {

/// The model of a request as the host's types; errors name the field.
Result<model::ModelSpec> model_from_proto(const v1::Model& m);

class ModelServiceImpl final : public xbar::v1::ModelService::Service {
 public:
  ModelServiceImpl(Board& board, ChipRecord& record, std::mutex& board_mu,
                   KernelServiceImpl& kernels)
      : board_(board), record_(record), board_mu_(board_mu), kernels_(kernels) {}

  grpc::Status DeployModel(grpc::ServerContext* ctx, const v1::DeployModelRequest* req,
                           grpc::ServerWriter<v1::DeployKernelResponse>* writer) override;
  grpc::Status Infer(grpc::ServerContext* ctx, const v1::InferRequest* req,
                     v1::InferResponse* out) override;
  grpc::Status StreamInfer(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::StreamInferResponse, v1::StreamInferRequest>* stream) override;

 private:
  Board& board_;
  ChipRecord& record_;
  std::mutex& board_mu_;
  KernelServiceImpl& kernels_;

  struct Loaded;  // a deployment's model, compiled, with its placements
  Result<Loaded> load(const std::string& deployment_id, bool hardware);
};

}  // namespace xbar::server
