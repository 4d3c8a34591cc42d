// What one deploy programs, one kind per workload: S4D kernels (KernelJob, kernel_job.cc, for
// DeployKernel and DeployModel) or a general matrix (MatrixJob, matrix_job.cc, for
// DeployMatrix). The Deployer runs the path every kind shares around it: the request's common
// checks, the array holds and the board's turn, the fault map, the chip record's draft,
// program-verify of each array, and the outcome recorded.
#pragma once

#include <Eigen/Core>
#include <optional>
#include <string>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/remap.h"
#include "xbar/v1/kernels.pb.h"

namespace xbar::server {

/// A deploy's progress messages; returns false once the caller has gone (cancelled, deadline).
/// `unit` is the kernel (or tile) index, -1 for none.
class DeployProgress {
 public:
  virtual ~DeployProgress() = default;
  virtual bool operator()(std::string stage, int unit, int array, std::string message,
                          const ProgramVerifyProgress* round = nullptr) const = 0;
};

/// One array's share of a deploy: what to program there and which devices to skip.
struct ArrayTarget {
  int unit = 0;   // kernel or tile index
  int array = 0;  // physical array
  Eigen::MatrixXd target_uS;
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> skip;
  int faults = 0;  // stuck devices recorded on the array
};

/// The deploy's options every kind shares, checked before anything is held or pulsed.
struct DeployOptions {
  ProgramVerifyConfig cfg;
  std::vector<int> arrays;  // the arrays the deploy may take (all when the request lists none)
  double max_error = 0;     // the kind's threshold for "degraded" (its own default when 0 given)
  bool naive = false;
};

/// \context One deploy, on the thread of its RPC; the Deployer calls it in the order below, the
/// board and the arrays held from place() to finish().
class DeployJob {
 public:
  virtual ~DeployJob() = default;
  /// The options the deploy runs with: the request's, with the kind's defaults filled in (a
  /// matrix's tighter program-verify tolerance, each kind's max_error).
  virtual const DeployOptions& options() const = 0;
  /// Arrays it needs (kernels or tiles).
  virtual size_t arrays_needed() const = 0;
  /// Before anything is held: compiles what it will program ("compile" progress).
  virtual void compile(const DeployProgress& progress) = 0;
  /// Chooses an array of `free` for each unit, placed around `stuck[a]` ("remap" progress).
  virtual Result<std::vector<ArrayTarget>> place(
      const std::vector<std::vector<kernel::StuckDevice>>& stuck, const std::vector<int>& free,
      const DeployProgress& progress) = 0;
  /// What the deployment records of the request (kernel set, model, matrix).
  virtual void describe(v1::Deployment& dep) const = 0;
  /// One array programmed: its placement added to `dep` and verified from `res`'s read-back
  /// ("verify" progress). Returns why the deployment is degraded, if it is. A cancelled run
  /// (res.cancelled) is only recorded, not verified: the Deployer then fails the deploy.
  virtual std::optional<std::string> programmed(v1::Deployment& dep, const ArrayTarget& target,
                                                const ProgramVerifyResult& res,
                                                const ProgramVerifyConfig& cfg,
                                                const DeployProgress& progress) = 0;
  /// Every array programmed: the kind's last check with the board still held (a model's
  /// fidelity clips, a matrix's calibration). Returns why the deployment is degraded.
  virtual std::vector<std::string> finish(v1::Deployment& /*dep*/,
                                          const DeployProgress& /*progress*/) {
    return {};
  }
};

}  // namespace xbar::server
