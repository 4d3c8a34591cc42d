// Model files (models/*.json, `xbarctl deploy-model FILE`): an xbar.v1.Model in the protobuf
// JSON mapping, parsed as xbarctl parses it (JsonStringToMessage, default options), then
// model_from_proto (server/src/model_service.cc) with model::validate, and what DeployModel and
// Infer do with an accepted model on the software path.
//
// Properties, for every model model_from_proto accepts:
//  - the recorded form reloads: DeployModel stores Model.SerializeAsString() with the
//    deployment and Infer parses it and runs model_from_proto again, which must accept it and
//    give the same spec (shapes, values);
//  - if its kernels also pass kernel::validate (DeployModel's deploy path): the compiled kernels
//    meet kernel_checks.h, and model::forward on the software kernels returns one logit and
//    probability per class, the label is the most probable class, probabilities sum to 1
//    whenever the logits are finite;
//  - StreamInfer's pieces give Infer's answer: the software KernelStream fed the encoder's
//    output in two chunks returns the outputs of the whole sequence, and the StreamingHead fed
//    them step by step ends at forward()'s logits.
#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>

#include "fuzz_util.h"
#include "kernel_checks.h"
#include "model_proto.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/kernel.h"
#include "xbar/model/model.h"

using namespace xbar;
namespace pb = google::protobuf;

