#include "xbar/audio/audio.h"

#include <fmt/format.h>
#include <samplerate.h>
#include <sndfile.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include "xbar/audio/front_end.h"

namespace xbar::audio {
namespace {

namespace fs = std::filesystem;

constexpr sf_count_t kChunkFrames = 8192;

// Closes the SNDFILE on every path out of decode().
struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

Result<void> check_limits(const AudioLimits& limits) {
  if (!std::isfinite(limits.max_seconds) || limits.max_seconds <= 0) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("audio: limits.max_seconds {}: must be finite and > 0", limits.max_seconds));
  }
  if (limits.min_rate_hz < 1 || limits.max_rate_hz < limits.min_rate_hz) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("audio: limits.min_rate_hz {}, max_rate_hz {}: need 1 <= min <= "
                                  "max",
                                  limits.min_rate_hz, limits.max_rate_hz));
  }
  return {};
}

// libsndfile refuses a WAV whose header says 0 Hz with "SF_INFO struct incomplete", which
// names nothing the sender can act on: the rate in a RIFF/WAVE 'fmt ' chunk, when there is one.
std::optional<uint32_t> wav_header_rate(std::span<const uint8_t> b) {
  auto u32 = [&](size_t at) {
    return uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 | uint32_t{b[at + 2]} << 16 |
           uint32_t{b[at + 3]} << 24;
  };
  if (b.size() < 12 || std::memcmp(b.data(), "RIFF", 4) != 0 ||
      std::memcmp(b.data() + 8, "WAVE", 4) != 0) {
    return std::nullopt;
  }
  for (size_t at = 12; at + 8 <= b.size();) {
    const uint32_t len = u32(at + 4);
    if (std::memcmp(b.data() + at, "fmt ", 4) == 0) {
      if (len < 8 || at + 16 > b.size()) return std::nullopt;
      return u32(at + 12);  // after the format tag (2 bytes) and the channel count (2 bytes)
    }
    if (len > b.size()) return std::nullopt;
    at += 8 + len + (len & 1);
  }
  return std::nullopt;
}

// Reads an opened file to the end, mixing the channels down to mono. `where` is appended to
// every message (" (file: path)" or "").
Result<Audio> decode(SNDFILE* sf, const SF_INFO& info, const AudioLimits& limits,
                     const std::string& where) {
  auto fail = [&](std::string message) {
    return make_error(ErrorCode::kInvalidArgument, std::move(message) + where);
  };
  if (info.samplerate < limits.min_rate_hz || info.samplerate > limits.max_rate_hz) {
    return fail(fmt::format("audio: sample rate {} Hz: allowed {}..{} Hz", info.samplerate,
                            limits.min_rate_hz, limits.max_rate_hz));
  }
  if (info.channels <= 0) return fail(fmt::format("audio: {} channels", info.channels));
  const double rate = info.samplerate;
  const double max_frames = limits.max_seconds * rate;
  // FLAC streams may leave the length open; libsndfile then reports 0 or SF_COUNT_MAX.
  const bool known_length = info.frames > 0 && info.frames != SF_COUNT_MAX;
  if (known_length && static_cast<double>(info.frames) > max_frames) {
    return fail(fmt::format("audio: {:.1f} s clip: allowed up to {:g} s",
                            static_cast<double>(info.frames) / rate, limits.max_seconds));
  }

  const int channels = info.channels;
  Audio out;
  out.sample_rate_hz = info.samplerate;
  if (known_length) out.samples.reserve(static_cast<size_t>(info.frames));
  std::vector<float> chunk(static_cast<size_t>(kChunkFrames) * channels);
  for (;;) {
    const sf_count_t got = sf_readf_float(sf, chunk.data(), kChunkFrames);
    if (got <= 0) break;
    for (sf_count_t f = 0; f < got; ++f) {
      const float* frame = chunk.data() + f * channels;
      double sum = 0;  // double: no overflow for large float samples
      for (int c = 0; c < channels; ++c) sum += frame[c];
      const double mono = sum / channels;
      if (!std::isfinite(mono)) {
        return fail(fmt::format("audio: sample {} is not finite ({})", out.samples.size(), mono));
      }
      out.samples.push_back(static_cast<float>(mono));
    }
    if (static_cast<double>(out.samples.size()) > max_frames) {
      return fail(fmt::format("audio: clip longer than {:.1f} s: allowed up to {:g} s",
                              static_cast<double>(out.samples.size()) / rate, limits.max_seconds));
    }
  }
  if (const int err = sf_error(sf); err != SF_ERR_NO_ERROR) {
    return fail(fmt::format("audio: corrupt data after {} frames: {}", out.samples.size(),
                            sf_error_number(err)));
  }
  if (known_length && static_cast<sf_count_t>(out.samples.size()) < info.frames) {
    return fail(
        fmt::format("audio: truncated or corrupt data: read {} of the {} frames the "
                    "header announces",
                    out.samples.size(), info.frames));
  }
  if (out.samples.empty()) return fail("audio: the clip is empty");
  return out;
}

