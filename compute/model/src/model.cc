#include "xbar/model/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <numbers>

#include "xbar/drivers/loop_runner.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/loop_plan.h"

namespace xbar::model {

namespace {

Result<void> check_linear(const Linear& l, const char* name, int in, int out) {
  if (l.weight.rows() != out || l.weight.cols() != in) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}.weight: {} x {}, the model needs {} x {} (outputs x inputs)",
                                  name, l.weight.rows(), l.weight.cols(), out, in));
  }
  if (l.bias.size() != out) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}.bias: {} values, {} needed", name, l.bias.size(), out));
  }
  if (!l.weight.allFinite() || !l.bias.allFinite()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: weights must be finite numbers", name));
  }
  return {};
}

}  // namespace

double gelu(double x) { return 0.5 * x * std::erfc(-x / std::numbers::sqrt2); }

namespace {

std::unexpected<Error> invalid(std::string msg) {
  return make_error(ErrorCode::kInvalidArgument, std::move(msg));
}

// The fidelity clips: at most kMaxFidelityClips, each whole steps of `channels` values, finite.
Result<void> validate_fidelity_clips(const Calibration& cal, int channels) {
  if (cal.fidelity_clips.size() > kMaxFidelityClips) {
    return invalid(fmt::format("calibration.fidelity_clips: {} clips, allowed up to {}",
                               cal.fidelity_clips.size(), kMaxFidelityClips));
  }
  for (size_t c = 0; c < cal.fidelity_clips.size(); ++c) {
    const Eigen::VectorXd& u = cal.fidelity_clips[c];
    // A clip is steps x channels values, step-major: a length that is not whole steps is a clip
    // made for another front end.
    if (u.size() % channels != 0) {
      return invalid(
          fmt::format("calibration.fidelity_clips[{}]: {} values, "
                      "allowed a multiple of the {} channels of "
                      "a step (preprocessing.log_mel.bands; a clip "
                      "is steps x bands values, step-major)",
                      c, u.size(), channels));
    }
    if (u.size() < channels || u.size() / channels > kMaxFidelityClipSteps) {
      return invalid(fmt::format("calibration.fidelity_clips[{}]: {} steps, allowed 1..{}", c,
                                 u.size() / channels, kMaxFidelityClipSteps));
    }
    for (Eigen::Index t = 0; t < u.size(); ++t) {
      if (!std::isfinite(u(t))) {
        return invalid(fmt::format("calibration.fidelity_clips[{}].values[{}] = {}: allowed finite",
                                   c, t, u(t)));
      }
    }
  }
  return {};
}

// One kernel's range (named `at` in messages): each figure finite and in its range.
Result<void> validate_range_values(const KernelRange& r, const std::string& at) {
  if (!(std::isfinite(r.state_max) && r.state_max > 0)) {
    return invalid(fmt::format("{}.state_max = {}: allowed finite > 0", at, r.state_max));
  }
  if (!(std::isfinite(r.input_max) && r.input_max > 0)) {
    return invalid(fmt::format("{}.input_max = {}: allowed finite > 0", at, r.input_max));
  }
  if (!(std::isfinite(r.output_max) && r.output_max >= 0)) {
    return invalid(fmt::format("{}.output_max = {}: allowed finite >= 0", at, r.output_max));
  }
  if (!(std::isfinite(r.state_range) && r.state_range >= 0)) {
    return invalid(
        fmt::format("{}.state_range = {}: allowed 0 (none) or finite > 0", at, r.state_range));
  }
  if (!(std::isfinite(r.output_nrmse) && r.output_nrmse >= 0)) {
    return invalid(fmt::format("{}.output_nrmse = {}: allowed finite >= 0", at, r.output_nrmse));
  }
  return {};
}

// No state range (or state_max) so small that the loop would clip on the first step of the
// largest input into the kernel's most sensitive mode.
Result<void> validate_range_fits(const KernelRange& r, const std::string& at,
                                 const kernel::CompiledKernel& ck) {
  const double least = least_state_range(ck, r.input_max);
  if (r.state_range > 0 && r.state_range < least * (1 - 1e-9)) {
    return invalid(
        fmt::format("{}.state_range = {:.6g}: allowed 0 or >= "
                    "{:.6g} (one step of input_max = {:.6g} "
                    "puts that much in the kernel's most sensitive "
                    "mode: a smaller range clips on every "
                    "step)",
                    at, r.state_range, least, r.input_max));
  }
  if (r.state_max < least) {
    return invalid(
        fmt::format("{}.state_max = {:.6g}: allowed >= {:.6g} (one "
                    "step of input_max = {:.6g} puts that "
                    "much in the kernel's most sensitive mode: a "
                    "smaller range clips on every step)",
                    at, r.state_max, least, r.input_max));
  }
  return {};
}

// The calibration, when there is one: one range per kernel, each finite and positive, and no
// state range so small that the loop would clip on the first step of the largest input.
Result<void> validate_calibration(const ModelSpec& m) {
  const Calibration& cal = m.calibration;
  XBAR_RETURN_IF_ERROR(validate_fidelity_clips(cal, m.channels()));
  if (cal.kernels.empty()) return {};
  if (static_cast<int>(cal.kernels.size()) != m.width()) {
    return invalid(fmt::format("calibration.kernels: {} ranges for {} kernels: one per kernel",
                               cal.kernels.size(), m.width()));
  }
  if (cal.source.size() > 256) {
    return invalid(
        fmt::format("calibration.source: {} characters, allowed up to 256", cal.source.size()));
  }
  // Compiled only when the kernels are valid (the deploy refuses them otherwise, naming them).
  const bool kernels_ok = static_cast<bool>(kernel::validate(m.kernels, 1.0, 250.0));
  for (size_t k = 0; k < cal.kernels.size(); ++k) {
    const KernelRange& r = cal.kernels[k];
    const std::string at = fmt::format("calibration.kernels[{}]", k);
    XBAR_RETURN_IF_ERROR(validate_range_values(r, at));
    if (kernels_ok) {
      const kernel::CompiledKernel ck = kernel::compile(m.kernels.kernels[k], m.kernels.window);
      XBAR_RETURN_IF_ERROR(validate_range_fits(r, at, ck));
    }
  }
  return {};
}

}  // namespace