namespace {

bool close(double a, double b, double rel) {
  if (!std::isfinite(a) || !std::isfinite(b)) return std::isnan(a) == std::isnan(b) || a == b;
  return std::abs(a - b) <= rel * std::max({1.0, std::abs(a), std::abs(b)});
}

bool same_linear(const model::Linear& a, const model::Linear& b) {
  auto eq = [](const Eigen::MatrixXd& x, const Eigen::MatrixXd& y) {
    if (x.rows() != y.rows() || x.cols() != y.cols()) return false;
    for (Eigen::Index i = 0; i < x.size(); ++i) {
      if (!(x.data()[i] == y.data()[i])) return false;
    }
    return true;
  };
  return eq(a.weight, b.weight) && eq(a.bias, b.bias);
}

void check_reload(const v1::Model& m, const model::ModelSpec& spec) {
  v1::Model stored;
  FUZZ_CHECK(stored.ParseFromString(m.SerializeAsString()), "the recorded model does not parse");
  auto again = server::model_from_proto(stored);
  FUZZ_CHECK(again.has_value(),
             "a model accepted at deploy is refused when loaded: " + again.error().message);
  FUZZ_CHECK(again->name == spec.name && again->glu == spec.glu && again->classes == spec.classes &&
                 again->width() == spec.width() && again->preprocessing == spec.preprocessing &&
                 same_linear(again->encoder, spec.encoder) &&
                 same_linear(again->mixing, spec.mixing) &&
                 same_linear(again->decoder, spec.decoder),
             "the reloaded model differs from the deployed one");
  // The preprocessing written back (preprocessing_to_proto) reads as the same.
  v1::Model written = stored;
  server::preprocessing_to_proto(spec.preprocessing, written.mutable_preprocessing());
  auto back = server::model_from_proto(written);
  FUZZ_CHECK(back.has_value() && back->preprocessing == spec.preprocessing,
             "preprocessing_to_proto does not give back the preprocessing it was given");
}

void check_software_path(const model::ModelSpec& spec, uint32_t hash) {
  std::vector<kernel::CompiledKernel> compiled;
  for (const kernel::KernelSpec& k : spec.kernels.kernels) {
    compiled.push_back(kernel::compile(k, spec.kernels.window));
  }
  const int h = spec.width();
  const int classes = static_cast<int>(spec.decoder.weight.rows());
  const int steps = 1 + static_cast<int>(hash % 40);
  const int channels = spec.channels();
  // A preprocessed clip lies in [-1, 1] (block average) or [0, 1] (log-mel): steps x channels.
  Eigen::VectorXd u(steps * channels);
  for (int i = 0; i < steps * channels; ++i) {
    const double v = std::sin(0.37 * (i + 1) + hash % 7);
    u(i) = channels > 1 ? std::abs(v) : v;
  }

  auto f = model::forward(spec, u, model::software_kernels(compiled));
  FUZZ_CHECK(f.has_value(), "forward on the software kernels failed: " + f.error().message);
  FUZZ_CHECK(f->logits.size() == classes && f->probabilities.size() == classes,
             "forward: not one logit and probability per class");
  FUZZ_CHECK(f->label >= 0 && f->label < classes, fmt::format("label {}", f->label));
  FUZZ_CHECK(static_cast<int>(f->kernel_outputs.size()) == h, "forward: kernel outputs");
  for (const auto& y : f->kernel_outputs) FUZZ_CHECK(y.size() == steps, "kernel output length");
  if (f->logits.allFinite()) {
    FUZZ_CHECK(f->probabilities.allFinite() && close(f->probabilities.sum(), 1.0, 1e-9),
               fmt::format("probabilities sum to {}", f->probabilities.sum()));
    for (int c = 0; c < classes; ++c) {
      FUZZ_CHECK(f->probabilities(c) <= f->probabilities(f->label),
                 "the label is not the most probable class");
    }
  }

  // StreamInfer: the encoder per step, the kernels in two chunks, the head step by step.
  const std::vector<Eigen::VectorXd> z = model::encode(spec, u);
  const int cut = steps / 2;
  std::vector<Eigen::VectorXd> first, second;
  for (const auto& zk : z) {
    first.push_back(zk.head(cut));
    second.push_back(zk.tail(steps - cut));
  }
  auto stream = model::software_stream(compiled);
  auto y1 = stream->push(first);
  auto y2 = stream->push(second);
  auto y3 = stream->finish();
  FUZZ_CHECK(y1 && y2 && y3, "software stream failed");
  model::StreamingHead head(spec);
  for (int k = 0; k < h; ++k) {
    const auto ks = static_cast<size_t>(k);
    const Eigen::Index n = (*y1)[ks].size() + (*y2)[ks].size() + (*y3)[ks].size();
    FUZZ_CHECK(n == steps, fmt::format("stream returned {} of {} steps", n, steps));
  }
  for (int t = 0; t < steps; ++t) {
    Eigen::VectorXd step(h);
    for (int k = 0; k < h; ++k) {
      const auto ks = static_cast<size_t>(k);
      const double v = t < cut ? (*y1)[ks](t) : (*y2)[ks](t - cut);
      const double w = f->kernel_outputs[ks](t);  // the same recurrence, the same operations
      FUZZ_CHECK(v == w || (std::isnan(v) && std::isnan(w)),
                 fmt::format("kernel {} step {}: stream {} vs whole sequence {}", k, t, v,
                             f->kernel_outputs[ks](t)));
      step(k) = v;
    }
    head.push(step);
  }
  const model::Forward s = head.result();
  if (f->logits.allFinite() && s.logits.allFinite()) {
    // The head sums step by step where forward() takes a mean over a matrix: equal up to
    // rounding, which scales with the magnitudes summed (|W_dec| (|W_mix| |gelu(y)| + |b|)).
    Eigen::MatrixXd g(h, steps);
    for (int k = 0; k < h; ++k) {
      for (int t = 0; t < steps; ++t) {
        g(k, t) = std::abs(model::gelu(f->kernel_outputs[static_cast<size_t>(k)](t)));
      }
    }
    Eigen::MatrixXd mag = spec.mixing.weight.cwiseAbs() * g;
    mag.colwise() += spec.mixing.bias.cwiseAbs();
    const Eigen::VectorXd pooled = mag.topRows(h).rowwise().mean();
    const Eigen::VectorXd bound =
        spec.decoder.weight.cwiseAbs() * pooled + spec.decoder.bias.cwiseAbs();
    for (int c = 0; c < classes; ++c) {
      const double tol = 1e-9 * (1 + bound(c)) * (steps + h);
      FUZZ_CHECK(std::abs(s.logits(c) - f->logits(c)) <= tol,
                 fmt::format("class {}: streamed logit {} vs Infer's {} (tolerance {})", c,
                             s.logits(c), f->logits(c), tol));
    }
  }
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses: expected here, only noise.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  v1::Model m;
  if (!pb::util::JsonStringToMessage(std::string(xbar::fuzz::as_text(data, size)), &m).ok()) {
    return 0;
  }
  auto spec = server::model_from_proto(m);
  if (!spec) {
    FUZZ_CHECK(spec.error().code == ErrorCode::kInvalidArgument && !spec.error().message.empty(),
               "model_from_proto: " + spec.error().message);
    return 0;
  }
  FUZZ_CHECK(model::validate(*spec).has_value(), "model_from_proto returned an invalid spec");
  check_reload(m, *spec);
  const ProgramVerifyConfig defaults;
  if (!kernel::validate(spec->kernels, defaults.target_min_uS, defaults.target_max_uS)) return 0;
  xbar::fuzz::check_accepted_kernel_set(spec->kernels);
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 16777619u;
  check_software_path(*spec, hash);
  return 0;
}
