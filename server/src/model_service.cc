#include "model_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "call.h"
#include "request_checks.h"
#include "serving.h"
#include "status.h"
#include "xbar/audio/audio.h"
#include "xbar/audio/front_end.h"
#include "xbar/kernel/kernel.h"

namespace xbar::server {

grpc::Status ModelServiceImpl::DeployModel(grpc::ServerContext* ctx,
                                           const v1::DeployModelRequest* req,
                                           grpc::ServerWriter<v1::DeployKernelResponse>* writer) {
  if (auto a = access_.authorize(ctx, "DeployModel"); !a.ok()) return a;
  if (auto e = check_enums(*req); !e.ok()) return e;  // names options.remap, not remap
  auto spec = model_from_proto(req->model());
  if (!spec) return to_status(spec.error());
  const double min_agreement =
      req->has_min_label_agreement() ? req->min_label_agreement() : kDefaultMinLabelAgreement;
  if (!(min_agreement >= 0 && min_agreement <= 1)) {  // NaN too
    return invalid_argument(fmt::format("min_label_agreement = {}: allowed 0..1 (unset: {})",
                                        min_agreement, kDefaultMinLabelAgreement));
  }
  v1::DeployKernelRequest dk = req->options();
  *dk.mutable_kernel_set() = req->model().kernel_set();
  if (dk.name().empty()) dk.set_name(req->model().name().substr(0, 64));
  DeployCheck check;
  if (!spec->calibration.fidelity_clips.empty()) {
    check = [this, &spec, min_agreement](v1::Deployment& dep, const auto& progress) {
      return check_fidelity(*spec, min_agreement, dep, progress);
    };
  }
  return deployer_.deploy_kernels(ctx, dk, writer, &req->model(),
                                  "/xbar.v1.ModelService/DeployModel", check);
}

std::vector<std::string> ModelServiceImpl::check_fidelity(
    const model::ModelSpec& spec, double min_agreement, v1::Deployment& dep,
    const std::function<void(const std::string&)>& progress) {
  const std::vector<Eigen::VectorXd>& clips = spec.calibration.fidelity_clips;
  progress(fmt::format("{} clips on the board and in software", clips.size()));
  std::vector<kernel::CompiledKernel> compiled;
  compiled.reserve(spec.kernels.kernels.size());
  for (const kernel::KernelSpec& k : spec.kernels.kernels) {
    compiled.push_back(kernel::compile(k, spec.kernels.window));
  }
  auto placed = placed_kernels(spec, compiled, dep);
  auto f = placed ? model::measure_fidelity(board_, spec, *placed, clips)
                  : Result<model::Fidelity>(std::unexpected(placed.error()));
  if (!f) {
    // Programmed and verified, but how it computes the model is unknown: not ready.
    return {fmt::format("fidelity not measured: {}", f.error().message)};
  }
  v1::ModelFidelity* out = dep.mutable_fidelity();
  out->set_clips(static_cast<uint32_t>(f->clips));
  out->set_label_agreement(f->label_agreement);
  out->set_logit_nrmse(f->logit_nrmse);
  for (double r : f->state_clip_rate) out->add_state_clip_rate(r);
  out->set_min_label_agreement(min_agreement);
  out->set_board_ms(f->board_ms);
  std::string rates;
  for (size_t k = 0; k < f->state_clip_rate.size(); ++k) {
    rates += fmt::format("{}{:.3g} %", k ? ", " : "", 100 * f->state_clip_rate[k]);
  }
  progress(
      fmt::format("label agreement {:.1f} % on {} clips, logit NRMSE {:.3g}, predicted state "
                  "clipping per kernel {}",
                  100 * f->label_agreement, f->clips, f->logit_nrmse, rates));
  if (f->label_agreement < min_agreement) {
    return {
        fmt::format("the board's labels agree with the software path's on {:.1f} % of the "
                    "model's {} fidelity clips, below min_label_agreement {:.1f} % (logit "
                    "NRMSE {:.3g})",
                    100 * f->label_agreement, f->clips, 100 * min_agreement, f->logit_nrmse)};
  }
  return {};
}

std::vector<int> ModelServiceImpl::Loaded::arrays() const {
  std::vector<int> a;
  a.reserve(placed.size());
  for (const model::PlacedKernel& p : placed) a.push_back(p.array);
  return a;
}

Result<ModelServiceImpl::Loaded> ModelServiceImpl::load(const std::string& id, bool hardware) {
  // The software path runs the recorded model on the host and needs no array: it answers for
  // a deployment in any state (docs/api.md). The hardware path needs the arrays to hold it.
  auto row = find_deployment(states_, id, hardware, "a deployment with a model");
  if (!row) return std::unexpected(row.error());
  v1::Deployment dep;
  if (!dep.ParseFromString(row->blob) || !dep.has_model()) {
    return make_error(ErrorCode::kFailedPrecondition,
                      fmt::format("deployment {} has no model: deploy one with DeployModel", id));
  }
  if (dep.archived_at_ms() != 0) {
    return make_error(ErrorCode::kFailedPrecondition,
                      fmt::format("deployment {} is {} and archived: retention kept its history "
                                  "without the read-back conductances inference runs on",
                                  id, name(row->state)));
  }
  auto spec = model_from_proto(dep.model());
  if (!spec) return make_error(ErrorCode::kInternal, "recorded model: " + spec.error().message);
  Loaded l;
  for (const kernel::KernelSpec& k : spec->kernels.kernels) {
    l.compiled.push_back(kernel::compile(k, spec->kernels.window));
  }
  auto placed = placed_kernels(*spec, l.compiled, dep);
  if (!placed) return std::unexpected(placed.error());
  l.spec = std::move(*spec);
  l.placed = std::move(*placed);
  return l;
}

namespace {

// The clip's limits, before anything is decoded or copied beyond them.
grpc::Status check_clip_limits(const v1::InferRequest& req) {
  if (!req.audio().empty()) return grpc::Status::OK;  // decode_audio applies the same limits
  if (req.samples_size() == 0) {
    return invalid_argument("audio: empty (no audio bytes and no samples)");
  }
  if (req.sample_rate_hz() < audio::AudioLimits::kMinRateHz ||
      req.sample_rate_hz() > audio::AudioLimits::kMaxRateHz) {
    return invalid_argument(fmt::format("sample_rate_hz = {}: allowed {}..{} Hz",
                                        req.sample_rate_hz(), audio::AudioLimits::kMinRateHz,
                                        audio::AudioLimits::kMaxRateHz));
  }
  const double seconds = static_cast<double>(req.samples_size()) / req.sample_rate_hz();
  if (seconds > audio::AudioLimits{}.max_seconds) {
    return invalid_argument(fmt::format(
        "samples: {} samples at {} Hz = {:.1f} s: allowed up to {:g} s", req.samples_size(),
        req.sample_rate_hz(), seconds, audio::AudioLimits{}.max_seconds));
  }
  return grpc::Status::OK;
}

// The request's clip: encoded bytes decoded, or the samples as given.
Result<audio::Audio> clip_of(const v1::InferRequest& req) {
  if (!req.audio().empty()) {
    return audio::decode_audio(
        {reinterpret_cast<const uint8_t*>(req.audio().data()), req.audio().size()});
  }
  audio::Audio clip;
  clip.samples.assign(req.samples().begin(), req.samples().end());
  clip.sample_rate_hz = static_cast<int>(req.sample_rate_hz());
  return clip;
}

void fill_infer_response(const model::Forward& f, const model::ModelSpec& spec, uint32_t steps,
                         double board_ms, bool kernel_outputs, v1::InferResponse* out) {
  for (double v : f.logits) out->add_logits(static_cast<float>(v));
  for (double v : f.probabilities) out->add_probabilities(static_cast<float>(v));
  out->set_label(static_cast<uint32_t>(f.label));
  if (static_cast<size_t>(f.label) < spec.classes.size()) {
    out->set_class_name(spec.classes[static_cast<size_t>(f.label)]);
  }
  out->set_steps(steps);
  out->set_board_ms(board_ms);
  if (kernel_outputs) {
    for (const Eigen::VectorXd& y : f.kernel_outputs) {
      auto* s = out->add_kernel_outputs();
      for (double v : y) s->add_values(static_cast<float>(v));
    }
  }
}

}  // namespace

grpc::Status ModelServiceImpl::Infer(grpc::ServerContext* ctx, const v1::InferRequest* req,
                                     v1::InferResponse* out) {
  if (auto e = check_enums(*req); !e.ok()) return e;
  // The hardware and emulated paths both run on the deployment's arrays (`on_board`).
  const bool on_board = req->path() != v1::INFER_SOFTWARE;
  const bool emulate = req->path() == v1::INFER_EMULATE;
  if (auto c = check_clip_limits(*req); !c.ok()) return c;
  auto loaded = load(req->deployment(), on_board);
  if (!loaded) return to_status(loaded.error());
  model::ModelSpec* spec = &loaded->spec;

  // Audio -> the model's preprocessing.
  auto clip = clip_of(*req);
  if (!clip) return to_status(clip.error());
  // Steps x channels values, step-major (one channel, or one per log-mel band).
  auto values = audio::preprocess(*clip, spec->preprocessing);
  if (!values) return to_status(values.error());
  const Eigen::VectorXd u =
      Eigen::Map<const Eigen::VectorXf>(values->data(), static_cast<Eigen::Index>(values->size()))
          .cast<double>();
  const auto steps = static_cast<uint32_t>(u.size() / spec->channels());

  Result<model::Forward> f = std::unexpected(Error{});
  double board_ms = 0;
  if (on_board) {
    auto hold = sched_.arrays.shared(loaded->arrays(), limits_of(ctx));
    if (!hold) return to_status(hold.error());
    auto turn = sched_.board.acquire(client_of(ctx), limits_of(ctx));
    if (!turn) return to_status(turn.error());
    // What waited for the arrays may find them given to another deployment, or the board
    // restarted: checked again now that nothing can change them.
    // The epoch the arrays were verified at: any restart or re-open after it, before or during
    // the run, discards the answer.
    const uint64_t epoch = states_.verified_epoch();
    if (auto again = still_servable(req->deployment()); !again.ok()) return again;
    auto hw = emulate ? model::emulated_kernels(board_, loaded->placed, &board_ms)
                      : model::hardware_kernels(board_, loaded->placed, &board_ms);
    if (hw) f = model::forward(*spec, u, *hw);  // the board runs here
    if (auto e = board_restarted_during(epoch, req->deployment()); !e.ok()) return e;
    if (!hw) return to_status(hw.error());
    if (!emulate && metrics_ != nullptr && f) {
      metrics_->loop_steps.inc(static_cast<double>(steps));
    }
  } else {
    f = model::forward(*spec, u, model::software_kernels(loaded->compiled));
  }
  if (!f) return to_status(f.error());
  fill_infer_response(*f, *spec, steps, board_ms, req->kernel_outputs(), out);
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::still_servable(const std::string& id) {
  return server::still_servable(states_, id);
}

grpc::Status ModelServiceImpl::board_restarted_during(uint64_t epoch, const std::string& id) {
  return server::board_restarted_during(states_, board_.info(), epoch, id);
}

}  // namespace xbar::server
