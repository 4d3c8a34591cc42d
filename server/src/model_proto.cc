#include "model_proto.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "xbar/audio/audio.h"

namespace xbar::server {

namespace {

using kernel::cd;

std::vector<cd> complex_list(const google::protobuf::RepeatedPtrField<v1::Complex>& v) {
  std::vector<cd> out;
  for (const v1::Complex& z : v) out.emplace_back(z.re(), z.im());
  return out;
}

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

Result<kernel::KernelSetSpec> kernel_set_from_proto(const v1::KernelSet& set) {
  kernel::KernelSetSpec out;
  if (set.has_window()) {
    out.window.g_min_uS = set.window().g_min_us() != 0 ? set.window().g_min_us() : 7.0;
    out.window.g_max_uS = set.window().g_max_us() != 0 ? set.window().g_max_us() : 200.0;
  }
  for (int i = 0; i < set.kernels_size(); ++i) {
    const v1::Kernel& k = set.kernels(i);
    kernel::KernelSpec s;
    s.name = k.name();
    s.d = k.d();
    if (k.has_continuous()) {
      s.continuous = true;
      s.a = complex_list(k.continuous().a());
      s.c = complex_list(k.continuous().c());
      s.log_dt = k.continuous().log_dt();
    } else if (k.has_discrete()) {
      s.continuous = false;
      s.a = complex_list(k.discrete().a_bar());
      s.c = complex_list(k.discrete().c_bar());
    } else {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("kernels[{}]: neither continuous nor discrete is set", i));
    }
    if (k.has_quantization()) {
      if (k.quantization().bits() > static_cast<uint32_t>(kernel::kMaxBits)) {
        // kernel::validate's message, on the value as sent (no int cast to wrap it).
        return make_error(ErrorCode::kInvalidArgument,
                          fmt::format("kernels[{}].quantization.bits = {}: allowed 0 (off) or "
                                      "2..{}",
                                      i, k.quantization().bits(), kernel::kMaxBits));
      }
      s.quant.bits = static_cast<int>(k.quantization().bits());
      s.quant.f_scale_a = k.quantization().f_scale_a();
      s.quant.f_scale_c = k.quantization().f_scale_c();
      const v1::Quantization& q = k.quantization();
      s.quant.levels_a_re.assign(q.levels_a_re().begin(), q.levels_a_re().end());
      s.quant.levels_a_im.assign(q.levels_a_im().begin(), q.levels_a_im().end());
      s.quant.levels_c.assign(q.levels_c().begin(), q.levels_c().end());
    }
    s.mode_range.assign(k.mode_range().begin(), k.mode_range().end());
    out.kernels.push_back(std::move(s));
  }
  return out;
}

namespace {

// The ranges are model::validate's; checked here on the values as sent, so that a message
// never shows a number the caller did not send (a uint32 cast to int, or clamped).
Result<int> preprocessing_in_range(const char* field, uint32_t v, uint32_t lo, uint32_t hi) {
  if (v < lo || v > hi) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("preprocessing.{} = {}: allowed {}..{}", field, v, lo, hi));
  }
  return static_cast<int>(v);
}

// Every field as sent (no defaults: 0 is refused where it is not allowed); the rest of the
// checks (power of two, >= downsample, the band edges, the range) are audio::validate's, in
// model::validate.
Result<audio::LogMel> log_mel_from_proto(const v1::LogMel& lm) {
  auto bands = preprocessing_in_range("log_mel.bands", lm.bands(), 1, audio::LogMel::kMaxBands);
  if (!bands) return std::unexpected(bands.error());
  if (lm.fft_size() > static_cast<uint32_t>(audio::LogMel::kMaxFftSize)) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("preprocessing.log_mel.fft_size = {}: allowed a power of "
                    "two, {}..{}",
                    lm.fft_size(), audio::LogMel::kMinFftSize, audio::LogMel::kMaxFftSize));
  }
  audio::LogMel m;
  m.bands = *bands;
  m.fft_size = static_cast<int>(lm.fft_size());
  m.low_hz = lm.low_hz();
  m.high_hz = lm.high_hz();
  m.range_db = lm.range_db();
  return m;
}

Result<model::Preprocessing> preprocessing_from_proto(const v1::AudioPreprocessing& p) {
  model::Preprocessing out;
  if (p.sample_rate_hz() != 0) {
    auto v = preprocessing_in_range("sample_rate_hz", p.sample_rate_hz(),
                                    audio::AudioLimits::kMinRateHz, audio::AudioLimits::kMaxRateHz);
    if (!v) return std::unexpected(v.error());
    out.sample_rate_hz = *v;
  }
  if (p.downsample() != 0) {
    auto v = preprocessing_in_range("downsample", p.downsample(), 1, 4096);
    if (!v) return std::unexpected(v.error());
    out.downsample = *v;
  }
  auto length = preprocessing_in_range("target_length", p.target_length(), 0, 100000);
  if (!length) return std::unexpected(length.error());
  out.target_length = *length;
  out.normalise = p.normalise();
  if (p.has_log_mel()) {
    auto lm = log_mel_from_proto(p.log_mel());
    if (!lm) return std::unexpected(lm.error());
    out.log_mel = *lm;
  }
  return out;
}

