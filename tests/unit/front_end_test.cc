// The log-mel front end (issue 18) and the streaming front end: the C++ features against the
// numpy reference (models/frontend.py, run by tests/front_end_reference.py when the test runs),
// a stream cut into random chunks against preprocess() of the whole clip (log-mel and block
// average), and the validation of every field.
#include "xbar/audio/front_end.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "xbar/audio/audio.h"

namespace xbar::audio {
namespace {

namespace fs = std::filesystem;

std::vector<float> read_f32(const fs::path& path, size_t count) {
  std::vector<float> v(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
  EXPECT_EQ(static_cast<size_t>(in.gcount()), count * sizeof(float)) << path;
  return v;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "xbar-front-end-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

// (a) The C++ features equal the numpy reference's to float32 rounding (1e-5 allowed) on sines,
// a chirp that gets louder (the running reference moves), noise after silence, padding and
// truncation, a clip below the reference's -80 dB floor, silence, 48 kHz with and without
// normalisation, hop == fft_size, hop 3 with fft_size 16, and one narrow band.
TEST(FrontEnd, LogMelEqualsTheNumpyReference) {
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  const std::string cmd = "/usr/bin/python3 " XBAR_SOURCE_DIR
                          "/tests/unit/front_end_reference.py " +
                          dir.path.string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0)
      << cmd << ": the reference needs /usr/bin/python3 with numpy (python3-numpy)";
  std::ifstream cases(dir.path / "cases.txt");
  std::string line;
  int n_cases = 0;
  double worst = 0;
  while (std::getline(cases, line)) {
    std::istringstream in(line);
    std::string name;
    Preprocessing p;
    LogMel m;
    int normalise = 0;
    size_t samples = 0, steps = 0;
    in >> name >> p.sample_rate_hz >> p.downsample >> m.fft_size >> m.bands >> m.low_hz >>
        m.high_hz >> m.range_db >> normalise >> p.target_length >> samples >> steps;
    ASSERT_FALSE(in.fail()) << line;
    p.normalise = normalise != 0;
    p.log_mel = m;
    const std::vector<float> x = read_f32(dir.path / (name + ".samples.f32"), samples);
    const std::vector<float> want =
        read_f32(dir.path / (name + ".features.f32"), steps * static_cast<size_t>(m.bands));
    auto got = preprocess(Audio{x, p.sample_rate_hz}, p);
    ASSERT_TRUE(got.has_value()) << name << ": " << got.error().message;
    ASSERT_EQ(got->size(), want.size()) << name;
    double diff = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::abs((*got)[i] - want[i])));
    }
    EXPECT_LE(diff, 1e-5) << name;
    std::printf("  %-20s %4zu steps x %2d bands: max |C++ - numpy| = %.3g\n", name.c_str(), steps,
                m.bands, diff);
    worst = std::max(worst, diff);
    ++n_cases;
  }
  EXPECT_EQ(n_cases, 11);
  std::printf("  all cases: max |C++ - numpy| = %.3g\n", worst);
  ::testing::Test::RecordProperty("max_abs_diff", std::to_string(worst));
}

std::vector<float> test_signal(size_t n, int rate_hz, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / rate_hz;
    const double env = std::min(1.0, 0.1 + 2 * t);  // louder and louder: the reference moves
    x[i] = static_cast<float>(env * 0.6 * std::sin(2 * std::numbers::pi * (200 + 900 * t) * t)) +
           noise(rng);
  }
  return x;
}

// The stream in chunks of random sizes (0 to a few hops), then finish().
std::vector<float> streamed(const Preprocessing& p, const std::vector<float>& x, uint32_t seed,
                            size_t max_chunk) {
  auto fe = StreamingFrontEnd::create(p);
  EXPECT_TRUE(fe.has_value()) << fe.error().message;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> size(0, max_chunk);
  std::vector<float> out;
  for (size_t at = 0; at < x.size();) {
    const size_t n = std::min(size(rng), x.size() - at);
    auto y = fe->push(std::span<const float>(x).subspan(at, n));
    EXPECT_TRUE(y.has_value());
    // Every step complete as soon as its samples are: never a step held back.
    EXPECT_EQ(fe->steps(), static_cast<int64_t>((at + n) / static_cast<size_t>(p.downsample)));
    out.insert(out.end(), y->begin(), y->end());
    at += n;
  }
  const std::vector<float> tail = fe->finish();
  out.insert(out.end(), tail.begin(), tail.end());
  EXPECT_TRUE(fe->finish().empty());  // once
  return out;
}

