// The API's kernel sets and models as the host's types (and back), for the services, the
// record's reconciliation, xbarctl's offline commands and the benchmarks. Errors name the field
// as the request spells it, with the value as sent.
#pragma once

#include "xbar/base/error.h"
#include "xbar/kernel/kernel.h"
#include "xbar/model/model.h"
#include "xbar/v1/kernels.pb.h"
#include "xbar/v1/models.pb.h"

namespace xbar::server {

/// The kernel set of a request as the compiler's types; errors name the field.
Result<kernel::KernelSetSpec> kernel_set_from_proto(const v1::KernelSet& set);

/// The model of a request as the host's types, validated (model::validate); errors name the
/// field.
Result<model::ModelSpec> model_from_proto(const v1::Model& m);

/// Writes `p` into `out` (replacing what was there): model_from_proto's inverse, for the fields
/// it reads (a model's preprocessing as a file or a request spells it).
void preprocessing_to_proto(const model::Preprocessing& p, v1::AudioPreprocessing* out);

/// Writes `c` into m->calibration (replacing what was there).
void calibration_to_proto(const model::Calibration& c, v1::Model* m);

/// The kernels of model `spec` (`compiled`: its kernels compiled, in order) as deployment `dep`
/// placed them: on their arrays,
/// with the read-back conductances, the loop input bound, the device-fix mode (off for a naive
/// deployment) and the model's calibrated state ranges. kInternal when a placement is
/// unreadable (not 64x64) or names a kernel the model does not have.
Result<std::vector<model::PlacedKernel>> placed_kernels(
    const model::ModelSpec& spec, const std::vector<kernel::CompiledKernel>& compiled,
    const v1::Deployment& dep);

}  // namespace xbar::server
