#include "xbar/audio/front_end.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <numbers>
#include <optional>
#include <unsupported/Eigen/FFT>
#include <utility>

namespace xbar::audio {

namespace {

// models/frontend.py's constants: the running reference starts here (a clip that never gets
// louder than -80 dB is measured against -80 dB, not against its own noise), and the power
// floor keeps log10 finite on silence (-100 dB).
constexpr double kRefFloorDb = -80.0;
constexpr double kEpsPower = 1e-10;

double mel(double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); }
double inv_mel(double m) { return 700.0 * (std::pow(10.0, m / 2595.0) - 1.0); }

// One band's triangular weights, only where they are non-zero (bins first .. first + size - 1):
// a band covers a few bins of the spectrum, and zero weights add nothing to its energy.
struct Band {
  size_t first = 0;
  std::vector<double> weight;
};

// frontend.py's filterbank(): edges equally spaced in mel (numpy's linspace: start + i * step,
// the last edge exactly high_hz), bin k at k * rate / fft_size Hz.
std::vector<Band> filterbank(double rate_hz, int fft_size, const LogMel& m) {
  const int n_edges = m.bands + 2;
  const double lo = mel(m.low_hz), hi = mel(m.high_hz);
  const double step = (hi - lo) / (n_edges - 1);
  std::vector<double> edges(static_cast<size_t>(n_edges));
  for (int i = 0; i < n_edges; ++i) edges[static_cast<size_t>(i)] = inv_mel(lo + i * step);
  edges.back() = inv_mel(hi);
  const size_t bins = static_cast<size_t>(fft_size) / 2 + 1;
  std::vector<Band> out(static_cast<size_t>(m.bands));
  for (size_t b = 0; b < out.size(); ++b) {
    const double l = edges[b], c = edges[b + 1], h = edges[b + 2];
    std::vector<double> w(bins);
    for (size_t k = 0; k < bins; ++k) {
      const double f = static_cast<double>(k) * rate_hz / fft_size;
      w[k] = std::max(0.0, std::min((f - l) / (c - l), (h - f) / (h - c)));
    }
    const auto nz = [](double v) { return v != 0.0; };
    const auto first = std::find_if(w.begin(), w.end(), nz);
    if (first == w.end()) continue;  // no bin inside the band: its energy is 0 (-100 dB)
    const auto last = std::find_if(w.rbegin(), w.rend(), nz).base();
    out[b].first = static_cast<size_t>(first - w.begin());
    out[b].weight.assign(first, last);
  }
  return out;
}

}  // namespace

struct StreamingFrontEnd::State {
  size_t hop = 0;
  size_t filled = 0;  // samples of the current step so far
  bool finished = false;
  int64_t steps = 0;

  // Block average: the running sum of the current block, in sample order from 0, as
  // preprocess() adds them (so the means are bit for bit its means).
  double sum = 0;

  // Log-mel.
  std::optional<LogMel> log_mel;
  bool normalise = false;
  double range_db = 0;
  size_t fft_size = 0;
  // The frame: the fft_size - hop samples before the current step, then its `filled` samples.
  std::vector<double> frame;
  std::vector<double> window;
  double window_power = 0;  // sum(w^2)
  std::vector<Band> bands;
  double reference_db = kRefFloorDb;
  Eigen::FFT<double> fft;
  std::vector<double> windowed;                // fft_size
  std::vector<std::complex<double>> spectrum;  // fft_size / 2 + 1
  std::vector<double> level;                   // bands: this step's levels, dB

  int channels() const { return log_mel ? log_mel->bands : 1; }

  // The step whose samples `frame` now ends with, appended to `out`; then the frame moves on
  // by one hop.
  void log_mel_step(std::vector<float>& out) {
    for (size_t i = 0; i < fft_size; ++i) windowed[i] = frame[i] * window[i];
    fft.fwd(spectrum.data(), windowed.data(), static_cast<Eigen::Index>(fft_size));
    double loudest = -std::numeric_limits<double>::infinity();
    for (size_t b = 0; b < bands.size(); ++b) {
      double energy = 0;
      const Band& band = bands[b];
      for (size_t j = 0; j < band.weight.size(); ++j) {
        const std::complex<double> x = spectrum[band.first + j];
        energy += band.weight[j] * ((x.real() * x.real() + x.imag() * x.imag()) / window_power);
      }
      level[b] = 10 * std::log10(energy + kEpsPower);
      loudest = std::max(loudest, level[b]);
    }
    // The loudest band so far (frontend.py step 7): causal, so no step waits for a later one.
    const double ref = normalise ? (reference_db = std::max(reference_db, loudest)) : 0.0;
    for (double l : level) {
      out.push_back(static_cast<float>(std::clamp(1.0 + (l - ref) / range_db, 0.0, 1.0)));
    }
    std::copy(frame.begin() + static_cast<ptrdiff_t>(hop), frame.end(), frame.begin());
  }