Result<Audio> open_failed(const std::string& where) {
  // sf_open*() failed: the reason is in libsndfile's global error (sf_strerror(nullptr)).
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("audio: not a sound file libsndfile can read: {}{}",
                                sf_strerror(nullptr), where));
}

// sf_open_virtual over a read-only byte span.
struct MemoryFile {
  std::span<const uint8_t> bytes;
  sf_count_t pos = 0;

  static MemoryFile& self(void* user) { return *static_cast<MemoryFile*>(user); }
  static sf_count_t size(void* user) { return static_cast<sf_count_t>(self(user).bytes.size()); }
  static sf_count_t seek(sf_count_t offset, int whence, void* user) {
    MemoryFile& m = self(user);
    sf_count_t base = 0;
    switch (whence) {
      case SEEK_SET:
        base = 0;
        break;
      case SEEK_CUR:
        base = m.pos;
        break;
      case SEEK_END:
        base = size(user);
        break;
      default:
        return -1;
    }
    if (offset < -base) return -1;  // before the start
    m.pos = base + offset;          // past the end is allowed (reads there return 0)
    return m.pos;
  }
  static sf_count_t read(void* ptr, sf_count_t count, void* user) {
    MemoryFile& m = self(user);
    const sf_count_t avail = std::max<sf_count_t>(0, size(user) - m.pos);
    const sf_count_t n = std::clamp<sf_count_t>(count, 0, avail);
    if (n > 0) std::memcpy(ptr, m.bytes.data() + m.pos, static_cast<size_t>(n));
    m.pos += n;
    return n;
  }
  static sf_count_t write(const void*, sf_count_t, void*) { return 0; }
  static sf_count_t tell(void* user) { return self(user).pos; }
};

Result<void> check_rate(std::string_view field, int rate_hz) {
  if (rate_hz <= 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("audio: {} {}: must be > 0", field, rate_hz));
  }
  return {};
}

Result<void> check_range(std::string_view field, int value, int lo, int hi) {
  if (value < lo || value > hi) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("preprocessing.{} = {}: allowed {}..{}", field, value, lo, hi));
  }
  return {};
}

