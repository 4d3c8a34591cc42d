// The audio front end: decoding real WAV/FLAC files (written here with libsndfile) from disk and
// from memory, channel mix-down, resampling, the model's preprocessing, the errors, and the
// Heidelberg Digits file names.
#include "xbar/audio/audio.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "process.h"

namespace xbar::audio {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr int kWav16 = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
constexpr int kWavFloat = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
constexpr int kFlac16 = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;

// Writes `frames` frames; frame(i, c) gives channel c of frame i. Returns false on failure.
bool write_sound(const fs::path& path, int format, int channels, int rate, int64_t frames,
                 const std::function<float(int64_t, int)>& frame) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  SNDFILE* sf = sf_open(path.c_str(), SFM_WRITE, &info);
  if (sf == nullptr) {
    ADD_FAILURE() << "sf_open(" << path << "): " << sf_strerror(nullptr);
    return false;
  }
  std::vector<float> buf;
  constexpr int64_t kChunk = 65536;
  bool ok = true;
  for (int64_t start = 0; start < frames && ok; start += kChunk) {
    const int64_t n = std::min(kChunk, frames - start);
    buf.resize(static_cast<size_t>(n * channels));
    for (int64_t i = 0; i < n; ++i) {
      for (int c = 0; c < channels; ++c) buf[i * channels + c] = frame(start + i, c);
    }
    ok = sf_writef_float(sf, buf.data(), n) == n;
  }
  sf_close(sf);
  EXPECT_TRUE(ok) << path;
  return ok;
}