Result<void> validate(const ModelSpec& m) {
  const int h = m.width();
  if (h < 1 || h > kernel::kMaxKernels) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("kernel_set.kernels: {} kernels, allowed 1..{} (one per array)",
                                  h, kernel::kMaxKernels));
  }
  // The front end's fields, as the audio library checks them ("preprocessing.<field> = ...").
  if (auto c = audio::validate(m.preprocessing); !c) return c;
  // The encoder takes one input per channel of a step: the block average, or each band.
  const int channels = m.channels();
  if (m.encoder.weight.rows() == h && m.encoder.weight.cols() != channels) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("encoder.weight: {} x {}, the model needs {} x {} (outputs x inputs: one input "
                    "per channel of a step, {})",
                    m.encoder.weight.rows(), m.encoder.weight.cols(), h, channels,
                    m.preprocessing.log_mel
                        ? fmt::format("preprocessing.log_mel.bands = {}", channels)
                        : std::string("the block average: preprocessing.log_mel is unset")));
  }
  if (auto c = check_linear(m.encoder, "encoder", channels, h); !c) return c;
  // The head's width M is the mixing layer's (halved by the GLU): 1..kMaxHeadWidth.
  const auto mix_rows = static_cast<int>(m.mixing.weight.rows());
  if (mix_rows < 1 || mix_rows > (m.glu ? 2 : 1) * kMaxHeadWidth || (m.glu && mix_rows % 2)) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("mixing.weight: {} outputs: allowed {} (the head's width M is 1..{}{})",
                    mix_rows, m.glu ? "2M, an even number 2..512" : "M, 1..256", kMaxHeadWidth,
                    m.glu ? ", halved by the GLU" : ""));
  }
  if (auto c = check_linear(m.mixing, "mixing", h, mix_rows); !c) return c;
  const int width = head_width(m);
  const int classes = static_cast<int>(m.decoder.weight.rows());
  if (classes < 2) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("decoder: {} outputs, a classifier needs >= 2", classes));
  }
  if (auto c = check_linear(m.decoder, "decoder", width, classes); !c) return c;
  if (auto c = validate_calibration(m); !c) return c;
  // Every answer names its class: one name per decoder output, none empty or repeated.
  if (static_cast<int>(m.classes.size()) != classes) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("classes: {} names for {} decoder outputs: one name per output",
                                  m.classes.size(), classes));
  }
  for (size_t i = 0; i < m.classes.size(); ++i) {
    const std::string& c = m.classes[i];
    if (c.empty() || c.size() > 64) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("classes[{}]: {} characters, allowed 1..64", i, c.size()));
    }
    for (size_t j = 0; j < i; ++j) {
      if (m.classes[j] == c) {
        return make_error(ErrorCode::kInvalidArgument,
                          fmt::format("classes[{}] = '{}': the same as classes[{}]", i, c, j));
      }
    }
  }
  return {};
}

namespace {

// A preprocessed clip must be whole steps of the model's channels.
Result<void> check_steps(const ModelSpec& m, const Eigen::VectorXd& u, std::string_view what) {
  const int channels = m.channels();
  if (u.size() % channels != 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: {} values, allowed a multiple of the model's {} channels "
                                  "per step (steps x channels, step-major)",
                                  what, u.size(), channels));
  }
  return {};
}

// Calibration clips: whole steps, every value finite; `what` names the caller.
Result<void> check_clips(const ModelSpec& m, const std::vector<Eigen::VectorXd>& clips,
                         std::string_view what) {
  for (size_t c = 0; c < clips.size(); ++c) {
    if (auto ok = check_steps(m, clips[c], fmt::format("{}: clip {}", what, c)); !ok) return ok;
    if (!clips[c].allFinite()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: clip {} has a non-finite step", what, c));
    }
  }
  return {};
}

}  // namespace