// `m` is p's log_mel; the rest of `p` says what it must fit (the hop, the Nyquist frequency).
Result<void> check_log_mel(const LogMel& m, const Preprocessing& p) {
  auto bad = [](std::string message) {
    return make_error(ErrorCode::kInvalidArgument, std::move(message));
  };
  if (auto ok = check_range("log_mel.bands", m.bands, 1, LogMel::kMaxBands); !ok) return ok;
  if (m.fft_size < LogMel::kMinFftSize || m.fft_size > LogMel::kMaxFftSize ||
      (m.fft_size & (m.fft_size - 1))) {
    return bad(fmt::format("preprocessing.log_mel.fft_size = {}: allowed a power of two, {}..{}",
                           m.fft_size, LogMel::kMinFftSize, LogMel::kMaxFftSize));
  }
  if (m.fft_size < p.downsample) {
    return bad(fmt::format(
        "preprocessing.log_mel.fft_size = {}: allowed >= preprocessing.downsample = {} (a frame "
        "covers its step's hop)",
        m.fft_size, p.downsample));
  }
  if (!(std::isfinite(m.low_hz) && m.low_hz >= 0)) {
    return bad(fmt::format("preprocessing.log_mel.low_hz = {}: allowed finite, >= 0", m.low_hz));
  }
  const double nyquist_hz = p.sample_rate_hz / 2.0;
  if (!(std::isfinite(m.high_hz) && m.high_hz > m.low_hz && m.high_hz <= nyquist_hz)) {
    return bad(
        fmt::format("preprocessing.log_mel.high_hz = {}: allowed finite, > low_hz = {} and <= "
                    "sample_rate_hz / 2 = {}",
                    m.high_hz, m.low_hz, nyquist_hz));
  }
  if (!(std::isfinite(m.range_db) && m.range_db > 0 && m.range_db <= LogMel::kMaxRangeDb)) {
    return bad(fmt::format("preprocessing.log_mel.range_db = {}: allowed finite, > 0 and <= {}",
                           m.range_db, LogMel::kMaxRangeDb));
  }
  return {};
}

// A decimal number of 1..6 digits (no sign).
std::optional<int> parse_number(std::string_view s) {
  if (s.empty() || s.size() > 6) return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// "key-value" -> value, if the key matches.
std::optional<std::string_view> field_value(std::string_view part, std::string_view key) {
  if (part.size() <= key.size() + 1 || part.substr(0, key.size()) != key ||
      part[key.size()] != '-') {
    return std::nullopt;
  }
  return part.substr(key.size() + 1);
}

}  // namespace

Result<Audio> load_audio_file(const std::string& path, const AudioLimits& limits) {
  if (auto ok = check_limits(limits); !ok) return std::unexpected(ok.error());
  const std::string where = fmt::format(" (file: {})", path);
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) {
    return make_error(ErrorCode::kNotFound, fmt::format("audio: no such file: {}", path));
  }
  if (fs::is_directory(st)) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("audio: {} is a directory, not a sound file", path));
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return make_error(ErrorCode::kPermissionDenied,
                      fmt::format("audio: cannot read {}: {}", path, std::strerror(errno)));
  }
  SF_INFO info{};
  SndfilePtr sf(sf_open(path.c_str(), SFM_READ, &info));
  if (!sf) return open_failed(where);
  return decode(sf.get(), info, limits, where);
}

Result<Audio> decode_audio(std::span<const uint8_t> bytes, const AudioLimits& limits) {
  if (auto ok = check_limits(limits); !ok) return std::unexpected(ok.error());
  MemoryFile mem{bytes};
  SF_VIRTUAL_IO io{&MemoryFile::size, &MemoryFile::seek, &MemoryFile::read, &MemoryFile::write,
                   &MemoryFile::tell};
  SF_INFO info{};
  SndfilePtr sf(sf_open_virtual(&io, SFM_READ, &info, &mem));
  if (!sf) {
    if (const auto rate = wav_header_rate(bytes);
        rate && (*rate < static_cast<uint32_t>(limits.min_rate_hz) ||
                 *rate > static_cast<uint32_t>(limits.max_rate_hz))) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("audio: sample rate {} Hz (WAV header): allowed {}..{} Hz",
                                    *rate, limits.min_rate_hz, limits.max_rate_hz));
    }
    return open_failed("");
  }
  return decode(sf.get(), info, limits, "");
}

