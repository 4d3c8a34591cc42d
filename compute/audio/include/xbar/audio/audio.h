// The audio front end: sound files -> mono float samples -> the S4D model's input sequence
// (paper §III: peak-normalised clips downsampled by 64, 48 kHz -> 871 steps), plus the
// Heidelberg Digits (HD) file-name convention used to build the zero/one task.
// Decoding is libsndfile (WAV, FLAC, OGG, ... whatever it reads), resampling libsamplerate.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xbar/base/error.h"

namespace xbar::audio {

/// Mono audio. Samples of integer-PCM files are scaled to [-1, 1) by libsndfile.
struct Audio {
  std::vector<float> samples;
  int sample_rate_hz = 0;
};

struct AudioLimits {
  double max_seconds = 60.0;  // longer clips are refused before they are read
  // The rates a clip may have (docs/models.md); others are refused before any sample is read.
  int min_rate_hz = kMinRateHz;
  int max_rate_hz = kMaxRateHz;
  static constexpr int kMinRateHz = 1000;
  static constexpr int kMaxRateHz = 384000;
};

/// Decodes a sound file. Any channel count (mixed down to mono by averaging the channels) and
/// any sample rate within the limits (1 000..384 000 Hz by default). Errors (kInvalidArgument
/// unless noted; file errors end with the path):
///  - no such file: kNotFound
///  - empty or unreadable data: "audio: not a sound file libsndfile can read: <sf_strerror>"
///  - fewer frames than the header announces (truncated / corrupt data)
///  - 0 frames: "audio: the clip is empty"
///  - too long: "audio: 600.0 s clip: allowed up to 60 s"
///  - NaN or infinite samples (float files)
///  - limits.max_seconds not finite and > 0
Result<Audio> load_audio_file(const std::string& path, const AudioLimits& limits = {});

/// As load_audio_file, from a file's bytes in memory (libsndfile's sf_open_virtual).
Result<Audio> decode_audio(std::span<const uint8_t> bytes, const AudioLimits& limits = {});

/// Resamples to `rate_hz` with libsamplerate (SRC_SINC_MEDIUM_QUALITY). The result has
/// round(n * rate_hz / in.sample_rate_hz) samples. Same rate: `in` is returned unchanged.
/// Errors: rates <= 0, a ratio libsamplerate refuses (beyond 1:256 either way), or samples so
/// close to the float limit that the filter's overshoot makes them infinite.
Result<Audio> resample(const Audio& in, int rate_hz);

/// The log-mel front end (xbar.v1.LogMel): band energies instead of the block average. The
/// arithmetic is models/frontend.py's (its docstring, steps 1-9), reproduced to float32
/// rounding; StreamingFrontEnd (front_end.h) computes it.
struct LogMel {
  int bands = 16;         // 1..64 mel bands: the channels of a step
  int fft_size = 256;     // a power of two, 16..4096, >= Preprocessing::downsample (the hop)
  double low_hz = 125;    // finite, >= 0, < high_hz: the lowest band's lower edge
  double high_hz = 3800;  // finite, <= sample_rate_hz / 2: the highest band's upper edge
  double range_db = 60;   // finite, (0, 200]: a band this far below the reference is 0
  bool operator==(const LogMel&) const = default;

  static constexpr int kMaxBands = 64;
  static constexpr int kMinFftSize = 16;
  static constexpr int kMaxFftSize = 4096;
  static constexpr double kMaxRangeDb = 200;
};

/// The model's input preprocessing. Steps, in this order:
///  1. resample to `sample_rate_hz` if the audio is at another rate;
///  2. without log_mel, downsample by block averaging: output step k is the mean of input
///     samples [k*downsample, (k+1)*downsample); the last, partial block is the mean of the
///     samples it has, so n samples give ceil(n / downsample) steps (48 kHz, 55728 samples ->
///     871). The box filter is the anti-alias low-pass (first null at sample_rate_hz /
///     downsample);
///     with log_mel, each step is `bands` band energies in [0, 1] of a frame that ends with the
///     step's `downsample` samples (the hop), the partial last hop zero-padded: again
///     ceil(n / downsample) steps (models/frontend.py, steps 1-8);
///  3. normalise (if `normalise`): without log_mel, divide by the largest |x| of the
///     downsampled sequence, so its peak is exactly 1 (an all-zero clip stays 0); with log_mel,
///     levels are taken relative to the loudest band so far (a running maximum from -80 dB,
///     causal), instead of relative to full scale;
///  4. if target_length > 0: truncate to, or pad at the end with zero steps to, target_length
///     steps.
/// The result is steps x channels(p) values, step-major (all channels of step 0 first).
struct Preprocessing {
  int sample_rate_hz = 48000;  // 1000..384000
  int downsample = 64;         // 1..4096; 1 keeps every sample; the hop with log_mel
  int target_length = 0;       // 0..100000; 0 keeps the natural length
  bool normalise = true;
  std::optional<LogMel> log_mel;  // unset: the block average (one channel)
  bool operator==(const Preprocessing&) const = default;
};

/// The values per step of `p`'s output: log_mel->bands with the log-mel front end, else 1.
int channels(const Preprocessing& p);

/// Checks every field of `p` against the ranges above; kInvalidArgument naming the field, the
/// value and the allowed range ("preprocessing.log_mel.fft_size = 100: allowed a power of two,
/// 16..4096").
Result<void> validate(const Preprocessing& p);

/// Validates `p` (errors as validate(), prefixed "audio: ") and `in` (rate > 0, at least one
/// sample, all samples finite), then runs the steps above.
Result<std::vector<float>> preprocess(const Audio& in, const Preprocessing& p);

/// A Heidelberg Digits file name, "lang-english_speaker-03_trial-4_digit-0.flac".
struct HdName {
  std::string language;  // "english", "german"
  int speaker = 0;
  int trial = 0;
  int digit = 0;  // 0..9 within the language
};

/// Parses an HD file name (a leading directory is ignored). The extension must be .flac, .wav
/// or .ogg; the language lower-case letters; speaker, trial and digit decimal numbers (digit
/// 0..9). nullopt for anything else.
std::optional<HdName> parse_hd_name(std::string_view file_name);

struct HdClip {
  std::string path;
  HdName name;
  int label = 0;  // 0: English "zero" (digit 0), 1: English "one" (digit 1)
};

/// The English digit-0 and digit-1 clips under `dir` (searched recursively, files whose names
/// parse_hd_name accepts), sorted by file name (then path). Files are listed, not decoded.
/// Errors: kNotFound if `dir` does not exist, kInvalidArgument if it is not a directory,
/// kPermissionDenied / kInternal if it cannot be walked.
Result<std::vector<HdClip>> list_hd_zero_one(const std::string& dir);

}  // namespace xbar::audio