  void add(float x, std::vector<float>& out) {
    if (log_mel) {
      frame[fft_size - hop + filled] = x;
      if (++filled == hop) {
        log_mel_step(out);
        filled = 0;
        ++steps;
      }
      return;
    }
    sum += x;
    if (++filled == hop) {
      out.push_back(static_cast<float>(sum / static_cast<double>(hop)));
      sum = 0;
      filled = 0;
      ++steps;
    }
  }
};

Result<StreamingFrontEnd> StreamingFrontEnd::create(const Preprocessing& p) {
  if (auto ok = validate(p); !ok) return std::unexpected(ok.error());
  auto s = std::make_unique<State>();
  s->hop = static_cast<size_t>(p.downsample);
  if (p.log_mel) {
    const LogMel& m = *p.log_mel;
    s->log_mel = m;
    s->normalise = p.normalise;
    s->range_db = m.range_db;
    s->fft_size = static_cast<size_t>(m.fft_size);
    s->frame.assign(s->fft_size, 0.0);  // zeros before the clip's start (frontend.py step 2)
    s->window.resize(s->fft_size);
    for (size_t i = 0; i < s->fft_size; ++i) {
      // Periodic Hann, in frontend.py's order of operations.
      s->window[i] =
          0.5 - 0.5 * std::cos(2 * std::numbers::pi * static_cast<double>(i) / m.fft_size);
      s->window_power += s->window[i] * s->window[i];
    }
    s->bands = filterbank(p.sample_rate_hz, m.fft_size, m);
    s->windowed.assign(s->fft_size, 0.0);
    s->spectrum.resize(s->fft_size / 2 + 1);
    s->level.resize(s->bands.size());
    s->fft.SetFlag(Eigen::FFT<double>::HalfSpectrum);
    // Eigen's FFT builds its plan (twiddles) on the first transform of a size: once, here.
    s->fft.fwd(s->spectrum.data(), s->windowed.data(), static_cast<Eigen::Index>(s->fft_size));
  }
  return StreamingFrontEnd(std::move(s));
}

StreamingFrontEnd::StreamingFrontEnd(std::unique_ptr<State> s) : s_(std::move(s)) {}
StreamingFrontEnd::StreamingFrontEnd(StreamingFrontEnd&&) noexcept = default;
StreamingFrontEnd& StreamingFrontEnd::operator=(StreamingFrontEnd&&) noexcept = default;
StreamingFrontEnd::~StreamingFrontEnd() = default;

Result<std::vector<float>> StreamingFrontEnd::push(std::span<const float> samples) {
  if (s_->finished) {
    return make_error(ErrorCode::kFailedPrecondition, "front end: samples after the end");
  }
  // All checked before any is taken: a non-finite sample would stay in the frame (and the
  // running reference) for good.
  for (size_t i = 0; i < samples.size(); ++i) {
    if (!std::isfinite(samples[i])) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("samples[{}] = {}: not finite", i, samples[i]));
    }
  }
  std::vector<float> out;
  const size_t new_steps = (s_->filled + samples.size()) / s_->hop;
  out.reserve(new_steps * static_cast<size_t>(s_->channels()));
  for (float x : samples) s_->add(x, out);
  return out;
}

std::vector<float> StreamingFrontEnd::finish() {
  std::vector<float> out;
  if (s_->finished) return out;
  s_->finished = true;
  if (s_->filled == 0) return out;
  if (s_->log_mel) {
    // The partial hop zero-padded (frontend.py step 2).
    std::fill(s_->frame.begin() + static_cast<ptrdiff_t>(s_->fft_size - s_->hop + s_->filled),
              s_->frame.end(), 0.0);
    s_->log_mel_step(out);
  } else {
    out.push_back(static_cast<float>(s_->sum / static_cast<double>(s_->filled)));
  }
  s_->filled = 0;
  ++s_->steps;
  return out;
}

int StreamingFrontEnd::channels() const { return s_->channels(); }
int64_t StreamingFrontEnd::steps() const { return s_->steps; }

}  // namespace xbar::audio
