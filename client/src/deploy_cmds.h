// xbarctl's kernel-deployment commands (KernelService, proto/xbar/v1/kernels.proto): deploy,
// deployments, deployment, undeploy and map. main.cc registers them and runs the one parsed.
#pragma once

#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "heatmap.h"
#include "xbar/v1/arrays.pb.h"
#include "xbar/v1/kernels.pb.h"

namespace CLI {
class App;
}
namespace grpc {
template <class R>
class ClientReaderInterface;
}

namespace xbar::client {

class Progress;
class Session;

/// Reads a kernel file: an xbar.v1.KernelSet in the protobuf JSON mapping. Errors start with
/// the path: "PATH: cannot open (...)" or "PATH: <protobuf's parse message>" (unknown fields
/// are errors, naming the field).
std::expected<v1::KernelSet, std::string> load_kernel_set(const std::string& path);

/// One placement as a deployment-map panel: its read-back (or targets) as a 64x64 matrix, its
/// logical -> physical rows and columns, and the stuck devices `faults` records on its array.
/// Error when the placement carries no 64x64 read-back (or targets).
std::expected<KernelPanel, std::string> kernel_panel(const v1::Placement& placement,
                                                     const v1::FaultMap& faults, bool targets);

/// The conductance window of a kernel set, the defaults (7..200 uS) where unset.
std::pair<double, double> window_uS(const v1::KernelSet& kernel_set);
/// The conductance window of a deployment: its matrix's, or its kernel set's.
std::pair<double, double> deployment_window_uS(const v1::Deployment& deployment);

/// The human report of a deployment (what `xbarctl deploy` ends with).
std::string format_deployment(const v1::Deployment& deployment);

/// Shows one deploy progress message (DeployKernel, DeployModel) on `progress`: a line per
/// stage message, a bar per array while it is programmed.
void show_deploy_progress(Progress& progress, const v1::DeployProgress& p);

/// Shows one DeployKernel or DeployModel message on `progress` (show_deploy_progress). When it
/// is the deployment (the last message), copies it to `deployment` and returns true.
bool show_deploy_message(Progress& progress, const v1::DeployKernelResponse& msg,
                         v1::Deployment* deployment);

/// Prints the result of a deploy or deploy-model: format_deployment(), or with --json the
/// Deployment without its 64x64 matrices and its model, `"operation"` its first key. Returns
/// the exit code: 0 when the deployment is ready, 1 otherwise (the reason on stderr).
int print_deploy_result(const Session& session, const v1::Deployment& deployment,
                        const std::string& operation);

/// The options every deploy command sends (DeployKernelRequest's name, remap "auto" or
/// "naive", arrays, replace, tol_uS, max_rounds, max_nrmse), from its flags, into `o`.
void set_deploy_options(v1::DeployKernelRequest* o, const std::string& name,
                        const std::string& remap, const std::vector<uint32_t>& arrays, bool replace,
                        double tol_uS, uint32_t max_rounds, double max_nrmse);

/// The rest of a deploy stream (DeployKernel, DeployModel, DeployMatrix) from its first message
/// `msg` (`got`: whether there was one): progress on stderr, the call's status (with a word on
/// what a stopped deploy leaves), the deployment printed (print_deploy_result). Returns the exit
/// code.
int finish_deploy_stream(const Session& session,
                         grpc::ClientReaderInterface<v1::DeployKernelResponse>& reader,
                         v1::DeployKernelResponse msg, bool got, const std::string& operation);

class DeployCommands {
 public:
  /// Registers the subcommands on `app` (which must outlive this object).
  explicit DeployCommands(CLI::App& app);
  ~DeployCommands();
  DeployCommands(const DeployCommands&) = delete;
  DeployCommands& operator=(const DeployCommands&) = delete;

  /// Runs the subcommand that was parsed and returns its exit code; nullopt when none of these
  /// was given.
  std::optional<int> run(const Session& session) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xbar::client
