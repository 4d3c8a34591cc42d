// The S4D kernels of DeployKernel and DeployModel as a DeployJob: compiled (ZOH, quantization,
// the 4x4 expansion, the 64 x 64 layout), placed around the stuck devices by kernel::remap,
// verified by the kernel's fidelity through the read-back, and, for a model, checked on its
// fidelity clips (DeployCheck).
#pragma once

#include <grpcpp/grpcpp.h>

#include <expected>
#include <functional>
#include <memory>

#include "deploy_job.h"
#include "xbar/v1/model.pb.h"

namespace xbar::server {

/// A model deploy's last step (ModelService.DeployModel: its fidelity on the model's clips),
/// run after every array is programmed and verified, with the arrays and the board still held
/// by the deploy. It may fill `dep` (Deployment.fidelity), reports through `progress`, and
/// returns why the deployment is degraded (empty: nothing). It must not throw.
using DeployCheck = std::function<std::vector<std::string>(
    v1::Deployment& dep, const std::function<void(const std::string&)>& progress)>;

/// DeployKernelRequest.max_nrmse when 0.
inline constexpr double kDefaultMaxNrmse = 0.5;

/// The kernel set of `req` checked (INVALID_ARGUMENT naming the field) and wrapped as a job.
/// `model` (null for a kernel deploy) is recorded with the deployment and must outlive the job;
/// `check`, if set, runs last.
std::expected<std::unique_ptr<DeployJob>, grpc::Status> make_kernel_job(
    const v1::DeployKernelRequest& req, const DeployOptions& options, const v1::Model* model,
    DeployCheck check);

}  // namespace xbar::server