float sine(int64_t i, int rate, double hz, double amplitude) {
  return static_cast<float>(
      amplitude * std::sin(2 * std::numbers::pi * hz * static_cast<double>(i) / rate + 0.1));
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// A valid FLAC stream with no audio: "fLaC" and a STREAMINFO block (48 kHz, mono, 16 bit) whose
// total_samples is 0 ("unknown"). libsndfile writes nothing at all for a FLAC file without
// frames, so this one is built by hand.
std::vector<uint8_t> empty_flac_bytes() {
  std::vector<uint8_t> b = {'f',  'L',  'a',  'C',  0x80, 0, 0, 34,  // last block, STREAMINFO, 34 B
                            0x10, 0x00, 0x10, 0x00,                  // block size 4096..4096
                            0,    0,    0,    0,    0,    0,         // frame sizes unknown
                            0x0B, 0xB8, 0x00, 0xF0, 0,    0, 0, 0};  // 48000 Hz, 1 ch, 16 bit, 0
  b.resize(b.size() + 16, 0);                                        // MD5 unset
  return b;
}

// Marks a FLAC file's length as unknown (STREAMINFO total_samples = 0).
void clear_flac_length(std::vector<uint8_t>& b) {
  ASSERT_GE(b.size(), 42u);
  ASSERT_EQ(b[4] & 0x7F, 0);  // the first block is STREAMINFO
  b[21] &= 0xF0;
  std::fill(b.begin() + 22, b.begin() + 26, 0);
}

int zero_crossings(const std::vector<float>& x) {
  int n = 0;
  for (size_t i = 1; i < x.size(); ++i) n += (x[i - 1] < 0) != (x[i] < 0);
  return n;
}

float peak(const std::vector<float>& x) {
  float p = 0;
  for (float v : x) p = std::max(p, std::abs(v));
  return p;
}

// ---- decoding ----

TEST(AudioDecode, FileAndMemoryGiveTheSameSamples) {
  TempDir dir;
  struct Case {
    const char* name;
    int format;
    int rate;
  };
  for (const Case& c : {Case{"a.wav", kWav16, 16000}, Case{"b.flac", kFlac16, 44100},
                        Case{"c.wav", kWavFloat, 48000}, Case{"d.flac", kFlac16, 48000}}) {
    SCOPED_TRACE(c.name);
    const fs::path path = dir.path() / c.name;
    const int64_t frames = c.rate / 2;  // 0.5 s
    ASSERT_TRUE(write_sound(path, c.format, 1, c.rate, frames,
                            [&](int64_t i, int) { return sine(i, c.rate, 440, 0.5); }));
    auto from_file = load_audio_file(path.string());
    ASSERT_TRUE(from_file) << from_file.error().message;
    const std::vector<uint8_t> bytes = read_bytes(path);
    auto from_memory = decode_audio(bytes);
    ASSERT_TRUE(from_memory) << from_memory.error().message;

    EXPECT_EQ(from_file->sample_rate_hz, c.rate);
    EXPECT_EQ(from_memory->sample_rate_hz, c.rate);
    ASSERT_EQ(from_file->samples.size(), static_cast<size_t>(frames));
    EXPECT_EQ(from_file->samples, from_memory->samples);
    // The written sine, to within 16-bit quantisation.
    for (int64_t i = 0; i < frames; ++i) {
      ASSERT_NEAR(from_file->samples[i], sine(i, c.rate, 440, 0.5), 1.0 / 16384) << i;
    }
    EXPECT_NEAR(peak(from_file->samples), 0.5, 1e-3);
  }
}

TEST(AudioDecode, StereoIsMixedDownByAveraging) {
  TempDir dir;
  const int rate = 44100;
  const int64_t frames = rate / 4;
  // L = sine, R = -sine -> ~0.
  const fs::path opposite = dir.path() / "opposite.wav";
  ASSERT_TRUE(write_sound(opposite, kWav16, 2, rate, frames, [&](int64_t i, int c) {
    return c == 0 ? sine(i, rate, 1000, 0.8) : -sine(i, rate, 1000, 0.8);
  }));
  auto a = load_audio_file(opposite.string());
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_EQ(a->samples.size(), static_cast<size_t>(frames));
  EXPECT_LT(peak(a->samples), 1e-4);

  // L = sine, R = silence -> half the sine (an average, not a sum); FLAC, from memory.
  const fs::path half = dir.path() / "half.flac";
  ASSERT_TRUE(write_sound(half, kFlac16, 2, rate, frames, [&](int64_t i, int c) {
    return c == 0 ? sine(i, rate, 1000, 0.8) : 0.0f;
  }));
  auto b = decode_audio(read_bytes(half));
  ASSERT_TRUE(b) << b.error().message;
  ASSERT_EQ(b->samples.size(), static_cast<size_t>(frames));
  for (int64_t i = 0; i < frames; ++i) {
    ASSERT_NEAR(b->samples[i], 0.5 * sine(i, rate, 1000, 0.8), 1e-4) << i;
  }
}

// ---- resampling ----

TEST(AudioResample, KeepsFrequencyAndLengthRatio) {
  TempDir dir;
  const fs::path path = dir.path() / "16k.wav";
  ASSERT_TRUE(write_sound(path, kWav16, 1, 16000, 16000,
                          [](int64_t i, int) { return sine(i, 16000, 440, 0.7); }));
  auto in = load_audio_file(path.string());
  ASSERT_TRUE(in) << in.error().message;
  const int crossings_in = zero_crossings(in->samples);
  EXPECT_NEAR(crossings_in, 880, 1);  // 440 Hz for 1 s

  auto up = resample(*in, 48000);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->sample_rate_hz, 48000);
  EXPECT_EQ(up->samples.size(), 3 * in->samples.size());
  EXPECT_NEAR(zero_crossings(up->samples), crossings_in, 2);
  // Amplitude kept (away from the filter's edges).
  const std::vector<float> middle(up->samples.begin() + 4800, up->samples.end() - 4800);
  EXPECT_NEAR(peak(middle), 0.7, 0.01);

  auto down = resample(*up, 16000);
  ASSERT_TRUE(down) << down.error().message;
  EXPECT_EQ(down->samples.size(), in->samples.size());
  EXPECT_NEAR(zero_crossings(down->samples), crossings_in, 2);

  auto odd = resample(*in, 44100);  // 16000 -> 44100: round(16000 * 2.75625) = 44100
  ASSERT_TRUE(odd) << odd.error().message;
  EXPECT_EQ(odd->samples.size(), 44100u);
  EXPECT_NEAR(zero_crossings(odd->samples), crossings_in, 2);
}