std::vector<Eigen::VectorXd> encode(const ModelSpec& m, const Eigen::VectorXd& u) {
  const Eigen::Index f_count = m.channels();
  const Eigen::Index steps = u.size() / f_count;
  std::vector<Eigen::VectorXd> z(static_cast<size_t>(m.width()));
  for (Eigen::Index k = 0; k < m.width(); ++k) {
    Eigen::VectorXd& zk = z[static_cast<size_t>(k)];
    zk.resize(steps);
    const double b = m.encoder.bias(k);
    for (Eigen::Index t = 0; t < steps; ++t) {
      // In f order from 0: with one channel, exactly w u + b, the sum before channels existed.
      double acc = 0;
      for (Eigen::Index f = 0; f < f_count; ++f) acc += m.encoder.weight(k, f) * u(t * f_count + f);
      zk(t) = acc + b;
    }
  }
  return z;
}

Result<Forward> forward(const ModelSpec& m, const Eigen::VectorXd& u, const KernelFn& kernels) {
  const int h = m.width();
  if (u.size() == 0) return make_error(ErrorCode::kInvalidArgument, "input: no steps");
  if (auto c = check_steps(m, u, "input"); !c) return std::unexpected(c.error());
  auto y = kernels(encode(m, u));
  if (!y) return std::unexpected(y.error());
  if (static_cast<int>(y->size()) != h) {
    return make_error(ErrorCode::kInternal, "kernels returned the wrong number of sequences");
  }
  const Eigen::Index steps = u.size() / m.channels();
  Eigen::MatrixXd g(h, steps);
  for (int k = 0; k < h; ++k) {
    for (Eigen::Index t = 0; t < steps; ++t) g(k, t) = gelu((*y)[static_cast<size_t>(k)](t));
  }
  Eigen::MatrixXd mix = m.mixing.weight * g;
  mix.colwise() += m.mixing.bias;
  const int width = head_width(m);
  Eigen::MatrixXd act(width, steps);
  if (m.glu) {
    act = mix.topRows(width).array() / (1.0 + (-mix.bottomRows(width).array()).exp());
  } else {
    act = mix;
  }
  const Eigen::VectorXd pooled = act.rowwise().mean();
  Forward f;
  f.logits = m.decoder.weight * pooled + m.decoder.bias;
  const Eigen::VectorXd e = (f.logits.array() - f.logits.maxCoeff()).exp();
  f.probabilities = e / e.sum();
  f.probabilities.maxCoeff(&f.label);
  f.kernel_outputs = std::move(*y);
  return f;
}

double least_state_range(const kernel::CompiledKernel& ck, double input_max) {
  double gain = 0;
  for (double g : ck.mode_gain) gain = std::max(gain, g);
  return input_max * gain;
}

namespace {

// The loop's state arithmetic (docs/firmware.md §7) on kernel `ck` with its codes spanning
// +-range: 8-bit magnitudes rounded half away from zero and clamped at 255, each mode's
// rounding residual carried into the next step (error feedback), the input quantized to the
// same codes. Adds the output's squared error against the ideal recurrence, and its energy.
void loop_error(const kernel::CompiledKernel& ck, double range, const Eigen::VectorXd& z,
                double* err2, double* ref2) {
  const double kClamp = 255;
  const double x_scale = range / kClamp;
  auto q = [kClamp](double v) { return std::clamp(std::round(v), -kClamp, kClamp); };
  auto carry = [](double r) { return std::clamp(r, -0.5, 0.5); };
  const auto n = static_cast<size_t>(ck.n);
  std::vector<kernel::cd> x(n, 0.0), e(n, 0.0), ideal(n, 0.0);
  for (Eigen::Index t = 0; t < z.size(); ++t) {
    const double m_u = q(z(t) / (ck.b_weight * x_scale));
    double acc = 0, ref = 0;
    for (size_t j = 0; j < n; ++j) {
      const kernel::cd next =
          ck.kernel.a_bar[j] * x[j] + ck.b_weight * ck.mode_gain[j] * m_u + e[j];
      x[j] = kernel::cd(q(next.real()), q(next.imag()));
      e[j] = kernel::cd(carry(next.real() - x[j].real()), carry(next.imag() - x[j].imag()));
      acc += (ck.kernel.c_bar[j] / ck.mode_gain[j] * x[j]).real();
      ideal[j] = ck.kernel.a_bar[j] * ideal[j] + z(t);
      ref += (ck.kernel.c_bar[j] * ideal[j]).real();
    }
    const double d = 2 * x_scale * acc - 2 * ref;
    *err2 += d * d;
    *ref2 += 4 * ref * ref;
  }
}

// For each kernel: the state range, among fractions of the largest state seen, whose loop
// arithmetic gives the least output error on the clips (MSE calibration).
void choose_state_ranges(const ModelSpec& m, const std::vector<kernel::CompiledKernel>& compiled,
                         const std::vector<Eigen::VectorXd>& clips, Calibration& cal) {
  // At most ~256 clips, evenly spread (the choice is stable well before that), encoded once.
  const size_t stride = std::max<size_t>(1, clips.size() / 256);
  std::vector<std::vector<Eigen::VectorXd>> encoded;
  for (size_t c = 0; c < clips.size(); c += stride) encoded.push_back(encode(m, clips[c]));
  for (size_t k = 0; k < cal.kernels.size(); ++k) {
    KernelRange& r = cal.kernels[k];
    const kernel::CompiledKernel& ck = compiled[k];
    // Below input_state_range the input's own codes clip (the plan would raise it anyway).
    const double least =
        std::max(least_state_range(ck, r.input_max), kernel::input_state_range(ck, r.input_max));
    double best = 0, best_err = std::numeric_limits<double>::infinity();
    // Fractions of the largest state from 1.1 down, geometric (x 0.85), never below `least`.
    for (int i = 0; i < 20; ++i) {
      const double range = std::max(least, 1.1 * std::pow(0.85, i) * r.state_max);
      double err2 = 0, ref2 = 0;
      for (const std::vector<Eigen::VectorXd>& z : encoded)
        loop_error(ck, range, z[k], &err2, &ref2);
      const double nrmse = ref2 > 0 ? std::sqrt(err2 / ref2) : 0;
      if (nrmse < best_err) {
        best_err = nrmse;
        best = range;
      }
      if (range <= least) break;
    }
    r.state_range = best;
    r.output_nrmse = best_err;
  }
}

}  // namespace

