// xbar.v1.KernelService: compile -> remap -> program-verify -> verify, with the deployment
// kept in the chip record.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "chip_record.h"
#include "deployment_pages.h"
#include "deployment_states.h"
#include "model_proto.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/kernel.h"
#include "xbar/v1/kernels.grpc.pb.h"

namespace xbar::server {

/// A model deploy's last step (ModelService.DeployModel: its fidelity on the model's clips),
/// run after every array is programmed and verified, with the arrays and the board still held
/// by the deploy. It may fill `dep` (Deployment.fidelity), reports through `progress`, and
/// returns why the deployment is degraded (empty: nothing). It must not throw.
using DeployCheck = std::function<std::vector<std::string>(
    v1::Deployment& dep, const std::function<void(const std::string&)>& progress)>;

class KernelServiceImpl final : public xbar::v1::KernelService::Service {
 public:
  /// All borrowed; they must outlive the service. `sched` is the scheduler shared with the other
  /// services.
  KernelServiceImpl(Board& board, ChipRecord& record, Scheduler& sched, DeploymentStates& states,
                    const ProgramVerifyConfig& defaults = {})
      : board_(board), record_(record), sched_(sched), states_(states), defaults_(defaults) {}

  grpc::Status DeployKernel(grpc::ServerContext* ctx, const v1::DeployKernelRequest* req,
                            grpc::ServerWriter<v1::DeployKernelResponse>* writer) override;
  grpc::Status GetDeployment(grpc::ServerContext* ctx, const v1::GetDeploymentRequest* req,
                             v1::Deployment* out) override;
  grpc::Status ListDeployments(grpc::ServerContext* ctx, const v1::ListDeploymentsRequest* req,
                               v1::ListDeploymentsResponse* out) override;
  grpc::Status DeleteDeployment(grpc::ServerContext* ctx, const v1::DeleteDeploymentRequest* req,
                                v1::DeleteDeploymentResponse* out) override;

  /// The deploy path itself, shared with ModelService.DeployModel: `model` (a serialized
  /// xbar.v1.Model, may be empty) is recorded with the deployment; `check`, if set, runs last.
  grpc::Status deploy(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                      grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer,
                      const std::string& model, const DeployCheck& check = {});
  /// The operation wrapper of both deploy RPCs (`method` names the RPC). Applies retention
  /// after the deploy, whatever its outcome.
  grpc::Status deploy_operation(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                                grpc::ServerWriterInterface<v1::DeployKernelResponse>* call,
                                const std::string& model, const std::string& method,
                                const DeployCheck& check = {});

  /// Retention after each deploy (docs/record.md, "Retention"): keep the newest
  /// `keep_inactive` failed/stale/lost deployments of the chip whole, archive older ones;
  /// nullopt: off. Default kDefaultKeepInactive (20). Set before serving.
  void set_retention(std::optional<size_t> keep_inactive) { keep_inactive_ = keep_inactive; }

 private:
  // Applies the retention policy to the attached chip; a failure is logged, not returned.
  void retain();

  Board& board_;
  ChipRecord& record_;
  Scheduler& sched_;
  DeploymentStates& states_;
  ProgramVerifyConfig defaults_;
  std::optional<size_t> keep_inactive_ = kDefaultKeepInactive;
};

}  // namespace xbar::server