TEST(AudioResample, SameRateIsUnchangedAndBadRatesAreRefused) {
  Audio a{{0.1f, -0.2f, 0.3f}, 16000};
  auto same = resample(a, 16000);
  ASSERT_TRUE(same);
  EXPECT_EQ(same->samples, a.samples);
  EXPECT_EQ(same->sample_rate_hz, 16000);

  auto zero = resample(a, 0);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(zero.error().message.find("rate_hz"), std::string::npos) << zero.error().message;

  auto huge = resample(a, 16000 * 1000);
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message.find("1:256"), std::string::npos) << huge.error().message;

  auto no_rate = resample(Audio{{0.1f}, 0}, 16000);
  ASSERT_FALSE(no_rate);
  EXPECT_EQ(no_rate.error().code, ErrorCode::kInvalidArgument);
}

// Found by tests/fuzz/audio_fuzz (tests/fuzz/corpus/audio/regress-resample-overflow): a float
// WAV whose samples reach 3.4e38 (finite, so decode_audio accepts it) resampled to infinite
// samples, and preprocess handed the model inf/NaN steps.
TEST(AudioResample, SamplesNearTheFloatLimitAreRefusedNotMadeInfinite) {
  Audio a;
  a.sample_rate_hz = 48000;
  for (int i = 0; i < 300; ++i) a.samples.push_back(i < 150 ? 0.0f : 3.4e38f);
  auto r = resample(a, 16000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("overflowed"), std::string::npos) << r.error().message;
  auto steps = preprocess(a, {.sample_rate_hz = 16000, .downsample = 64});
  ASSERT_FALSE(steps);
  EXPECT_EQ(steps.error().code, ErrorCode::kInvalidArgument);
  // Large but not overflowing: still resampled.
  for (float& x : a.samples) x /= 4;
  auto ok = resample(a, 16000);
  ASSERT_TRUE(ok) << ok.error().message;
  for (float x : ok->samples) EXPECT_TRUE(std::isfinite(x));
}

// ---- preprocessing ----

TEST(AudioPreprocess, PaperClipGives871StepsWithPeakOne) {
  TempDir dir;
  const fs::path path = dir.path() / "48k.flac";
  const int64_t frames = 55728;  // 1.161 s at 48 kHz
  ASSERT_TRUE(write_sound(path, kFlac16, 1, 48000, frames,
                          [](int64_t i, int) { return sine(i, 48000, 200, 0.3); }));
  auto a = load_audio_file(path.string());
  ASSERT_TRUE(a) << a.error().message;
  auto y = preprocess(*a, Preprocessing{});
  ASSERT_TRUE(y) << y.error().message;
  EXPECT_EQ(y->size(), 871u);
  EXPECT_EQ(peak(*y), 1.0f);

  // The same 1.161 s at 44.1 kHz is resampled to 48 kHz first: the same 871 steps.
  const fs::path p44 = dir.path() / "44k.wav";
  ASSERT_TRUE(write_sound(p44, kWav16, 2, 44100, 51200,
                          [](int64_t i, int) { return sine(i, 44100, 200, 0.3); }));
  auto b = load_audio_file(p44.string());
  ASSERT_TRUE(b) << b.error().message;
  auto y44 = preprocess(*b, Preprocessing{});
  ASSERT_TRUE(y44) << y44.error().message;
  EXPECT_EQ(y44->size(), 871u);
  EXPECT_EQ(peak(*y44), 1.0f);
}