Result<Calibration> calibrate(const ModelSpec& m,
                              const std::vector<kernel::CompiledKernel>& compiled,
                              const std::vector<Eigen::VectorXd>& clips) {
  const int h = m.width();
  if (static_cast<int>(compiled.size()) != h) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("calibrate: {} compiled kernels for a model of {}", compiled.size(), h));
  }
  if (clips.empty()) return make_error(ErrorCode::kInvalidArgument, "calibrate: no clips");
  if (auto c = check_clips(m, clips, "calibrate"); !c) return std::unexpected(c.error());
  Calibration out;
  out.kernels.resize(static_cast<size_t>(h));
  out.clips = static_cast<int>(clips.size());
  for (const Eigen::VectorXd& u : clips) {
    const std::vector<Eigen::VectorXd> zs = encode(m, u);
    for (int k = 0; k < h; ++k) {
      const kernel::CompiledKernel& ck = compiled[static_cast<size_t>(k)];
      KernelRange& r = out.kernels[static_cast<size_t>(k)];
      const Eigen::VectorXd& zk = zs[static_cast<size_t>(k)];
      std::vector<kernel::cd> x(static_cast<size_t>(ck.n), 0.0);
      for (Eigen::Index t = 0; t < zk.size(); ++t) {
        const double z = zk(t);
        r.input_max = std::max(r.input_max, std::abs(z));
        kernel::cd y = 0;
        for (size_t j = 0; j < x.size(); ++j) {
          x[j] = ck.kernel.a_bar[j] * x[j] + z;
          const kernel::cd held = ck.mode_gain[j] * x[j];  // what the array holds
          r.state_max = std::max({r.state_max, std::abs(held.real()), std::abs(held.imag())});
          y += ck.kernel.c_bar[j] * x[j];
        }
        r.output_max = std::max(r.output_max, std::abs(2 * y.real()));
      }
    }
  }
  // Never below the least range (a state that never exceeded its input's step is still
  // represented up to one step of the largest input).
  for (size_t k = 0; k < out.kernels.size(); ++k) {
    KernelRange& r = out.kernels[k];
    r.state_max = std::max(r.state_max, least_state_range(compiled[k], r.input_max));
  }
  choose_state_ranges(m, compiled, clips, out);
  return out;
}

Result<std::vector<std::vector<double>>> measure_mode_ranges(
    const ModelSpec& m, const std::vector<kernel::CompiledKernel>& compiled,
    const std::vector<Eigen::VectorXd>& clips) {
  if (static_cast<int>(compiled.size()) != m.width()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("mode ranges: {} compiled kernels for a model of {}",
                                  compiled.size(), m.width()));
  }
  if (clips.empty()) return make_error(ErrorCode::kInvalidArgument, "mode ranges: no clips");
  if (auto c = check_clips(m, clips, "mode ranges"); !c) return std::unexpected(c.error());
  std::vector<std::vector<double>> out;
  out.reserve(compiled.size());
  for (const kernel::CompiledKernel& ck : compiled) {
    out.emplace_back(static_cast<size_t>(ck.n), 0.0);
  }
  for (const Eigen::VectorXd& u : clips) {
    const std::vector<Eigen::VectorXd> zs = encode(m, u);
    for (size_t k = 0; k < compiled.size(); ++k) {
      const kernel::CompiledKernel& ck = compiled[k];
      std::vector<double>& r = out[k];
      std::vector<kernel::cd> x(r.size(), 0.0);
      for (const double z : zs[k]) {
        for (size_t j = 0; j < x.size(); ++j) {
          x[j] = ck.kernel.a_bar[j] * x[j] + z;
          r[j] = std::max({r[j], std::abs(x[j].real()), std::abs(x[j].imag())});
        }
      }
    }
  }
  for (std::vector<double>& r : out) {
    const double top = *std::max_element(r.begin(), r.end());
    for (double& v : r) v = std::max(v, top > 0 ? top / kModeRangeFloor : 1.0);
  }
  return out;
}

