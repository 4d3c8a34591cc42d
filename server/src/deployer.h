// The deploy path shared by KernelService.DeployKernel, ModelService.DeployModel and
// MatrixService.DeployMatrix: validate -> compile -> hold the arrays and the board -> choose
// arrays -> remap -> record ("deploying") -> program-verify and verify each array -> the kind's
// last check -> record the outcome. What differs by kind is a DeployJob (deploy_job.h). No
// service holds another; all hold the Deployer.
#pragma once

#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "call.h"
#include "chip_record.h"
#include "deploy_job.h"
#include "deployment_pages.h"
#include "deployment_states.h"
#include "kernel_job.h"
#include "programming.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/v1/kernels.grpc.pb.h"

namespace xbar::server {

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

  /// Makes the job once the request's common options are checked (`options`); an error
  /// status refuses the request, before anything is held or pulsed.
  using JobFactory = std::function<std::expected<std::unique_ptr<DeployJob>, grpc::Status>(
      const DeployOptions& options)>;

  /// One deploy as an operation (`method` names the RPC, for xbar.v1.Operations), with the
  /// retention policy applied after it whatever its outcome. `req` carries the common options
  /// (name, remap, arrays, replace, tol_uS, max_rounds, max_nrmse); `make` the kind.
  grpc::Status deploy_operation(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                                grpc::ServerWriterInterface<v1::DeployKernelResponse>* call,
                                const std::string& method, const JobFactory& make);
  /// The kernels (and model) of DeployKernel / DeployModel: deploy_operation with a KernelJob.
  /// `model` (null for a kernel deploy) is recorded with the deployment; `check`, if set, runs
  /// last.
  grpc::Status deploy_kernels(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                              grpc::ServerWriterInterface<v1::DeployKernelResponse>* call,
                              const v1::Model* model, const std::string& method,
                              const DeployCheck& check = {});
  /// The deploy itself (deploy_operation without the operation and the retention).
  grpc::Status deploy(grpc::ServerContext* ctx, const v1::DeployKernelRequest& req,
                      grpc::ServerWriterInterface<v1::DeployKernelResponse>* writer,
                      const JobFactory& make);

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