TEST(AudioPreprocess, DownsamplingIsBlockAveraging) {
  Audio a{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 48000};
  Preprocessing p;
  p.downsample = 4;
  p.normalise = false;
  auto y = preprocess(a, p);
  ASSERT_TRUE(y) << y.error().message;
  // [1..4] -> 2.5, [5..8] -> 6.5, the partial block [9, 10] -> 9.5.
  EXPECT_EQ(*y, (std::vector<float>{2.5f, 6.5f, 9.5f}));

  p.normalise = true;
  y = preprocess(a, p);
  ASSERT_TRUE(y);
  EXPECT_EQ(*y, (std::vector<float>{2.5f / 9.5f, 6.5f / 9.5f, 1.0f}));

  p.downsample = 1;
  y = preprocess(a, p);
  ASSERT_TRUE(y);
  EXPECT_EQ(y->size(), 10u);
  EXPECT_EQ(y->back(), 1.0f);

  // Silence stays silent.
  y = preprocess(Audio{std::vector<float>(640, 0.0f), 48000}, Preprocessing{});
  ASSERT_TRUE(y);
  EXPECT_EQ(*y, std::vector<float>(10, 0.0f));
}

TEST(AudioPreprocess, TargetLengthPadsAndTruncates) {
  Audio a;
  a.sample_rate_hz = 48000;
  for (int i = 0; i < 48000; ++i) a.samples.push_back(sine(i, 48000, 100, 0.5));
  auto natural = preprocess(a, Preprocessing{});
  ASSERT_TRUE(natural);
  ASSERT_EQ(natural->size(), 750u);  // 48000 / 64

  Preprocessing pad;
  pad.target_length = 1000;
  auto padded = preprocess(a, pad);
  ASSERT_TRUE(padded);
  ASSERT_EQ(padded->size(), 1000u);
  EXPECT_TRUE(std::equal(natural->begin(), natural->end(), padded->begin()));
  EXPECT_TRUE(std::all_of(padded->begin() + 750, padded->end(), [](float v) { return v == 0; }));

  Preprocessing cut;
  cut.target_length = 100;
  auto truncated = preprocess(a, cut);
  ASSERT_TRUE(truncated);
  ASSERT_EQ(truncated->size(), 100u);
  EXPECT_TRUE(std::equal(truncated->begin(), truncated->end(), natural->begin()));
}

TEST(AudioPreprocess, InvalidSettingsNameTheField) {
  const Audio a{std::vector<float>(100, 0.5f), 48000};
  struct Case {
    Preprocessing p;
    const char* field;
  };
  Preprocessing down0;
  down0.downsample = 0;
  Preprocessing down_big;
  down_big.downsample = 4097;
  Preprocessing rate;
  rate.sample_rate_hz = 999;
  Preprocessing target;
  target.target_length = -1;
  Preprocessing target_big;
  target_big.target_length = 100001;
  for (const Case& c :
       {Case{down0, "downsample"}, Case{down_big, "downsample"}, Case{rate, "sample_rate_hz"},
        Case{target, "target_length"}, Case{target_big, "target_length"}}) {
    auto y = preprocess(a, c.p);
    ASSERT_FALSE(y) << c.field;
    EXPECT_EQ(y.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(y.error().message.find(c.field), std::string::npos) << y.error().message;
  }
  auto y = preprocess(a, down0);
  EXPECT_EQ(y.error().message, "audio: preprocessing.downsample = 0: allowed 1..4096");

  auto empty = preprocess(Audio{{}, 48000}, Preprocessing{});
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("empty"), std::string::npos);
  auto nan = preprocess(Audio{{0.1f, NAN}, 48000}, Preprocessing{});
  ASSERT_FALSE(nan);
  EXPECT_NE(nan.error().message.find("not finite"), std::string::npos);
  auto no_rate = preprocess(Audio{{0.1f}, 0}, Preprocessing{});
  ASSERT_FALSE(no_rate);
}

// ---- decoding errors ----

void expect_unreadable(const Result<Audio>& r) {
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("audio: not a sound file libsndfile can read: "),
            std::string::npos)
      << r.error().message;
}