double input_bound(const ModelSpec& m, int k) {
  const double bias = m.encoder.bias.size() > k ? std::abs(m.encoder.bias(k)) : 0.0;
  // Every input value lies in [-1, 1] (block average) or [0, 1] (log-mel features).
  return std::max(1e-3, m.encoder.weight.row(k).cwiseAbs().sum() + bias);
}

KernelFn software_kernels(const std::vector<kernel::CompiledKernel>& compiled) {
  return [compiled](const std::vector<Eigen::VectorXd>& z) -> Result<std::vector<Eigen::VectorXd>> {
    std::vector<Eigen::VectorXd> out;
    out.reserve(z.size());
    for (size_t k = 0; k < z.size(); ++k)
      out.push_back(kernel::run_ideal(compiled[k].kernel, z[k]));
    return out;
  };
}

void StreamingHead::push(const Eigen::VectorXd& y) {
  Eigen::VectorXd g(y.size());
  for (Eigen::Index k = 0; k < y.size(); ++k) g(k) = gelu(y(k));
  const Eigen::VectorXd mix = m_.mixing.weight * g + m_.mixing.bias;
  const int width = head_width(m_);
  if (m_.glu) {
    sum_ += (mix.head(width).array() / (1.0 + (-mix.tail(width).array()).exp())).matrix();
  } else {
    sum_ += mix;
  }
  ++steps_;
}

Forward StreamingHead::result() const {
  Forward f;
  const Eigen::VectorXd pooled = steps_ ? Eigen::VectorXd(sum_ / steps_) : sum_;
  f.logits = m_.decoder.weight * pooled + m_.decoder.bias;
  const Eigen::VectorXd e = (f.logits.array() - f.logits.maxCoeff()).exp();
  f.probabilities = e / e.sum();
  f.probabilities.maxCoeff(&f.label);
  return f;
}

namespace {

class SoftwareStream final : public KernelStream {
 public:
  explicit SoftwareStream(std::vector<kernel::CompiledKernel> c) : c_(std::move(c)) {
    for (const auto& k : c_) x_.emplace_back(k.kernel.a_bar.size(), 0.0);
  }
  Result<std::vector<Eigen::VectorXd>> push(const std::vector<Eigen::VectorXd>& z) override {
    std::vector<Eigen::VectorXd> out;
    for (size_t k = 0; k < c_.size(); ++k) {
      const kernel::DiscreteKernel& d = c_[k].kernel;
      Eigen::VectorXd y(z[k].size());
      for (Eigen::Index t = 0; t < z[k].size(); ++t) {
        double acc = 0;
        for (size_t j = 0; j < x_[k].size(); ++j) {
          x_[k][j] = d.a_bar[j] * x_[k][j] + z[k](t);
          acc += (d.c_bar[j] * x_[k][j]).real();
        }
        y(t) = 2 * acc + d.d * z[k](t);
      }
      out.push_back(std::move(y));
    }
    return out;
  }
  Result<std::vector<Eigen::VectorXd>> finish() override {
    return std::vector<Eigen::VectorXd>(c_.size(), Eigen::VectorXd());
  }

