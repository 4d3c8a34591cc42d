#include "model_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "status.h"
#include "xbar/audio/audio.h"
#include "xbar/kernel/kernel.h"

namespace xbar::server {

namespace {

Result<model::Linear> linear_from_proto(const v1::Linear& l, const char* name) {
  const auto in = static_cast<Eigen::Index>(l.inputs()),
             out = static_cast<Eigen::Index>(l.outputs());
  if (in < 1 || out < 1 || in > 4096 || out > 4096) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: inputs = {}, outputs = {}: allowed 1..4096 each", name,
                                  l.inputs(), l.outputs()));
  }
  if (l.weight_size() != in * out) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}.weight: {} values, outputs x inputs = {} needed", name,
                                  l.weight_size(), in * out));
  }
  if (l.bias_size() != 0 && l.bias_size() != out) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("{}.bias: {} values, {} (or none) needed", name, l.bias_size(), out));
  }
  model::Linear r;
  r.weight.resize(out, in);
  for (Eigen::Index o = 0; o < out; ++o) {
    for (Eigen::Index i = 0; i < in; ++i) r.weight(o, i) = l.weight(static_cast<int>(o * in + i));
  }
  r.bias = Eigen::VectorXd::Zero(out);
  for (int o = 0; o < l.bias_size(); ++o) r.bias(o) = l.bias(o);
  return r;
}

}  // namespace

Result<model::ModelSpec> model_from_proto(const v1::Model& m) {
  model::ModelSpec s;
  s.name = m.name();
  if (m.has_preprocessing()) {
    const v1::AudioPreprocessing& p = m.preprocessing();
    if (p.sample_rate_hz() != 0)
      s.preprocessing.sample_rate_hz = static_cast<int>(std::min(p.sample_rate_hz(), 10'000'000u));
    if (p.downsample() != 0)
      s.preprocessing.downsample = static_cast<int>(std::min(p.downsample(), 1'000'000u));
    s.preprocessing.target_length = static_cast<int>(std::min(p.target_length(), 10'000'000u));
    s.preprocessing.normalise = p.normalise();
  }
  auto ks = kernel_set_from_proto(m.kernel_set());
  if (!ks) return std::unexpected(ks.error());
  s.kernels = std::move(*ks);
  auto enc = linear_from_proto(m.encoder(), "encoder");
  if (!enc) return std::unexpected(enc.error());
  auto mix = linear_from_proto(m.mixing(), "mixing");
  if (!mix) return std::unexpected(mix.error());
  auto dec = linear_from_proto(m.decoder(), "decoder");
  if (!dec) return std::unexpected(dec.error());
  s.encoder = std::move(*enc);
  s.mixing = std::move(*mix);
  s.decoder = std::move(*dec);
  s.glu = m.glu();
  s.classes.assign(m.classes().begin(), m.classes().end());
  if (auto v = model::validate(s); !v) return std::unexpected(v.error());
  return s;
}

grpc::Status ModelServiceImpl::DeployModel(grpc::ServerContext* ctx,
                                           const v1::DeployModelRequest* req,
                                           grpc::ServerWriter<v1::DeployKernelResponse>* writer) {
  auto spec = model_from_proto(req->model());
  if (!spec) return to_status(spec.error());
  v1::DeployKernelRequest dk = req->options();
  *dk.mutable_kernel_set() = req->model().kernel_set();
  if (dk.name().empty()) dk.set_name(req->model().name().substr(0, 64));
  return kernels_.deploy(ctx, dk, writer, req->model().SerializeAsString());
}