TEST(AudioDecodeErrors, EmptyAndGarbageData) {
  TempDir dir;
  const fs::path empty = dir.path() / "empty.wav";
  write_bytes(empty, {});
  expect_unreadable(load_audio_file(empty.string()));
  expect_unreadable(decode_audio({}));

  std::mt19937 rng(7);
  std::vector<uint8_t> garbage(4096);
  for (auto& b : garbage) b = static_cast<uint8_t>(rng());
  const fs::path junk = dir.path() / "junk.flac";
  write_bytes(junk, garbage);
  expect_unreadable(load_audio_file(junk.string()));
  expect_unreadable(decode_audio(garbage));
  auto r = load_audio_file(junk.string());
  EXPECT_NE(r.error().message.find(junk.string()), std::string::npos) << r.error().message;
}

TEST(AudioDecodeErrors, TruncatedFlac) {
  TempDir dir;
  const fs::path path = dir.path() / "noise.flac";
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> noise(-0.5f, 0.5f);
  ASSERT_TRUE(
      write_sound(path, kFlac16, 1, 16000, 16000, [&](int64_t, int) { return noise(rng); }));
  std::vector<uint8_t> bytes = read_bytes(path);
  ASSERT_TRUE(decode_audio(bytes));

  for (size_t keep : {bytes.size() / 2, bytes.size() - 10, size_t{20}}) {
    SCOPED_TRACE(keep);
    const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(keep));
    auto r = decode_audio(cut);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    const fs::path cut_path = dir.path() / "cut.flac";
    write_bytes(cut_path, cut);
    auto f = load_audio_file(cut_path.string());
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().code, ErrorCode::kInvalidArgument);
  }
  auto half = decode_audio(std::span(bytes).first(bytes.size() / 2));
  ASSERT_FALSE(half);
  EXPECT_NE(half.error().message.find("truncated"), std::string::npos) << half.error().message;
}

TEST(AudioDecodeErrors, ZeroFrames) {
  TempDir dir;
  const fs::path wav = dir.path() / "zero.wav";
  ASSERT_TRUE(write_sound(wav, kWav16, 1, 48000, 0, [](int64_t, int) { return 0.0f; }));
  const fs::path flac = dir.path() / "zero.flac";
  write_bytes(flac, empty_flac_bytes());
  for (const fs::path& path : {wav, flac}) {
    auto r = load_audio_file(path.string());
    ASSERT_FALSE(r) << path;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message, "audio: the clip is empty (file: " + path.string() + ")");
    auto m = decode_audio(read_bytes(path));
    ASSERT_FALSE(m) << path;
    EXPECT_EQ(m.error().message, "audio: the clip is empty");
  }
}

TEST(AudioDecodeErrors, TooLong) {
  TempDir dir;
  const fs::path path = dir.path() / "long.wav";
  // 600 s of silence at 8 kHz: 9.6 MB.
  ASSERT_TRUE(write_sound(path, kWav16, 1, 8000, 600 * 8000, [](int64_t, int) { return 0.0f; }));
  auto r = load_audio_file(path.string());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("audio: 600.0 s clip: allowed up to 60 s"), std::string::npos)
      << r.error().message;
  auto m = decode_audio(read_bytes(path));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().message, "audio: 600.0 s clip: allowed up to 60 s");

  // A 2 s clip against a 1.5 s limit; and the limit itself is checked.
  const fs::path two = dir.path() / "two.flac";
  ASSERT_TRUE(write_sound(two, kFlac16, 1, 8000, 16000, [](int64_t, int) { return 0.1f; }));
  auto t = load_audio_file(two.string(), AudioLimits{1.5});
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("audio: 2.0 s clip: allowed up to 1.5 s"), std::string::npos)
      << t.error().message;
  EXPECT_TRUE(load_audio_file(two.string(), AudioLimits{2.0}));
  // A stream that does not announce its length is checked while it is read.
  std::vector<uint8_t> open_ended = read_bytes(two);
  clear_flac_length(open_ended);
  auto u = decode_audio(open_ended, AudioLimits{1.5});
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message.find("audio: clip longer than"), std::string::npos)
      << u.error().message;
  EXPECT_NE(u.error().message.find("allowed up to 1.5 s"), std::string::npos);
  auto whole = decode_audio(open_ended);
  ASSERT_TRUE(whole) << whole.error().message;
  EXPECT_EQ(whole->samples.size(), 16000u);

  auto bad = load_audio_file(two.string(), AudioLimits{0});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("max_seconds"), std::string::npos);
}