// (b) A stream cut into random chunks gives exactly (bit for bit) the steps of preprocess() on
// the whole clip: log-mel with and without normalisation, and the block average (which a stream
// does not normalise), for clips that end with a partial step and clips that do not.
TEST(FrontEnd, StreamInRandomChunksEqualsTheWholeClip) {
  LogMel m;  // 16 bands, 256, 125..3800 Hz, 60 dB
  Preprocessing log_mel{.sample_rate_hz = 8000, .downsample = 80, .log_mel = m};
  Preprocessing log_mel_abs = log_mel;
  log_mel_abs.normalise = false;
  Preprocessing wide{.sample_rate_hz = 48000,
                     .downsample = 64,
                     .normalise = true,
                     .log_mel = LogMel{32, 1024, 50, 8000, 80}};
  Preprocessing average{.sample_rate_hz = 48000, .downsample = 64, .normalise = false};
  Preprocessing average_odd{.sample_rate_hz = 8000, .downsample = 7, .normalise = false};
  uint32_t seed = 1;
  for (const Preprocessing& p : {log_mel, log_mel_abs, wide, average, average_odd}) {
    for (size_t n : {static_cast<size_t>(p.downsample) * 50,
                     static_cast<size_t>(p.downsample) * 37 + 11, size_t{5}}) {
      const std::vector<float> x = test_signal(n, p.sample_rate_hz, seed);
      auto whole = preprocess(Audio{x, p.sample_rate_hz}, p);
      ASSERT_TRUE(whole.has_value()) << whole.error().message;
      const size_t steps = (n + static_cast<size_t>(p.downsample) - 1) / p.downsample;
      ASSERT_EQ(whole->size(), steps * static_cast<size_t>(channels(p)));
      for (size_t max_chunk : {size_t{1}, size_t{97}, static_cast<size_t>(p.downsample) * 5}) {
        EXPECT_EQ(streamed(p, x, ++seed, max_chunk), *whole)
            << "rate " << p.sample_rate_hz << ", hop " << p.downsample << ", log_mel "
            << p.log_mel.has_value() << ", " << n << " samples, chunks up to " << max_chunk;
      }
    }
  }
}

TEST(FrontEnd, ChannelsAndPadding) {
  Preprocessing p{
      .sample_rate_hz = 8000, .downsample = 80, .target_length = 30, .log_mel = LogMel{}};
  EXPECT_EQ(channels(p), 16);
  EXPECT_EQ(channels(Preprocessing{}), 1);
  auto y = preprocess(Audio{test_signal(800, 8000, 3), 8000}, p);  // 10 steps, padded to 30
  ASSERT_TRUE(y.has_value());
  ASSERT_EQ(y->size(), 30u * 16u);
  EXPECT_TRUE(std::all_of(y->begin() + 10 * 16, y->end(), [](float v) { return v == 0.0f; }));
  EXPECT_TRUE(std::all_of(y->begin(), y->end(), [](float v) { return v >= 0.0f && v <= 1.0f; }));
  p.target_length = 4;  // truncated
  auto cut = preprocess(Audio{test_signal(800, 8000, 3), 8000}, p);
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(*cut, std::vector<float>(y->begin(), y->begin() + 4 * 16));
  // Resampled first, like the block average: a 16 kHz clip for an 8 kHz model.
  p.target_length = 0;
  auto resampled = preprocess(Audio{test_signal(1600, 16000, 3), 16000}, p);
  ASSERT_TRUE(resampled.has_value());
  EXPECT_EQ(resampled->size(), 10u * 16u);
}

TEST(FrontEnd, StreamRefusesNonFiniteSamplesAndSamplesAfterTheEnd) {
  auto fe = StreamingFrontEnd::create(Preprocessing{
      .sample_rate_hz = 8000, .downsample = 4, .log_mel = LogMel{4, 16, 100, 3000, 40}});
  ASSERT_TRUE(fe.has_value());
  EXPECT_EQ(fe->channels(), 4);
  const std::vector<float> bad{0.1f, 0.2f, NAN, 0.3f, 0.4f};
  auto r = fe->push(bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message, "samples[2] = nan: not finite");
  EXPECT_EQ(fe->steps(), 0);  // nothing taken
  auto ok = fe->push(std::vector<float>(6, 0.25f));
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->size(), 4u);  // one step of 4 bands; 2 samples wait
  EXPECT_EQ(fe->finish().size(), 4u);
  EXPECT_EQ(fe->steps(), 2);
  auto after = fe->push(std::vector<float>(4, 0.0f));
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error().code, ErrorCode::kFailedPrecondition);
}

