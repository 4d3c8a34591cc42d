// The deploy path shared by KernelService.DeployKernel and ModelService.DeployModel:
// validate -> compile -> hold the arrays and the board -> choose arrays -> remap -> record
// ("deploying") -> program-verify and verify each array -> the model's check -> record the
// outcome. Neither service holds the other; both hold the Deployer.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "call.h"
#include "chip_record.h"
#include "deployment_pages.h"
#include "deployment_states.h"
#include "programming.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/v1/kernels.grpc.pb.h"

namespace xbar::server {

/// A model deploy's last step (ModelService.DeployModel: its fidelity on the model's clips),
/// run after every array is programmed and verified, with the arrays and the board still held
/// by the deploy. It may fill `dep` (Deployment.fidelity), reports through `progress`, and
/// returns why the deployment is degraded (empty: nothing). It must not throw.
using DeployCheck = std::function<std::vector<std::string>(
    v1::Deployment& dep, const std::function<void(const std::string&)>& progress)>;

/// Owns nothing: every reference is borrowed and must outlive it.
/// \context Any gRPC thread; concurrent deploys serialise on the scheduler's array holds and
/// the board's turn (Scheduler), the chip record takes its own lock.
class Deployer {
 public:
  /// `observer` is told what each array's programming applied (may be empty).
  Deployer(Board& board, ChipRecord& record, Scheduler& sched, DeploymentStates& states,
           const ChangeAccess& access, const ProgramVerifyConfig& defaults = {},
           ProgrammingObserver observer = {})
      : board_(board),
        record_(record),
        sched_(sched),
        states_(states),
        access_(access),
        defaults_(defaults),
        observer_(std::move(observer)) {}

  /// One deploy as an operation (`method` names the RPC, for xbar.v1.Operations), with the
  /// retention policy applied after it whatever its outcome. `model` (null for a kernel
  /// deploy) is recorded with the deployment; `check`, if set, runs last.
  grpc::Status deploy_operation(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                                grpc::ServerWriterInterface<v1::DeployKernelResponse>* call,
                                const v1::Model* model, const std::string& method,
                                const DeployCheck& check = {});
  /// The deploy itself (deploy_operation without the operation and the retention).
  grpc::Status deploy(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                      grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer,
                      const v1::Model* model, const DeployCheck& check = {});

  /// Retention after each deploy (docs/record.md, "Retention"): keep the newest
  /// `keep_inactive` failed/stale/lost deployments of the chip whole, archive older ones;
  /// nullopt: off. Default kDefaultKeepInactive (20). \context Before serving.
  void set_retention(std::optional<size_t> keep_inactive) { keep_inactive_ = keep_inactive; }

 private:
  // Applies the retention policy to the attached chip; a failure is logged, not returned.
  void retain();

  Board& board_;
  ChipRecord& record_;
  Scheduler& sched_;
  DeploymentStates& states_;
  const ChangeAccess& access_;
  ProgramVerifyConfig defaults_;
  ProgrammingObserver observer_;
  std::optional<size_t> keep_inactive_ = kDefaultKeepInactive;
};

}  // namespace xbar::server