// Issue 16 items 8 and 12: WAV rates of 500, 999 and 400 000 Hz were accepted although
// docs/models.md says 1 000..384 000, and a 0 Hz WAV gave "SF_INFO struct incomplete".
TEST(AudioDecodeErrors, RatesOutsideTheDocumentedRangeAreRefusedNamingTheRate) {
  TempDir dir;
  for (int rate : {500, 999, 384001, 400000}) {
    const fs::path path = dir.path() / fmt::format("r{}.wav", rate);
    ASSERT_TRUE(write_sound(path, kWav16, 1, rate, 2000, [](int64_t, int) { return 0.1f; }));
    const std::string want = fmt::format("audio: sample rate {} Hz: allowed 1000..384000 Hz", rate);
    auto m = decode_audio(read_bytes(path));
    ASSERT_FALSE(m) << rate;
    EXPECT_EQ(m.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(m.error().message, want);
    auto f = load_audio_file(path.string());
    ASSERT_FALSE(f) << rate;
    EXPECT_NE(f.error().message.find(want), std::string::npos) << f.error().message;
  }
  for (int rate : {1000, 384000}) {  // the ends of the range
    const fs::path path = dir.path() / fmt::format("ok{}.wav", rate);
    ASSERT_TRUE(write_sound(path, kWav16, 1, rate, 2000, [](int64_t, int) { return 0.1f; }));
    auto m = decode_audio(read_bytes(path));
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->sample_rate_hz, rate);
  }
  // A header that says 0 Hz (libsndfile will not open it): the rate is named.
  const fs::path path = dir.path() / "zero.wav";
  ASSERT_TRUE(write_sound(path, kWav16, 1, 8000, 100, [](int64_t, int) { return 0.1f; }));
  std::vector<uint8_t> b = read_bytes(path);
  ASSERT_GE(b.size(), 28u);
  ASSERT_EQ(std::string(b.begin() + 12, b.begin() + 16), "fmt ");
  std::fill(b.begin() + 24, b.begin() + 28, 0);  // the fmt chunk's sample rate
  auto z = decode_audio(b);
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error().message, "audio: sample rate 0 Hz (WAV header): allowed 1000..384000 Hz");
}

TEST(AudioDecodeErrors, NonFiniteSamplesAndMissingFiles) {
  TempDir dir;
  const fs::path path = dir.path() / "nan.wav";
  ASSERT_TRUE(write_sound(path, kWavFloat, 1, 16000, 100,
                          [](int64_t i, int) { return i == 42 ? NAN : 0.25f; }));
  auto r = load_audio_file(path.string());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("sample 42 is not finite"), std::string::npos)
      << r.error().message;

  auto missing = load_audio_file((dir.path() / "nope.wav").string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto directory = load_audio_file(dir.path().string());
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code, ErrorCode::kInvalidArgument);
}

// ---- Heidelberg Digits ----

TEST(HdNames, Valid) {
  auto n = parse_hd_name("lang-english_speaker-03_trial-4_digit-0.flac");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->language, "english");
  EXPECT_EQ(n->speaker, 3);
  EXPECT_EQ(n->trial, 4);
  EXPECT_EQ(n->digit, 0);

  n = parse_hd_name("/data/hd_audio/audio/lang-german_speaker-11_trial-37_digit-9.flac");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->language, "german");
  EXPECT_EQ(n->speaker, 11);
  EXPECT_EQ(n->trial, 37);
  EXPECT_EQ(n->digit, 9);

  n = parse_hd_name("lang-english_speaker-00_trial-0_digit-1.wav");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->digit, 1);
}

