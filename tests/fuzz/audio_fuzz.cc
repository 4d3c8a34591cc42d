// The audio front end (compute/audio): Infer's path for InferRequest.audio, a sound file's bytes
// from the client: decode_audio (libsndfile over memory) then preprocess (resampling, block
// averaging, normalising, padding); plus parse_hd_name.
//
// Input: u8 options, u8 rate selector, u16 downsample, u16 target_length, then the file's
// bytes. options bit 0: normalise; bit 1: the tail is an HD file name for parse_hd_name instead;
// bit 2: the log-mel front end (issue 18) with 1 + (options >> 3) bands, the smallest power-of-
// two frame that covers the hop, 0..rate/2 Hz, 60 dB.
//
// Properties:
//  - decode_audio: an accepted clip is 1..60 s of finite samples at a rate > 0; written back as
//    a 32-bit float WAV (the harness's own writer) it decodes to the same rate and samples, bit
//    for bit;
//  - preprocess: with valid options it accepts every decoded clip and returns exactly
//    target_length steps, or ceil(n' / downsample) with n' = round(n * rate ratio) after
//    resampling; all finite; normalised, the largest |x| is exactly 1 (or the clip is all zero)
//    unless target_length cut the sequence (then <= 1); without resampling or normalising, step k
//    is the mean of its block (bit for bit); with log-mel, steps x bands values in [0, 1], and
//    without resampling a StreamingFrontEnd fed the samples in two chunks gives the same steps
//    (before padding), bit for bit;
//  - parse_hd_name: an accepted name, written back in the canonical form, parses the same.
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "fuzz_util.h"
#include "xbar/audio/audio.h"
#include "xbar/audio/front_end.h"

using namespace xbar;
using xbar::fuzz::Input;