grpc::Status ModelServiceImpl::Infer(grpc::ServerContext*, const v1::InferRequest* req,
                                     v1::InferResponse* out) {
  auto row = record_.deployment(req->deployment());
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return {grpc::StatusCode::NOT_FOUND,
              fmt::format("deployment = '{}': no such deployment", req->deployment())};
    }
    return to_status(row.error());
  }
  v1::Deployment dep;
  v1::Model mp;
  if (!dep.ParseFromString(row->blob) || dep.model().empty() || !mp.ParseFromString(dep.model())) {
    return {grpc::StatusCode::FAILED_PRECONDITION,
            fmt::format("deployment {} has no model: deploy one with DeployModel", dep.id())};
  }
  const bool hardware = req->path() == v1::INFER_HARDWARE;
  if (hardware && row->state != "ready" && row->state != "degraded") {
    return {grpc::StatusCode::FAILED_PRECONDITION,
            fmt::format("deployment {} is {}: its arrays do not hold it", dep.id(), row->state)};
  }
  auto spec = model_from_proto(mp);
  if (!spec) return {grpc::StatusCode::DATA_LOSS, "recorded model: " + spec.error().message};

  // Audio -> the model's preprocessing.
  audio::Audio clip;
  if (!req->audio().empty()) {
    auto a = audio::decode_audio(
        {reinterpret_cast<const uint8_t*>(req->audio().data()), req->audio().size()});
    if (!a) return to_status(a.error());
    clip = std::move(*a);
  } else {
    if (req->samples_size() == 0)
      return invalid_argument("audio: empty (no audio bytes and no samples)");
    if (req->sample_rate_hz() < 1000 || req->sample_rate_hz() > 384000) {
      return invalid_argument(
          fmt::format("sample_rate_hz = {}: allowed 1000..384000", req->sample_rate_hz()));
    }
    clip.samples.assign(req->samples().begin(), req->samples().end());
    clip.sample_rate_hz = static_cast<int>(req->sample_rate_hz());
  }
  audio::Preprocessing pp;
  pp.sample_rate_hz = spec->preprocessing.sample_rate_hz;
  pp.downsample = spec->preprocessing.downsample;
  pp.target_length = spec->preprocessing.target_length;
  pp.normalise = spec->preprocessing.normalise;
  auto steps = audio::preprocess(clip, pp);
  if (!steps) return to_status(steps.error());
  Eigen::VectorXd u(static_cast<Eigen::Index>(steps->size()));
  for (size_t t = 0; t < steps->size(); ++t) u(static_cast<Eigen::Index>(t)) = (*steps)[t];

  std::vector<kernel::CompiledKernel> compiled;
  for (const kernel::KernelSpec& k : spec->kernels.kernels) {
    compiled.push_back(kernel::compile(k, spec->kernels.window));
  }
  Result<model::Forward> f = std::unexpected(Error{});
  double board_ms = 0;
  if (hardware) {
    std::vector<model::PlacedKernel> placed(compiled.size());
    for (const v1::Placement& p : dep.placements()) {
      if (p.kernel() >= compiled.size() || p.row_of_logical_size() != 64 ||
          p.col_of_logical_size() != 64 || p.readback_us_size() != 64 * 64) {
        return {grpc::StatusCode::DATA_LOSS,
                fmt::format("deployment {}: placement unreadable", dep.id())};
      }
      model::PlacedKernel& pk = placed[p.kernel()];
      pk.compiled = compiled[p.kernel()];
      pk.array = static_cast<int>(p.array());
      pk.placement.row_of.assign(p.row_of_logical().begin(), p.row_of_logical().end());
      pk.placement.col_of.assign(p.col_of_logical().begin(), p.col_of_logical().end());
      pk.g_uS.resize(64, 64);
      for (int i = 0; i < 64 * 64; ++i) pk.g_uS(i / 64, i % 64) = p.readback_us(i);
    }
    std::lock_guard lock(board_mu_);
    auto hw = model::hardware_kernels(board_, placed, &board_ms);
    if (!hw) return to_status(hw.error());
    f = model::forward(*spec, u, *hw);
  } else {
    f = model::forward(*spec, u, model::software_kernels(compiled));
  }
  if (!f) return to_status(f.error());
  for (double v : f->logits) out->add_logits(static_cast<float>(v));
  for (double v : f->probabilities) out->add_probabilities(static_cast<float>(v));
  out->set_label(static_cast<uint32_t>(f->label));
  if (static_cast<size_t>(f->label) < spec->classes.size()) {
    out->set_class_name(spec->classes[static_cast<size_t>(f->label)]);
  }
  out->set_steps(static_cast<uint32_t>(u.size()));
  out->set_board_ms(board_ms);
  if (req->kernel_outputs()) {
    for (const Eigen::VectorXd& y : f->kernel_outputs) {
      auto* s = out->add_kernel_outputs();
      for (double v : y) s->add_values(static_cast<float>(v));
    }
  }
  return grpc::Status::OK;
}

}  // namespace xbar::server