Result<model::Calibration> calibration_from_proto(const v1::Calibration& c) {
  // The count first: nothing beyond the limit is copied (validate() names it).
  if (static_cast<size_t>(c.fidelity_clips_size()) > model::kMaxFidelityClips) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("calibration.fidelity_clips: {} clips, allowed up to {}",
                                  c.fidelity_clips_size(), model::kMaxFidelityClips));
  }
  model::Calibration out;
  for (const v1::Sequence& clip : c.fidelity_clips()) {
    Eigen::VectorXd u(clip.values_size());
    for (int t = 0; t < clip.values_size(); ++t) u(t) = clip.values(t);
    out.fidelity_clips.push_back(std::move(u));
  }
  for (const v1::KernelRange& r : c.kernels()) {
    out.kernels.push_back(
        {r.state_max(), r.output_max(), r.input_max(), r.state_range(), r.output_nrmse()});
  }
  out.clips = static_cast<int>(std::min<uint32_t>(c.clips(), INT32_MAX));
  out.source = c.source();
  return out;
}

}  // namespace

Result<model::ModelSpec> model_from_proto(const v1::Model& m) {
  model::ModelSpec s;
  s.name = m.name();
  if (m.has_preprocessing()) {
    auto p = preprocessing_from_proto(m.preprocessing());
    if (!p) return std::unexpected(p.error());
    s.preprocessing = *p;
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
  if (m.has_calibration()) {
    auto cal = calibration_from_proto(m.calibration());
    if (!cal) return std::unexpected(cal.error());
    s.calibration = std::move(*cal);
  }
  if (auto v = model::validate(s); !v) return std::unexpected(v.error());
  return s;
}

void preprocessing_to_proto(const model::Preprocessing& p, v1::AudioPreprocessing* out) {
  out->Clear();
  out->set_sample_rate_hz(static_cast<uint32_t>(std::max(0, p.sample_rate_hz)));
  out->set_downsample(static_cast<uint32_t>(std::max(0, p.downsample)));
  out->set_target_length(static_cast<uint32_t>(std::max(0, p.target_length)));
  out->set_normalise(p.normalise);
  if (p.log_mel) {
    v1::LogMel* lm = out->mutable_log_mel();
    lm->set_bands(static_cast<uint32_t>(std::max(0, p.log_mel->bands)));
    lm->set_fft_size(static_cast<uint32_t>(std::max(0, p.log_mel->fft_size)));
    lm->set_low_hz(p.log_mel->low_hz);
    lm->set_high_hz(p.log_mel->high_hz);
    lm->set_range_db(p.log_mel->range_db);
  }
}

void calibration_to_proto(const model::Calibration& c, v1::Model* m) {
  v1::Calibration* out = m->mutable_calibration();
  out->Clear();
  for (const model::KernelRange& r : c.kernels) {
    v1::KernelRange* k = out->add_kernels();
    k->set_state_max(r.state_max);
    k->set_output_max(r.output_max);
    k->set_input_max(r.input_max);
    k->set_state_range(r.state_range);
    k->set_output_nrmse(r.output_nrmse);
  }
  out->set_clips(static_cast<uint32_t>(std::max(0, c.clips)));
  out->set_source(c.source);
  for (const Eigen::VectorXd& u : c.fidelity_clips) {
    v1::Sequence* q = out->add_fidelity_clips();
    for (double v : u) q->add_values(static_cast<float>(v));
  }
}

Result<std::vector<model::PlacedKernel>> placed_kernels(
    const model::ModelSpec& spec, const std::vector<kernel::CompiledKernel>& compiled,
    const v1::Deployment& dep) {
  std::vector<model::PlacedKernel> placed(compiled.size());
  for (const v1::Placement& p : dep.placements()) {
    if (p.kernel() >= placed.size() || p.row_of_logical_size() != 64 ||
        p.col_of_logical_size() != 64 || p.readback_us_size() != 64 * 64) {
      return make_error(ErrorCode::kInternal,
                        fmt::format("deployment {}: placement unreadable", dep.id()));
    }
    model::PlacedKernel& pk = placed[p.kernel()];
    pk.compiled = compiled[p.kernel()];
    pk.array = static_cast<int>(p.array());
    pk.u_max = model::input_bound(spec, static_cast<int>(p.kernel()));
    pk.fix_devices = dep.remap() != v1::REMAP_NAIVE;  // naive: the fault-unaware baseline
    if (p.kernel() < spec.calibration.kernels.size()) {
      pk.state_max = spec.calibration.kernels[p.kernel()].state_max;
      pk.state_range = spec.calibration.kernels[p.kernel()].state_range;
      pk.input_max = spec.calibration.kernels[p.kernel()].input_max;
    }
    pk.placement.row_of.assign(p.row_of_logical().begin(), p.row_of_logical().end());
    pk.placement.col_of.assign(p.col_of_logical().begin(), p.col_of_logical().end());
    pk.g_uS.resize(64, 64);
    for (int i = 0; i < 64 * 64; ++i) pk.g_uS(i / 64, i % 64) = p.readback_us(i);
  }
  return placed;
}

}  // namespace xbar::server