 private:
  std::vector<kernel::CompiledKernel> c_;
  std::vector<std::vector<kernel::cd>> x_;
};

// The loop programs of a set of placed kernels, loaded on the board.
struct PreparedLoop {
  std::vector<kernel::LoopPlan> plans;      // per kernel
  std::vector<wire::LoopProgram> programs;  // per program, arrays increasing
  std::vector<size_t> order;                // order[j] = the kernel program j runs
  uint16_t max_block = 0;
};

// `load`: send the programs to the board (LOOP_LOAD); the emulation only plans them.
Result<std::shared_ptr<const PreparedLoop>> prepare_loop(Board& board,
                                                         const std::vector<PlacedKernel>& kernels,
                                                         bool load = true) {
  auto p = std::make_shared<PreparedLoop>();
  p->order.resize(kernels.size());
  for (size_t i = 0; i < p->order.size(); ++i) p->order[i] = i;
  std::sort(p->order.begin(), p->order.end(),
            [&](size_t a, size_t b) { return kernels[a].array < kernels[b].array; });
  p->plans.resize(kernels.size());
  for (size_t i : p->order) {
    const PlacedKernel& k = kernels[i];
    kernel::LoopPlanOptions options;
    options.u_max = k.u_max;
    options.fix_devices = k.fix_devices;
    options.state_max = k.state_max;
    options.state_range = k.state_range;
    options.input_max = k.input_max;
    auto plan = kernel::plan_loop(k.compiled, k.placement, k.g_uS, k.array, board.info(), options);
    if (!plan) return std::unexpected(plan.error());
    p->plans[i] = *plan;
    p->programs.push_back(plan->program);
  }
  if (load) {
    auto max_block = board.ensure_loop_loaded(p->programs);
    if (!max_block) return std::unexpected(max_block.error());
    p->max_block = *max_block;
  }
  return std::shared_ptr<const PreparedLoop>(std::move(p));
}

// The input codes of a chunk, step-major and program-major within a step (LOOP_RUN's order).
std::vector<int16_t> loop_input_codes(const PreparedLoop& loop,
                                      const std::vector<Eigen::VectorXd>& z) {
  const size_t n = loop.programs.size();
  const auto steps = static_cast<size_t>(z.front().size());
  std::vector<int16_t> codes(steps * n);
  for (size_t j = 0; j < n; ++j) {
    const auto in = kernel::input_codes(loop.plans[loop.order[j]], z[loop.order[j]]);
    for (size_t t = 0; t < steps; ++t) codes[t * n + j] = in[t];
  }
  return codes;
}

// Output codes -> kernel outputs, for the board's loop and the emulation alike (so the same
// codes give the same numbers). The outputs of a step belong to the step before it (eq. 7's
// lag): the very first one of a run is dropped, and each later one is completed with the input
// of its own step (for D).
class LagAlignedOutputs {
 public:
  explicit LagAlignedOutputs(const PreparedLoop& loop) : loop_(loop) {}
  // `outputs`: steps x programs codes of a chunk whose inputs were `z`.
  std::vector<Eigen::VectorXd> convert(const std::vector<int32_t>& outputs,
                                       const std::vector<Eigen::VectorXd>& z) {
    const size_t n = loop_.programs.size();
    const auto steps = static_cast<size_t>(z.front().size());
    std::vector<Eigen::VectorXd> done(n);
    const size_t skip = first_ ? 1 : 0;
    first_ = false;
    for (size_t j = 0; j < n; ++j) {
      const size_t kj = loop_.order[j];
      const kernel::LoopPlan& plan = loop_.plans[kj];
      Eigen::VectorXd y(static_cast<Eigen::Index>(steps - skip));
      for (size_t t = skip; t < steps; ++t) {
        const double u_prev = t == 0 ? prev_z_[kj] : z[kj](static_cast<Eigen::Index>(t - 1));
        y(static_cast<Eigen::Index>(t - skip)) =
            plan.y_scale * outputs[t * n + j] + plan.d * u_prev;
      }
      done[kj] = std::move(y);
    }
    prev_z_.resize(n);
    for (size_t k = 0; k < n; ++k) prev_z_[k] = z[k](z[k].size() - 1);
    return done;
  }

 private:
  const PreparedLoop& loop_;
  bool first_ = true;
  std::vector<double> prev_z_;
};

class HardwareStream final : public KernelStream {
 public:
  HardwareStream(Board& b, std::shared_ptr<const PreparedLoop> loop, uint32_t tag)
      : b_(b),
        loop_(std::move(loop)),
        tag_(tag),
        switched_(b.info().has_loop_resume),
        align_(*loop_) {}
  bool holds_board() const override { return open_; }
  ~HardwareStream() override {
    // A stream dropped mid-utterance (client gone, error) closes its run so the board serves
    // others at once; the result of the abort itself has nobody to go to.
    if (open_) {
      if (auto a = b_.abort(); !a) return;
    }
  }
  Result<std::vector<Eigen::VectorXd>> push(const std::vector<Eigen::VectorXd>& z) override {
    return run(z, false);
  }
  Result<std::vector<Eigen::VectorXd>> finish() override {
    std::vector<Eigen::VectorXd> zero(loop_->programs.size(), Eigen::VectorXd::Zero(1));
    return run(zero, true);  // one step of zero input flushes the last output (eq. 7's lag)
  }

