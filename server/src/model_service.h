// xbar.v1.ModelService: deploy a model (its kernels through the Deployer, as DeployKernel) and
// classify clips with it, on the board's closed loop or in software.
#pragma once

#include "call.h"
#include "chip_record.h"
#include "deployer.h"
#include "deployment_states.h"
#include "model_proto.h"
#include "observability/metrics.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/model/model.h"
#include "xbar/v1/models.grpc.pb.h"

namespace xbar::server {

/// DeployModelRequest.min_label_agreement when unset.
inline constexpr double kDefaultMinLabelAgreement = 0.8;

/// Borrows everything it is given (the Daemon owns it all and outlives it).
/// \context handlers on gRPC's threads, any number at once: inference holds its deployment's
/// arrays shared and takes a board turn per clip or stream chunk (scheduler.h); deploys go
/// through the Deployer; streams_ counts open streams for metrics (atomic).
class ModelServiceImpl final : public xbar::v1::ModelService::Service {
 public:
  /// A stream silent for `stream_idle_timeout` (neither a chunk read nor an answer taken) is
  /// cancelled, which frees its arrays.
  ModelServiceImpl(Board& board, Scheduler& sched, DeploymentStates& states, Deployer& deployer,
                   const ChangeAccess& access,
                   std::chrono::milliseconds stream_idle_timeout = std::chrono::seconds(30))
      : board_(board),
        sched_(sched),
        states_(states),
        deployer_(deployer),
        access_(access),
        idle_(stream_idle_timeout) {}

  grpc::Status DeployModel(grpc::ServerContext* ctx, const v1::DeployModelRequest* req,
                           grpc::ServerWriter<v1::DeployKernelResponse>* writer) override;
  grpc::Status Infer(grpc::ServerContext* ctx, const v1::InferRequest* req,
                     v1::InferResponse* out) override;
  /// Steps run and streams open go to `m` (borrowed; may be null). Before serving.
  void set_metrics(XbardMetrics* m) { metrics_ = m; }

  /// Streams running now (hardware or software).
  int active_streams() const { return streams_.load(); }
  uint64_t idle_cancelled() const { return idle_.cancelled_count(); }

  grpc::Status StreamInfer(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::StreamInferResponse, v1::StreamInferRequest>* stream) override;

 private:
  Board& board_;
  Scheduler& sched_;
  DeploymentStates& states_;
  Deployer& deployer_;
  const ChangeAccess& access_;
  IdleWatch idle_;
  XbardMetrics* metrics_ = nullptr;
  std::atomic<int> streams_{0};

  // A deployment's model, compiled, with its placements.
  struct Loaded {
    model::ModelSpec spec;
    std::vector<kernel::CompiledKernel> compiled;
    std::vector<model::PlacedKernel> placed;
    std::vector<int> arrays() const;
  };
  Result<Loaded> load(const std::string& deployment_id, bool hardware);
  class StreamSession;  // one StreamInfer call (stream_infer.cc)
  /// After the waits for the arrays and the board: ABORTED if the deployment stopped holding
  /// its arrays meanwhile (replaced, deleted, made stale), UNAVAILABLE while it is re-verified.
  grpc::Status still_servable(const std::string& id);
  /// UNAVAILABLE if the board's epoch moved from `epoch` (a restart or re-opened link): the
  /// loop's state, and maybe the arrays, are gone.
  grpc::Status board_restarted_during(uint64_t epoch, const std::string& id);
  /// DeployModel's last step (a DeployCheck): the model's fidelity clips on the board and in
  /// software; fills dep.fidelity, returns the reason to degrade (agreement below
  /// `min_agreement`, or not measured).
  std::vector<std::string> check_fidelity(const model::ModelSpec& spec, double min_agreement,
                                          v1::Deployment& dep,
                                          const std::function<void(const std::string&)>& progress);
};

}  // namespace xbar::server