Result<Audio> resample(const Audio& in, int rate_hz) {
  if (auto ok = check_rate("sample_rate_hz of the input", in.sample_rate_hz); !ok) {
    return std::unexpected(ok.error());
  }
  if (auto ok = check_rate("rate_hz", rate_hz); !ok) return std::unexpected(ok.error());
  if (rate_hz == in.sample_rate_hz) return in;
  const double ratio = static_cast<double>(rate_hz) / in.sample_rate_hz;
  if (!src_is_valid_ratio(ratio)) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("audio: resampling {} Hz -> {} Hz: ratio {:g} is beyond "
                                  "libsamplerate's 1:256 either way",
                                  in.sample_rate_hz, rate_hz, ratio));
  }
  Audio out;
  out.sample_rate_hz = rate_hz;
  const auto n = static_cast<long>(in.samples.size());
  if (n == 0) return out;
  const auto want = static_cast<long>(std::llround(static_cast<double>(n) * ratio));
  // Room for what libsamplerate's rounding may add; trimmed to `want` below.
  out.samples.resize(static_cast<size_t>(want) + static_cast<size_t>(std::ceil(ratio)) + 16);
  SRC_DATA d{};
  d.data_in = in.samples.data();
  d.input_frames = n;
  d.data_out = out.samples.data();
  d.output_frames = static_cast<long>(out.samples.size());
  d.end_of_input = 1;
  d.src_ratio = ratio;
  if (const int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1); err != 0) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("audio: libsamplerate {} Hz -> {} Hz: {}", in.sample_rate_hz,
                                  rate_hz, src_strerror(err)));
  }
  // Exactly round(n * ratio) samples: trims the tail, or pads it with zeros if the converter
  // produced a sample or two fewer.
  out.samples.resize(static_cast<size_t>(d.output_frames_gen));
  out.samples.resize(static_cast<size_t>(want), 0.0f);
  // The sinc filter overshoots: float samples near the float limit (a float file may hold
  // them) come out infinite, and preprocess would hand the model inf/NaN steps.
  for (size_t i = 0; i < out.samples.size(); ++i) {
    if (!std::isfinite(out.samples[i])) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("audio: resampling {} Hz -> {} Hz overflowed at sample {}: "
                                    "the clip's samples are too large (a float file near the "
                                    "float limit)",
                                    in.sample_rate_hz, rate_hz, i));
    }
  }
  return out;
}

int channels(const Preprocessing& p) { return p.log_mel ? p.log_mel->bands : 1; }

Result<void> validate(const Preprocessing& p) {
  if (auto ok = check_range("sample_rate_hz", p.sample_rate_hz, AudioLimits::kMinRateHz,
                            AudioLimits::kMaxRateHz);
      !ok) {
    return ok;
  }
  if (auto ok = check_range("downsample", p.downsample, 1, 4096); !ok) return ok;
  if (auto ok = check_range("target_length", p.target_length, 0, 100000); !ok) return ok;
  if (p.log_mel) return check_log_mel(*p.log_mel, p);
  return {};
}

Result<std::vector<float>> preprocess(const Audio& in, const Preprocessing& p) {
  if (auto ok = validate(p); !ok) {
    return make_error(ErrorCode::kInvalidArgument, "audio: " + ok.error().message);
  }
  if (auto ok = check_rate("sample_rate_hz of the input", in.sample_rate_hz); !ok) {
    return std::unexpected(ok.error());
  }
  if (in.samples.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "audio: the clip is empty");
  }
  for (size_t i = 0; i < in.samples.size(); ++i) {
    if (!std::isfinite(in.samples[i])) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("audio: sample {} is not finite ({})", i, in.samples[i]));
    }
  }

  const Audio* src = &in;
  Audio resampled;
  if (in.sample_rate_hz != p.sample_rate_hz) {
    auto r = resample(in, p.sample_rate_hz);
    if (!r) return std::unexpected(r.error());
    resampled = std::move(*r);
    src = &resampled;
  }

  if (p.log_mel) {
    // The stream's arithmetic on the whole clip: a stream and a clip give the same steps by
    // construction (the reference is a running maximum, so normalising needs no look-ahead).
    auto fe = StreamingFrontEnd::create(p);
    if (!fe) return std::unexpected(fe.error());
    auto y = fe->push(src->samples);
    if (!y) return std::unexpected(y.error());
    const std::vector<float> tail = fe->finish();
    y->insert(y->end(), tail.begin(), tail.end());
    if (p.target_length > 0) {
      y->resize(static_cast<size_t>(p.target_length) * static_cast<size_t>(channels(p)), 0.0f);
    }
    return y;
  }

  // Block averaging: step k = mean of samples [k*d, min((k+1)*d, n)).
  const std::vector<float>& x = src->samples;
  const size_t n = x.size();
  const auto d = static_cast<size_t>(p.downsample);
  std::vector<float> y((n + d - 1) / d);
  for (size_t k = 0; k < y.size(); ++k) {
    const size_t lo = k * d;
    const size_t hi = std::min(lo + d, n);
    double sum = 0;
    for (size_t i = lo; i < hi; ++i) sum += x[i];
    y[k] = static_cast<float>(sum / static_cast<double>(hi - lo));
  }

  if (p.normalise) {
    float peak = 0;
    for (float v : y) peak = std::max(peak, std::abs(v));
    if (peak > 0) {
      for (float& v : y) v = v / peak;
    }
  }

  if (p.target_length > 0) y.resize(static_cast<size_t>(p.target_length), 0.0f);
  return y;
}

