// xbar.v1.KernelService: DeployKernel through the Deployer (compile -> remap -> program-verify
// -> verify, kept in the chip record), and the deployments' Get, List and Delete.
#pragma once

#include "call.h"
#include "chip_record.h"
#include "deployer.h"
#include "deployment_states.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/v1/kernels.grpc.pb.h"

namespace xbar::server {

/// Borrows everything it is given (the Daemon owns it all and outlives it).
/// \context handlers on gRPC's threads, any number at once: deploys go through the Deployer,
/// deletes hold the deployment's arrays exclusive (scheduler.h); reads need neither (the chip
/// record takes its own lock).
class KernelServiceImpl final : public xbar::v1::KernelService::Service {
 public:
  /// All borrowed; they must outlive the service. `sched` is the scheduler shared with the other
  /// services, `deployer` the deploy path shared with ModelService.
  KernelServiceImpl(Board& board, ChipRecord& record, Scheduler& sched, DeploymentStates& states,
                    Deployer& deployer, const ChangeAccess& access)
      : board_(board),
        record_(record),
        sched_(sched),
        states_(states),
        deployer_(deployer),
        access_(access) {}

  grpc::Status DeployKernel(grpc::ServerContext* ctx, const v1::DeployKernelRequest* req,
                            grpc::ServerWriter<v1::DeployKernelResponse>* writer) override;
  grpc::Status GetDeployment(grpc::ServerContext* ctx, const v1::GetDeploymentRequest* req,
                             v1::Deployment* out) override;
  grpc::Status ListDeployments(grpc::ServerContext* ctx, const v1::ListDeploymentsRequest* req,
                               v1::ListDeploymentsResponse* out) override;
  grpc::Status DeleteDeployment(grpc::ServerContext* ctx, const v1::DeleteDeploymentRequest* req,
                                v1::DeleteDeploymentResponse* out) override;

 private:
  Board& board_;
  ChipRecord& record_;
  Scheduler& sched_;
  DeploymentStates& states_;
  Deployer& deployer_;
  const ChangeAccess& access_;
};

}  // namespace xbar::server