TEST(HdNames, Invalid) {
  for (const char* bad : {
           "",
           "readme.txt",
           "lang-english_speaker-03_trial-4_digit-0",        // no extension
           "lang-english_speaker-03_trial-4_digit-0.txt",    // not audio
           "lang-english_speaker-03_trial-4_digit-10.flac",  // digit 0..9
           "lang-english_speaker-x_trial-4_digit-0.flac",
           "lang-english_speaker--3_trial-4_digit-0.flac",
           "lang-english_speaker-03_trial-_digit-0.flac",
           "lang-_speaker-03_trial-4_digit-0.flac",
           "lang-English_speaker-03_trial-4_digit-0.flac",
           "lang-english_speaker-03_trial-4_digit-0_extra-1.flac",
           "lang-english_speaker-03_trial-4.flac",
           "speaker-03_lang-english_trial-4_digit-0.flac",
           "lang-english_speaker-1234567_trial-4_digit-0.flac",
           "lang-english_speaker-03_trial-4_digit-0.flac.bak",
       }) {
    EXPECT_FALSE(parse_hd_name(bad)) << bad;
  }
}

TEST(HdNames, ListsEnglishZeroAndOne) {
  TempDir dir;
  const fs::path root = dir.path() / "hd";
  fs::create_directories(root / "audio" / "b");
  fs::create_directories(root / "audio" / "a" / "deeper");
  auto empty_flac = [](const fs::path& p) {
    write_bytes(p, empty_flac_bytes());
    return fs::file_size(p) == 42;
  };
  const std::vector<fs::path> files = {
      root / "audio" / "b" / "lang-english_speaker-03_trial-4_digit-0.flac",
      root / "audio" / "b" / "lang-english_speaker-03_trial-4_digit-1.flac",
      root / "audio" / "b" / "lang-english_speaker-03_trial-4_digit-2.flac",
      root / "audio" / "a" / "lang-german_speaker-05_trial-0_digit-0.flac",
      root / "audio" / "a" / "lang-german_speaker-05_trial-0_digit-1.flac",
      root / "audio" / "a" / "lang-german_speaker-05_trial-0_digit-2.flac",
      root / "audio" / "a" / "deeper" / "lang-english_speaker-01_trial-9_digit-1.flac",
      root / "audio" / "a" / "lang-english_speaker-10_trial-0_digit-0.flac",
  };
  for (const auto& f : files) ASSERT_TRUE(empty_flac(f));
  write_bytes(root / "readme.txt", {'h', 'i'});
  // A directory with an HD name is not a clip.
  fs::create_directories(root / "lang-english_speaker-99_trial-0_digit-0.flac");

  auto clips = list_hd_zero_one(root.string());
  ASSERT_TRUE(clips) << clips.error().message;
  ASSERT_EQ(clips->size(), 4u);
  const std::vector<std::pair<fs::path, int>> want = {
      {files[6], 1},  // lang-english_speaker-01_trial-9_digit-1
      {files[0], 0},  // lang-english_speaker-03_trial-4_digit-0
      {files[1], 1},  // lang-english_speaker-03_trial-4_digit-1
      {files[7], 0},  // lang-english_speaker-10_trial-0_digit-0
  };
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ((*clips)[i].path, want[i].first.string());
    EXPECT_EQ((*clips)[i].label, want[i].second);
    EXPECT_EQ((*clips)[i].name.digit, want[i].second);
    EXPECT_EQ((*clips)[i].name.language, "english");
  }
  EXPECT_EQ((*clips)[0].name.speaker, 1);
  EXPECT_EQ((*clips)[0].name.trial, 9);

  // An empty directory: no clips, not an error.
  fs::create_directories(dir.path() / "empty");
  auto none = list_hd_zero_one((dir.path() / "empty").string());
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());

  auto missing = list_hd_zero_one((dir.path() / "nope").string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto file = list_hd_zero_one((root / "readme.txt").string());
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace xbar::audio