 private:
  Result<std::vector<Eigen::VectorXd>> run(const std::vector<Eigen::VectorXd>& z, bool last) {
    const size_t n = loop_->programs.size();
    const auto steps = static_cast<size_t>(z.front().size());
    const std::vector<int16_t> codes = loop_input_codes(*loop_, z);
    std::vector<int32_t> outputs;
    if (switched_ || !open_) {
      // Each chunk is a run of its own that resumes the state the last one left (and the
      // step count that keys the noise), so the board is free between chunks and the result
      // is the one long run's. Another stream may have loaded other programs meanwhile, or a
      // board restart erased them.
      auto loaded = b_.ensure_loop_loaded(loop_->programs);
      if (!loaded) return std::unexpected(loaded.error());
      block_ = 0;
    }
    for (size_t start = 0; start < steps; start += loop_->max_block) {
      const size_t k = std::min<size_t>(loop_->max_block, steps - start);
      const bool final_block = start + k == steps;
      wire::LoopRunRequest q;
      q.flags = static_cast<uint8_t>((open_ ? 0 : wire::kLoopFirst) |
                                     ((last || switched_) && final_block ? wire::kLoopLast : 0));
      if (switched_) {
        if (!open_ && resumed_) q.flags |= wire::kLoopResume;
        if (final_block) q.flags |= wire::kLoopSnapshot;
        q.start_step = next_step_;
        q.state = state_;
      }
      q.n_steps = static_cast<uint16_t>(k);
      q.block_index = block_;
      q.noise_tag = tag_;
      q.inputs.assign(codes.begin() + static_cast<ptrdiff_t>(start * n),
                      codes.begin() + static_cast<ptrdiff_t>((start + k) * n));
      auto r = b_.loop_run(q);
      if (!r) return std::unexpected(r.error());
      open_ = r->run_open != 0;
      ++block_;
      if (q.flags & wire::kLoopSnapshot) {
        state_ = std::move(r->state);
        next_step_ = r->next_step;
        resumed_ = true;
      }
      outputs.insert(outputs.end(), r->outputs.begin(), r->outputs.end());
    }
    return align_.convert(outputs, z);
  }

  Board& b_;
  std::shared_ptr<const PreparedLoop> loop_;
  uint32_t tag_;
  uint32_t block_ = 0;
  bool open_ = false;
  // Switched runs (capability bit 2): the state and step count between chunks.
  bool switched_ = false, resumed_ = false;
  std::vector<int16_t> state_;
  uint32_t next_step_ = 0;
  LagAlignedOutputs align_;
};

// The board-exact emulation: the same programs, host-stepped (xbar::HostSteppedRun).
class EmulatedStream final : public KernelStream {
 public:
  EmulatedStream(Board& b, std::shared_ptr<const PreparedLoop> loop, uint32_t tag)
      : b_(b), loop_(std::move(loop)), run_(loop_->programs, tag), align_(*loop_) {}
  Result<std::vector<Eigen::VectorXd>> push(const std::vector<Eigen::VectorXd>& z) override {
    return run(z);
  }
  Result<std::vector<Eigen::VectorXd>> finish() override {
    return run(std::vector<Eigen::VectorXd>(loop_->programs.size(), Eigen::VectorXd::Zero(1)));
  }

 private:
  Result<std::vector<Eigen::VectorXd>> run(const std::vector<Eigen::VectorXd>& z) {
    const std::vector<int16_t> codes = loop_input_codes(*loop_, z);
    std::vector<int32_t> outputs;
    auto r = run_.step(b_, codes, static_cast<size_t>(z.front().size()), outputs);
    // A VMM is a read: after a board restart the call is repeated once from where it began
    // (the conductances outlive the restart; HostSteppedRun::step is all or nothing).
    if (!r && r.error().code == ErrorCode::kRestarted) {
      r = run_.step(b_, codes, static_cast<size_t>(z.front().size()), outputs);
    }
    if (!r) return std::unexpected(r.error());
    return align_.convert(outputs, z);
  }

  Board& b_;
  std::shared_ptr<const PreparedLoop> loop_;
  HostSteppedRun run_;
  LagAlignedOutputs align_;
};

}  // namespace

std::unique_ptr<KernelStream> software_stream(const std::vector<kernel::CompiledKernel>& compiled) {
  return std::make_unique<SoftwareStream>(compiled);
}

Result<std::unique_ptr<KernelStream>> hardware_stream(Board& board,
                                                      const std::vector<PlacedKernel>& kernels,
                                                      uint32_t noise_tag) {
  // A board without an on-board loop (the A0) runs the same programs host-stepped: one VMM
  // per step and array on the board, the step's arithmetic on the host.
  if (!board.info().has_loop) return emulated_stream(board, kernels, noise_tag);
  auto loop = prepare_loop(board, kernels);
  if (!loop) return std::unexpected(loop.error());
  return std::unique_ptr<KernelStream>(std::make_unique<HardwareStream>(board, *loop, noise_tag));
}

Result<std::unique_ptr<KernelStream>> emulated_stream(Board& board,
                                                      const std::vector<PlacedKernel>& kernels,
                                                      uint32_t noise_tag) {
  auto loop = prepare_loop(board, kernels, /*load=*/false);
  if (!loop) return std::unexpected(loop.error());
  return std::unique_ptr<KernelStream>(std::make_unique<EmulatedStream>(board, *loop, noise_tag));
}