// (c) Every field refused with its name, the value and the allowed range, by validate(),
// preprocess() (prefixed "audio: ", before any sample is looked at) and the stream's create().
TEST(FrontEnd, ValidationNamesEveryField) {
  const Preprocessing good{.sample_rate_hz = 8000, .downsample = 80, .log_mel = LogMel{}};
  ASSERT_TRUE(validate(good).has_value());
  struct Case {
    Preprocessing p;
    std::string message;
  };
  std::vector<Case> cases;
  auto with = [&](auto change, std::string message) {
    Preprocessing p = good;
    change(p);
    cases.push_back({p, std::move(message)});
  };
  with([](Preprocessing& p) { p.sample_rate_hz = 999; },
       "preprocessing.sample_rate_hz = 999: allowed 1000..384000");
  with([](Preprocessing& p) { p.downsample = 0; }, "preprocessing.downsample = 0: allowed 1..4096");
  with([](Preprocessing& p) { p.target_length = -1; },
       "preprocessing.target_length = -1: allowed 0..100000");
  with([](Preprocessing& p) { p.log_mel->bands = 0; },
       "preprocessing.log_mel.bands = 0: allowed 1..64");
  with([](Preprocessing& p) { p.log_mel->bands = 65; },
       "preprocessing.log_mel.bands = 65: allowed 1..64");
  with([](Preprocessing& p) { p.log_mel->fft_size = 300; },
       "preprocessing.log_mel.fft_size = 300: allowed a power of two, 16..4096");
  with([](Preprocessing& p) { p.log_mel->fft_size = 8; },
       "preprocessing.log_mel.fft_size = 8: allowed a power of two, 16..4096");
  with([](Preprocessing& p) { p.log_mel->fft_size = 8192; },
       "preprocessing.log_mel.fft_size = 8192: allowed a power of two, 16..4096");
  with([](Preprocessing& p) { p.log_mel->fft_size = 64; },
       "preprocessing.log_mel.fft_size = 64: allowed >= preprocessing.downsample = 80 (a frame "
       "covers its step's hop)");
  with([](Preprocessing& p) { p.log_mel->low_hz = -1; },
       "preprocessing.log_mel.low_hz = -1: allowed finite, >= 0");
  with([](Preprocessing& p) { p.log_mel->low_hz = NAN; },
       "preprocessing.log_mel.low_hz = nan: allowed finite, >= 0");
  with([](Preprocessing& p) { p.log_mel->high_hz = 4001; },
       "preprocessing.log_mel.high_hz = 4001: allowed finite, > low_hz = 125 and <= "
       "sample_rate_hz / 2 = 4000");
  with([](Preprocessing& p) { p.log_mel->high_hz = 125; },
       "preprocessing.log_mel.high_hz = 125: allowed finite, > low_hz = 125 and <= "
       "sample_rate_hz / 2 = 4000");
  with([](Preprocessing& p) { p.log_mel->high_hz = INFINITY; },
       "preprocessing.log_mel.high_hz = inf: allowed finite, > low_hz = 125 and <= "
       "sample_rate_hz / 2 = 4000");
  with([](Preprocessing& p) { p.log_mel->range_db = 0; },
       "preprocessing.log_mel.range_db = 0: allowed finite, > 0 and <= 200");
  with([](Preprocessing& p) { p.log_mel->range_db = 200.5; },
       "preprocessing.log_mel.range_db = 200.5: allowed finite, > 0 and <= 200");
  with([](Preprocessing& p) { p.log_mel->range_db = NAN; },
       "preprocessing.log_mel.range_db = nan: allowed finite, > 0 and <= 200");
  for (const Case& c : cases) {
    auto v = validate(c.p);
    ASSERT_FALSE(v.has_value()) << c.message;
    EXPECT_EQ(v.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(v.error().message, c.message);
    auto y = preprocess(Audio{{0.1f, 0.2f}, 8000}, c.p);
    ASSERT_FALSE(y.has_value()) << c.message;
    EXPECT_EQ(y.error().message, "audio: " + c.message);
    auto fe = StreamingFrontEnd::create(c.p);
    ASSERT_FALSE(fe.has_value()) << c.message;
    EXPECT_EQ(fe.error().message, c.message);
  }
}

}  // namespace
}  // namespace xbar::audio