namespace {

// A canonical 32-bit float mono WAV (WAVE_FORMAT_IEEE_FLOAT with a fact chunk).
std::vector<uint8_t> float_wav(const audio::Audio& a) {
  std::vector<uint8_t> out;
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  auto u16 = [&](uint16_t v) {
    out.push_back(static_cast<uint8_t>(v));
    out.push_back(static_cast<uint8_t>(v >> 8));
  };
  auto tag = [&](const char* t) { out.insert(out.end(), t, t + 4); };
  const auto n = static_cast<uint32_t>(a.samples.size());
  const auto rate = static_cast<uint32_t>(a.sample_rate_hz);
  tag("RIFF");
  u32(4 + 8 + 18 + 8 + 4 + 8 + 4 * n);
  tag("WAVE");
  tag("fmt ");
  u32(18);
  u16(3);  // IEEE float
  u16(1);
  u32(rate);
  u32(rate * 4);
  u16(4);
  u16(32);
  u16(0);
  tag("fact");
  u32(4);
  u32(n);
  tag("data");
  u32(4 * n);
  const auto* p = reinterpret_cast<const uint8_t*>(a.samples.data());
  out.insert(out.end(), p, p + 4 * size_t{n});
  return out;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void check_decoded(const audio::Audio& a) {
  FUZZ_CHECK(a.sample_rate_hz > 0, fmt::format("rate {}", a.sample_rate_hz));
  FUZZ_CHECK(!a.samples.empty(), "an empty clip was accepted");
  FUZZ_CHECK(static_cast<double>(a.samples.size()) <= 60.0 * a.sample_rate_hz,
             fmt::format("{} samples at {} Hz: over 60 s", a.samples.size(), a.sample_rate_hz));
  for (float v : a.samples) FUZZ_CHECK(std::isfinite(v), "a non-finite sample was accepted");
  // Round trip through a float WAV: the decoder must give back exactly what it was given.
  const auto wav = float_wav(a);
  auto b = audio::decode_audio(wav);
  FUZZ_CHECK(b.has_value(), "the clip written as float WAV does not decode: " + b.error().message);
  FUZZ_CHECK(b->sample_rate_hz == a.sample_rate_hz && b->samples.size() == a.samples.size(),
             fmt::format("float WAV round trip: {} samples at {} Hz -> {} at {} Hz",
                         a.samples.size(), a.sample_rate_hz, b->samples.size(), b->sample_rate_hz));
  for (size_t i = 0; i < a.samples.size(); ++i) {
    FUZZ_CHECK(
        same_bits(a.samples[i], b->samples[i]),
        fmt::format("float WAV round trip: sample {} {} -> {}", i, a.samples[i], b->samples[i]));
  }
}

void check_preprocess(const audio::Audio& a, const audio::Preprocessing& pp) {
  auto y = audio::preprocess(a, pp);
  if (!y) {
    // Valid options and a decoded clip: only a rate ratio beyond libsamplerate's 1:256 or
    // samples that overflow in its filter (near the float limit) are refused.
    const double ratio = static_cast<double>(pp.sample_rate_hz) / a.sample_rate_hz;
    FUZZ_CHECK(ratio > 256 || ratio < 1.0 / 256 ||
                   y.error().message.find("overflowed") != std::string::npos,
               fmt::format("preprocess refused a decoded clip ({} Hz -> {} Hz): {}",
                           a.sample_rate_hz, pp.sample_rate_hz, y.error().message));
    return;
  }
  size_t n = a.samples.size();
  if (a.sample_rate_hz != pp.sample_rate_hz) {
    const double ratio = static_cast<double>(pp.sample_rate_hz) / a.sample_rate_hz;
    n = static_cast<size_t>(std::llround(static_cast<double>(n) * ratio));
  }
  const size_t d = static_cast<size_t>(pp.downsample);
  const size_t want =
      pp.target_length > 0 ? static_cast<size_t>(pp.target_length) : (n + d - 1) / d;
  if (pp.log_mel) {
    const auto bands = static_cast<size_t>(pp.log_mel->bands);
    FUZZ_CHECK(y->size() == want * bands,
               fmt::format("preprocess: {} values, expected {} steps x {} bands ({} samples, /{})",
                           y->size(), want, bands, n, d));
    for (float v : *y) FUZZ_CHECK(v >= 0.0f && v <= 1.0f, fmt::format("log-mel feature {}", v));
    if (a.sample_rate_hz == pp.sample_rate_hz) {
      auto fe = audio::StreamingFrontEnd::create(pp);
      FUZZ_CHECK(fe.has_value(), "StreamingFrontEnd refused valid options");
      const std::span<const float> x(a.samples);
      auto head = fe->push(x.first(x.size() / 2));
      auto rest = fe->push(x.subspan(x.size() / 2));
      FUZZ_CHECK(head && rest, "StreamingFrontEnd refused finite samples");
      std::vector<float> streamed = std::move(*head);
      streamed.insert(streamed.end(), rest->begin(), rest->end());
      const std::vector<float> last = fe->finish();
      streamed.insert(streamed.end(), last.begin(), last.end());
      const size_t common = std::min(streamed.size(), y->size());
      FUZZ_CHECK(streamed.size() == (n + d - 1) / d * bands &&
                     std::memcmp(streamed.data(), y->data(), common * sizeof(float)) == 0,
                 "a stream in two chunks differs from the whole clip's steps");
    }
    return;
  }
  FUZZ_CHECK(y->size() == want, fmt::format("preprocess: {} steps, expected {} ({} samples, /{})",
                                            y->size(), want, n, d));
  float peak = 0;
  for (float v : *y) {
    FUZZ_CHECK(std::isfinite(v), "preprocess: a non-finite step");
    peak = std::max(peak, std::abs(v));
  }
  if (pp.normalise) {  // normalised before truncation: a cut may lose the peak
    const bool cut = pp.target_length > 0 && y->size() < (n + d - 1) / d;
    FUZZ_CHECK(cut ? peak <= 1.0f : (peak == 0 || peak == 1.0f),
               fmt::format("normalised peak {}{}", peak, cut ? " after truncation" : ""));
  }
  if (!pp.normalise && a.sample_rate_hz == pp.sample_rate_hz) {
    const size_t steps = std::min(y->size(), (n + d - 1) / d);
    for (size_t k = 0; k < steps; ++k) {
      const size_t lo = k * d, hi = std::min(lo + d, n);
      double sum = 0;
      for (size_t i = lo; i < hi; ++i) sum += a.samples[i];
      const float mean = static_cast<float>(sum / static_cast<double>(hi - lo));
      FUZZ_CHECK(same_bits((*y)[k], mean),
                 fmt::format("step {}: {} is not its block's mean {}", k, (*y)[k], mean));
    }
  }
}

void check_hd_name(std::string_view name) {
  auto n = audio::parse_hd_name(name);
  if (!n) return;
  FUZZ_CHECK(
      n->digit >= 0 && n->digit <= 9 && n->speaker >= 0 && n->trial >= 0 && !n->language.empty(),
      "parse_hd_name: fields out of range");
  const std::string canonical = fmt::format("lang-{}_speaker-{}_trial-{}_digit-{}.flac",
                                            n->language, n->speaker, n->trial, n->digit);
  auto m = audio::parse_hd_name(canonical);
  FUZZ_CHECK(m && m->language == n->language && m->speaker == n->speaker && m->trial == n->trial &&
                 m->digit == n->digit,
             "parse_hd_name: the canonical form parses differently: " + canonical);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int kRates[] = {1000, 8000, 16000, 22050, 44100, 48000, 96000, 384000};
  Input in(data, size);
  const uint8_t options = in.get<uint8_t>();
  const uint8_t rate_sel = in.get<uint8_t>();
  const uint16_t downsample = in.get<uint16_t>();
  const uint16_t target = in.get<uint16_t>();
  const auto file = in.rest();
  if (options & 2) {
    check_hd_name(xbar::fuzz::as_text(file.data(), file.size()));
    return 0;
  }
  audio::Preprocessing pp;
  pp.normalise = options & 1;
  // Mostly the usual rates; selectors >= 8 give any rate in 1000..384000.
  pp.sample_rate_hz = rate_sel < 8 ? kRates[rate_sel] : 1000 + (rate_sel * 1493) % 383001;
  pp.downsample = 1 + downsample % 4096;
  pp.target_length = target % 2 ? 0 : target % 4096;
  if (options & 4) {
    int fft = 16;
    while (fft < pp.downsample) fft *= 2;
    pp.log_mel = audio::LogMel{1 + (options >> 3), fft, 0, pp.sample_rate_hz / 2.0, 60};
  }

  auto a = audio::decode_audio(file);
  if (!a) {
    FUZZ_CHECK(a.error().code == ErrorCode::kInvalidArgument && !a.error().message.empty(),
               "decode_audio: " + a.error().message);
    return 0;
  }
  check_decoded(*a);
  check_preprocess(*a, pp);
  return 0;
}