namespace {

// Each call is one run of its own (noise tags 0, 1, ...): the whole sequence in, then the
// flush step, exactly what a stream of one chunk does.
template <class Stream>
KernelFn whole_clip_kernels(Board& board, std::shared_ptr<const PreparedLoop> loop,
                            double* board_ms) {
  auto run_counter = std::make_shared<uint32_t>(0);
  return KernelFn([&board, loop = std::move(loop), run_counter,
                   board_ms](const std::vector<Eigen::VectorXd>& z)
                      -> Result<std::vector<Eigen::VectorXd>> {
    const auto t0 = std::chrono::steady_clock::now();
    const uint32_t tag = (*run_counter)++;
    auto once = [&]()
        -> std::pair<Result<std::vector<Eigen::VectorXd>>, Result<std::vector<Eigen::VectorXd>>> {
      Stream stream(board, loop, tag);
      auto head = stream.push(z);
      auto tail = head ? stream.finish() : decltype(head)(std::unexpected(head.error()));
      return {std::move(head), std::move(tail)};
    };
    auto [head, tail] = once();
    // A board restart mid-run lost the run's state; the run is a function of its inputs and
    // noise tag alone, so it is run again, once, from the start (the programs are reloaded).
    const auto restarted = [](const auto& r) {
      return !r && r.error().code == ErrorCode::kRestarted;
    };
    if (restarted(head) || restarted(tail)) std::tie(head, tail) = once();
    if (board_ms) {
      *board_ms +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    if (!head) return head;
    if (!tail) return tail;
    for (size_t k = 0; k < head->size(); ++k) {
      Eigen::VectorXd& y = (*head)[k];
      const Eigen::VectorXd& rest = (*tail)[k];
      y.conservativeResize(y.size() + rest.size());
      y.tail(rest.size()) = rest;
    }
    return head;
  });
}

}  // namespace

Result<KernelFn> hardware_kernels(Board& board, const std::vector<PlacedKernel>& kernels,
                                  double* board_ms) {
  if (!board.info().has_loop) return emulated_kernels(board, kernels, board_ms);  // as above
  auto loop = prepare_loop(board, kernels);
  if (!loop) return std::unexpected(loop.error());
  return whole_clip_kernels<HardwareStream>(board, *loop, board_ms);
}

Result<KernelFn> emulated_kernels(Board& board, const std::vector<PlacedKernel>& kernels,
                                  double* board_ms) {
  auto loop = prepare_loop(board, kernels, /*load=*/false);
  if (!loop) return std::unexpected(loop.error());
  return whole_clip_kernels<EmulatedStream>(board, *loop, board_ms);
}

Result<Fidelity> measure_fidelity(Board& board, const ModelSpec& m,
                                  const std::vector<PlacedKernel>& kernels,
                                  const std::vector<Eigen::VectorXd>& clips) {
  if (clips.empty()) return make_error(ErrorCode::kInvalidArgument, "fidelity: no clips");
  if (static_cast<int>(kernels.size()) != m.width()) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("fidelity: {} placed kernels for a model of {}", kernels.size(), m.width()));
  }
  // Every clip whole steps before the board runs any.
  if (auto c = check_clips(m, clips, "fidelity"); !c) return std::unexpected(c.error());
  // The plans alone (what the loop represents), then the board's runs.
  auto plans = prepare_loop(board, kernels, /*load=*/false);
  if (!plans) return std::unexpected(plans.error());
  Fidelity f;
  f.clips = static_cast<int>(clips.size());
  auto hw = hardware_kernels(board, kernels, &f.board_ms);
  if (!hw) return std::unexpected(hw.error());
  std::vector<kernel::CompiledKernel> compiled;
  compiled.reserve(kernels.size());
  for (const PlacedKernel& k : kernels) compiled.push_back(k.compiled);
  const KernelFn sw = software_kernels(compiled);
  int agree = 0;
  double se = 0, ss = 0;
  std::vector<double> clipped(kernels.size(), 0), updates(kernels.size(), 0);
  for (const Eigen::VectorXd& u : clips) {
    auto fh = forward(m, u, *hw);
    if (!fh) return std::unexpected(fh.error());
    auto fs = forward(m, u, sw);
    if (!fs) return std::unexpected(fs.error());
    agree += fh->label == fs->label;
    se += (fh->logits - fs->logits).squaredNorm();
    ss += fs->logits.squaredNorm();
    const std::vector<Eigen::VectorXd> zs = encode(m, u);
    for (size_t k = 0; k < kernels.size(); ++k) {
      const kernel::CompiledKernel& ck = kernels[k].compiled;
      const kernel::LoopPlan& plan = (*plans)->plans[k];
      const double limit = plan.x_scale * plan.program.clamp;
      std::vector<kernel::cd> x(static_cast<size_t>(ck.n), 0.0);
      for (const double z : zs[k]) {
        for (size_t j = 0; j < x.size(); ++j) {
          x[j] = ck.kernel.a_bar[j] * x[j] + z;
          const kernel::cd held = ck.mode_gain[j] * x[j];
          clipped[k] += (std::abs(held.real()) > limit) + (std::abs(held.imag()) > limit);
          updates[k] += 2;
        }
      }
    }
  }
  f.label_agreement = static_cast<double>(agree) / static_cast<double>(clips.size());
  f.logit_nrmse = ss > 0 ? std::sqrt(se / ss) : std::sqrt(se);
  for (size_t k = 0; k < kernels.size(); ++k) {
    f.state_clip_rate.push_back(updates[k] > 0 ? clipped[k] / updates[k] : 0.0);
  }
  return f;
}

}  // namespace xbar::model
