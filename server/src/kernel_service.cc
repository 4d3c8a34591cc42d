#include "kernel_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "call.h"
#include "deployment_pages.h"
#include "status.h"

namespace xbar::server {

grpc::Status KernelServiceImpl::DeployKernel(grpc::ServerContext* ctx,
                                             const v1::DeployKernelRequest* req,
                                             grpc::ServerWriter<v1::DeployKernelResponse>* writer) {
  return deployer_.deploy_kernels(ctx, *req, writer, nullptr,
                                  "/xbar.v1.KernelService/DeployKernel");
}

grpc::Status KernelServiceImpl::GetDeployment(grpc::ServerContext*,
                                              const v1::GetDeploymentRequest* req,
                                              v1::Deployment* out) {
  if (req->id().empty()) return invalid_argument("id: empty: give a deployment id (dep-...)");
  auto row = states_.get(req->id());
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return {grpc::StatusCode::NOT_FOUND, fmt::format("id = '{}': no such deployment", req->id())};
    }
    return record_status(row.error());
  }
  if (!out->ParseFromString(row->blob)) {
    return {grpc::StatusCode::DATA_LOSS,
            fmt::format("deployment {}: record unreadable", req->id())};
  }
  set_state(*out, row->state);  // the record's state wins (e.g. stale), as corrected in memory
  out->set_message(row->message);
  return grpc::Status::OK;
}

grpc::Status KernelServiceImpl::ListDeployments(grpc::ServerContext*,
                                                const v1::ListDeploymentsRequest* req,
                                                v1::ListDeploymentsResponse* out) {
  auto page = list_deployments_page(record_, board_.info().serial, *req,
                                    [this](DeploymentRow& r) { states_.correct(r); });
  if (!page) return record_status(page.error());
  *out = std::move(*page);
  return grpc::Status::OK;
}

grpc::Status KernelServiceImpl::DeleteDeployment(grpc::ServerContext* ctx,
                                                 const v1::DeleteDeploymentRequest* req,
                                                 v1::DeleteDeploymentResponse*) {
  if (auto a = access_.authorize(ctx, "DeleteDeployment"); !a.ok()) return a;
  if (req->id().empty()) return invalid_argument("id: empty: give a deployment id (dep-...)");
  // Never while a stream runs on its arrays, nor while a deploy there writes its record.
  auto row = record_.deployment(req->id());
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return {grpc::StatusCode::NOT_FOUND, fmt::format("id = '{}': no such deployment", req->id())};
    }
    return record_status(row.error());
  }
  auto hold = sched_.arrays.exclusive(row->arrays, limits_of(ctx), sched_.refuse_busy_changes);
  if (!hold) return to_status(hold.error());
  if (auto s = stopped_before_start(ctx); !s.ok()) return s;
  if (auto d = record_.delete_deployment(req->id()); !d) {
    if (d.error().code == ErrorCode::kNotFound) {
      return {grpc::StatusCode::NOT_FOUND, fmt::format("id = '{}': no such deployment", req->id())};
    }
    return record_status(d.error());
  }
  spdlog::info("deployment {} deleted", req->id());
  return grpc::Status::OK;
}

}  // namespace xbar::server