std::optional<HdName> parse_hd_name(std::string_view file_name) {
  if (const size_t slash = file_name.find_last_of('/'); slash != std::string_view::npos) {
    file_name.remove_prefix(slash + 1);
  }
  const size_t dot = file_name.find_last_of('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view ext = file_name.substr(dot + 1);
  if (ext != "flac" && ext != "wav" && ext != "ogg") return std::nullopt;
  std::string_view stem = file_name.substr(0, dot);

  std::array<std::string_view, 4> parts;
  for (size_t i = 0; i < parts.size(); ++i) {
    const size_t us = stem.find('_');
    if ((us == std::string_view::npos) != (i + 1 == parts.size())) return std::nullopt;
    parts[i] = stem.substr(0, us);
    if (us != std::string_view::npos) stem.remove_prefix(us + 1);
  }

  const auto lang = field_value(parts[0], "lang");
  const auto speaker = field_value(parts[1], "speaker");
  const auto trial = field_value(parts[2], "trial");
  const auto digit = field_value(parts[3], "digit");
  if (!lang || !speaker || !trial || !digit) return std::nullopt;
  if (lang->size() > 32 ||
      !std::all_of(lang->begin(), lang->end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
    return std::nullopt;
  }
  HdName name;
  name.language = std::string(*lang);
  const auto s = parse_number(*speaker);
  const auto t = parse_number(*trial);
  const auto g = parse_number(*digit);
  if (!s || !t || !g || *g > 9) return std::nullopt;
  name.speaker = *s;
  name.trial = *t;
  name.digit = *g;
  return name;
}

Result<std::vector<HdClip>> list_hd_zero_one(const std::string& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) {
    return make_error(ErrorCode::kNotFound, fmt::format("audio: no such directory: {}", dir));
  }
  if (!fs::is_directory(st)) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("audio: {} is not a directory", dir));
  }
  auto walk_error = [&](const std::error_code& e) {
    return make_error(
        e == std::errc::permission_denied ? ErrorCode::kPermissionDenied : ErrorCode::kInternal,
        fmt::format("audio: cannot list {}: {}", dir, e.message()));
  };

  std::vector<HdClip> clips;
  fs::recursive_directory_iterator it(dir, ec);
  if (ec) return walk_error(ec);
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return walk_error(ec);
    std::error_code file_ec;
    if (!it->is_regular_file(file_ec)) continue;  // directories, broken links, ...
    const fs::path& path = it->path();
    auto name = parse_hd_name(path.filename().string());
    if (!name || name->language != "english" || name->digit > 1) continue;
    const int label = name->digit;
    clips.push_back(HdClip{path.string(), std::move(*name), label});
  }
  if (ec) return walk_error(ec);
  std::sort(clips.begin(), clips.end(), [](const HdClip& a, const HdClip& b) {
    const std::string fa = fs::path(a.path).filename().string();
    const std::string fb = fs::path(b.path).filename().string();
    return fa != fb ? fa < fb : a.path < b.path;
  });
  return clips;
}

}  // namespace xbar::audio
