// Write-noise sweep: the paper's Fig. 4 (../shared/papers/imssa-paper.md, §III.C) on the twin.
// Test-split accuracy of the reference models when every conductance is written with Gaussian
// error, for several noise levels sigma, over many noise draws ("instantiations").
//
//   write_noise_sweep [--sigmas 0,5,10,15,20] [--instantiations 20] [--clips 100] [--threads 2]
//                     [--profile ideal] [--kernels board|crossbar] [--noise-on all|weights]
//                     [--data DIR] [--models A.json,B.json] [--seed 1] [--json FILE]
//
// Defaults: --data <source>/data/voices (make it with /usr/bin/python3 models/data.py
// generate), --models <source>/models/reference/zero-one-{2bit,5bit}.json.
//
// One instantiation of a model at sigma: on an in-process twin (sim:profile=P; one board per
// worker thread, reused), kernel k is compiled and put on array k with the identity placement,
// and every device of the array is set to target_uS(r, c) + sigma z(r, c), clipped to
// [0.1, 300] uS (SIM_INJECT_FAULT with no fault: set exactly, stuck devices cleared); the loop is
// planned from the conductances as set; every clip (the first N test clips, alternating "zero"
// and "one" like bench/accuracy/accuracy.py) runs through model::forward with the board's closed
// loop as the kernels (model::hardware_kernels); the accuracy is the fraction of labels right.
// The z are standard normals drawn from --seed and the instantiation's index only, so
// instantiation i uses the same z at every sigma and for every model: the columns are paired
// (sigma 0 is the same run every time; on `ideal`, which has no read noise, identical).
// The software path (model::software_kernels, each compiled kernel's ideal recurrence) is
// measured once per model on the same clips, as the baseline.
//
// --kernels crossbar runs the same conductances through kernel::run_crossbar instead (the array
// as written in floating point: no board, no 8-bit loop state, no ADC), which is what the
// paper's Fig. 4 simulates; it separates the write noise from the loop's own arithmetic.
// --noise-on weights writes exactly every device whose weight magnitude is zero
// (CompiledKernel::part = 0: the idle half of each differential pair, the zero entries of the
// state block, spare rows and columns): with noise on every device, the state block's zero
// entries become a dense random coupling between the modes, which the paper may not model.
//
// Prints a Markdown table (per model and sigma: mean, sd, min, median, max accuracy %, the
// software accuracy, the mean's difference from it, and how many instantiations wrote a kernel
// whose state matrix is unstable, spectral radius >= 1) and the wall time; --json writes every
// instantiation's accuracy and largest spectral radius, from which bench/accuracy/
// plot_noise_sweep.py draws the box plot (bench/accuracy/fig4-*.png). Exit codes: 0 done,
// 1 failed (a board or model error), 2 bad flag or input files.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "model_service.h"  // server::model_from_proto
#include "xbar/audio/audio.h"
#include "xbar/drivers/board.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/model/model.h"
#include "xbar/v1/models.pb.h"

namespace {

using namespace xbar;
using Clock = std::chrono::steady_clock;

constexpr double kMinG_uS = 0.1;    // the twin's smallest physical conductance
constexpr double kMaxG_uS = 300.0;  // its SET ceiling

// ---- flags ----

struct Options {
  std::vector<double> sigmas_uS = {0, 5, 10, 15, 20};
  int instantiations = 20;
  int clips = 100;
  int threads = 2;
  std::string profile = "ideal";
  bool crossbar = false;      // --kernels crossbar: kernel::run_crossbar instead of the board
  bool weights_only = false;  // --noise-on weights: only devices with a nonzero weight
  std::string data_dir = XBAR_SOURCE_DIR "/data/voices";
  std::vector<std::string> models = {XBAR_SOURCE_DIR "/models/reference/zero-one-2bit.json",
                                     XBAR_SOURCE_DIR "/models/reference/zero-one-5bit.json"};
  uint64_t seed = 1;
  std::string json_path;
};

constexpr const char* kUsage = R"(usage: write_noise_sweep [flags]
  --sigmas LIST         write-noise sigmas in uS, comma-separated, each 0..300 (0,5,10,15,20)
  --instantiations N    noise draws per model and sigma, 1..10000 (20)
  --clips N             the first N test clips, 1..the test split's size (100)
  --threads N           worker threads, each with its own board, 1..64 (2)
  --profile P           the twin's chip profile (ideal)
  --kernels K           board: the twin's closed loop (default); crossbar: the conductances as
                        written in floating point (kernel::run_crossbar), no board
  --noise-on D          all: every device gets write noise (default); weights: only the devices
                        that carry a nonzero weight, the others are written exactly
  --data DIR            generated data set with manifest.json (<source>/data/voices)
  --models LIST         model files, comma-separated
                        (<source>/models/reference/zero-one-2bit.json,...-5bit.json)
  --seed N              seed of the noise draws, 0..2^64-1 (1)
  --json FILE           write every instantiation's accuracy as JSON; the box plot is drawn
                        from it: /usr/bin/python3 bench/accuracy/plot_noise_sweep.py FILE -o F.png
  --help                this text
)";

// A message that ends the program with exit code 2.
struct UsageError {
  std::string message;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

template <typename T>
std::optional<T> parse_number(const std::string& s) {
  T v{};
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) return std::nullopt;
  return v;
}

template <typename T>
std::expected<T, UsageError> in_range(const std::string& flag, const std::string& text, T lo,
                                      T hi) {
  const auto v = parse_number<T>(text);
  if (!v || !(*v >= lo && *v <= hi)) {
    return std::unexpected(UsageError{fmt::format("{} = {}: allowed {}..{}", flag, text, lo, hi)});
  }
  return *v;
}

std::expected<Options, UsageError> parse_flags(int argc, char** argv, bool& help) {
  Options o;
  help = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "--help" || flag == "-h") {
      help = true;
      return o;
    }
    if (const auto eq = flag.find('='); flag.starts_with("--") && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag.starts_with("--") && i + 1 < argc) {
      value = argv[++i];
    } else if (flag.starts_with("--")) {
      return std::unexpected(UsageError{flag + " needs a value"});
    } else {
      return std::unexpected(UsageError{"unexpected argument " + flag + " (flags: --help)"});
    }
    if (flag == "--sigmas") {
      o.sigmas_uS.clear();
      for (const std::string& s : split(value, ',')) {
        auto v = in_range<double>("--sigmas", s, 0.0, kMaxG_uS);
        if (!v) return std::unexpected(v.error());
        o.sigmas_uS.push_back(*v);
      }
      if (o.sigmas_uS.empty() || o.sigmas_uS.size() > 32) {
        return std::unexpected(UsageError{"--sigmas: allowed 1..32 values, comma-separated"});
      }
    } else if (flag == "--instantiations") {
      auto v = in_range<int>(flag, value, 1, 10000);
      if (!v) return std::unexpected(v.error());
      o.instantiations = *v;
    } else if (flag == "--clips") {
      // The range is the test split's size, checked when the manifest is read.
      const auto v = parse_number<int>(value);
      if (!v) {
        return std::unexpected(UsageError{fmt::format(
            "--clips = {}: allowed 1..the test split's size (624 in the default set)", value)});
      }
      o.clips = *v;
    } else if (flag == "--threads") {
      auto v = in_range<int>(flag, value, 1, 64);
      if (!v) return std::unexpected(v.error());
      o.threads = *v;
    } else if (flag == "--seed") {
      auto v = in_range<uint64_t>(flag, value, 0, std::numeric_limits<uint64_t>::max());
      if (!v) return std::unexpected(v.error());
      o.seed = *v;
    } else if (flag == "--profile" || flag == "--data" || flag == "--json") {
      if (value.empty()) return std::unexpected(UsageError{flag + " needs a value"});
      (flag == "--profile" ? o.profile : flag == "--data" ? o.data_dir : o.json_path) = value;
    } else if (flag == "--png") {
      // Gone with the C++ figure; the old command lines in bench/RESULTS.md's history say it.
      return std::unexpected(
          UsageError{"--png: the box plot is drawn from --json's file: /usr/bin/python3 "
                     "bench/accuracy/plot_noise_sweep.py FILE.json -o FILE.png"});
    } else if (flag == "--kernels") {
      if (value != "board" && value != "crossbar") {
        return std::unexpected(UsageError{"--kernels = " + value + ": allowed board or crossbar"});
      }
      o.crossbar = value == "crossbar";
    } else if (flag == "--noise-on") {
      if (value != "all" && value != "weights") {
        return std::unexpected(UsageError{"--noise-on = " + value + ": allowed all or weights"});
      }
      o.weights_only = value == "weights";
    } else if (flag == "--models") {
      o.models = split(value, ',');
      if (o.models.empty() || o.models.size() > 8 ||
          std::ranges::any_of(o.models, [](const std::string& m) { return m.empty(); })) {
        return std::unexpected(UsageError{"--models: allowed 1..8 files, comma-separated"});
      }
    } else {
      return std::unexpected(UsageError{"unknown flag " + flag + " (flags: --help)"});
    }
  }
  return o;
}

// ---- inputs ----

std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Model {
  std::string file, label;  // label: "2-bit" for ...-2bit.json, else the file's stem
  model::ModelSpec spec;
  std::vector<kernel::CompiledKernel> compiled;          // kernel k goes to array k
  const std::vector<Eigen::VectorXd>* inputs = nullptr;  // the clips, preprocessed for it
  double software_accuracy = 0;
};

std::expected<Model, UsageError> load_model(const std::string& file) {
  Model m;
  m.file = file;
  const std::string stem = std::filesystem::path(file).stem().string();
  const auto dash = stem.rfind('-');
  const std::string tail = dash == std::string::npos ? "" : stem.substr(dash + 1);
  m.label = tail.size() > 3 && tail.ends_with("bit") &&
                    std::all_of(tail.begin(), tail.end() - 3,
                                [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })
                ? tail.substr(0, tail.size() - 3) + "-bit"
                : stem;
  const auto text = slurp(file);
  if (!text) return std::unexpected(UsageError{"--models: cannot read " + file});
  v1::Model proto;
  if (const auto st = google::protobuf::util::JsonStringToMessage(*text, &proto); !st.ok()) {
    return std::unexpected(
        UsageError{fmt::format("{}: not an xbar.v1.Model in JSON: {}", file, st.ToString())});
  }
  auto spec = server::model_from_proto(proto);
  if (!spec) return std::unexpected(UsageError{file + ": " + spec.error().message});
  m.spec = std::move(*spec);
  for (const auto& k : m.spec.kernels.kernels) {
    m.compiled.push_back(kernel::compile(k, m.spec.kernels.window));
  }
  return m;
}

struct Clip {
  std::string file;
  int label = 0;
  audio::Audio audio;
};

// The first n test clips of DIR/manifest.json, alternating label 0 and 1 (bench/accuracy/
// accuracy.py's order: its i-th "zero", its i-th "one", ...), decoded.
std::expected<std::vector<Clip>, UsageError> load_clips(const std::string& dir, int n) {
  const std::string manifest_path = dir + "/manifest.json";
  const auto text = slurp(manifest_path);
  if (!text) {
    return std::unexpected(
        UsageError{fmt::format("--data: cannot read {} (generate the data set: /usr/bin/python3 "
                               "models/data.py generate)",
                               manifest_path)});
  }
  google::protobuf::Struct manifest;
  if (const auto st = google::protobuf::util::JsonStringToMessage(*text, &manifest); !st.ok()) {
    return std::unexpected(UsageError{manifest_path + ": not JSON: " + st.ToString()});
  }
  const auto clips_it = manifest.fields().find("clips");
  if (clips_it == manifest.fields().end() || !clips_it->second.has_list_value()) {
    return std::unexpected(UsageError{manifest_path + ": no \"clips\" list"});
  }
  std::vector<std::string> by_label[2];
  for (const auto& v : clips_it->second.list_value().values()) {
    const auto& f = v.struct_value().fields();
    const auto file = f.find("file"), split_it = f.find("split"), label = f.find("label");
    if (file == f.end() || split_it == f.end() || label == f.end() ||
        !file->second.has_string_value() || !label->second.has_number_value()) {
      return std::unexpected(
          UsageError{manifest_path + ": a clip without \"file\", \"split\" and \"label\""});
    }
    if (split_it->second.string_value() != "test") continue;
    const double l = label->second.number_value();
    if (l != 0 && l != 1) {
      return std::unexpected(UsageError{fmt::format(
          "{}: {}: label {}: allowed 0 or 1", manifest_path, file->second.string_value(), l)});
    }
    by_label[static_cast<int>(l)].push_back(file->second.string_value());
  }
  const size_t available = by_label[0].size() + by_label[1].size();
  if (n < 1 || static_cast<size_t>(n) > available) {
    return std::unexpected(UsageError{
        fmt::format("--clips = {}: allowed 1..{} (the test split of {})", n, available, dir)});
  }
  std::vector<Clip> out;
  for (size_t i = 0; out.size() < static_cast<size_t>(n); ++i) {
    for (int label = 0; label < 2 && out.size() < static_cast<size_t>(n); ++label) {
      if (i < by_label[label].size()) out.push_back({by_label[label][i], label, {}});
    }
  }
  for (Clip& c : out) {
    const std::string path = dir + "/" + c.file;
    const auto bytes = slurp(path);
    if (!bytes) return std::unexpected(UsageError{"--data: cannot read " + path});
    auto a = audio::decode_audio(
        std::span(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()));
    if (!a) return std::unexpected(UsageError{path + ": " + a.error().message});
    c.audio = std::move(*a);
  }
  return out;
}

Result<std::vector<Eigen::VectorXd>> preprocess_all(const std::vector<Clip>& clips,
                                                    const model::Preprocessing& mp) {
  std::vector<Eigen::VectorXd> out;
  for (const Clip& c : clips) {
    auto s = audio::preprocess(c.audio, mp);  // steps x channels, step-major
    if (!s) return make_error(s.error().code, c.file + ": " + s.error().message);
    out.push_back(Eigen::Map<const Eigen::VectorXf>(s->data(), static_cast<Eigen::Index>(s->size()))
                      .cast<double>());
  }
  return out;
}

// ---- one instantiation ----

// Standard normals from a fixed, portable recipe (mt19937_64 and Box-Muller: std::
// normal_distribution is implementation-defined), so a seed means the same draws everywhere.
class Normals {
 public:
  explicit Normals(uint64_t seed) : rng_(seed) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - unit(), u2 = unit();  // u1 in (0, 1]
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2 * M_PI * u2);
  }

 private:
  double unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }  // [0, 1)
  std::mt19937_64 rng_;
  double spare_ = 0;
  bool has_spare_ = false;
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The one place where a deployed kernel of this benchmark is described to the model layer:
// kernel `k` of `m`, on `array` with the identity placement, its conductances as set. (The
// targets are written with the identity placement too: run_instantiation.)
model::PlacedKernel placed_kernel(const Model& m, int k, int array, const Eigen::MatrixXd& g_uS) {
  return model::PlacedKernel{m.compiled[static_cast<size_t>(k)], kernel::Placement::identity(),
                             array, g_uS, model::input_bound(m.spec, k)};
}

// Draws target + sigma z, clipped, for every device of `array` (only where `noisy` > 0 when it
// is given; a z is drawn for every device all the same) and sets the devices to it when there is
// a board; returns the values as set (the twin stores a float).
Result<Eigen::MatrixXd> write_with_noise(Board* board, int array, const Eigen::MatrixXd& target_uS,
                                         const Eigen::MatrixXd* noisy, double sigma_uS,
                                         Normals& z) {
  Eigen::MatrixXd g_uS(target_uS.rows(), target_uS.cols());
  for (int r = 0; r < target_uS.rows(); ++r) {
    for (int c = 0; c < target_uS.cols(); ++c) {
      const double dg_uS = sigma_uS * z.next();
      const bool on = noisy == nullptr || (*noisy)(r, c) > 0;
      const double g = std::clamp(target_uS(r, c) + (on ? dg_uS : 0.0), kMinG_uS, kMaxG_uS);
      g_uS(r, c) = static_cast<double>(static_cast<float>(g));
      if (!board) continue;
      if (auto s = board->sim_inject_fault(array, r, c, wire::FaultKind::kNone, g_uS(r, c)); !s) {
        return std::unexpected(s.error());
      }
    }
  }
  return g_uS;
}

// The kernels computed from the conductances as written, in floating point, without a board.
model::KernelFn crossbar_kernels(const std::vector<model::PlacedKernel>& placed) {
  return [placed](const std::vector<Eigen::VectorXd>& z) -> Result<std::vector<Eigen::VectorXd>> {
    std::vector<Eigen::VectorXd> out;
    for (size_t k = 0; k < z.size(); ++k) {
      out.push_back(
          kernel::run_crossbar(placed[k].compiled, placed[k].placement, placed[k].g_uS, z[k]));
    }
    return out;
  };
}

struct Outcome {
  double accuracy = 0;    // 0..1
  double max_radius = 0;  // the largest spectral radius of the kernels' state matrices as set
};

// Model `m` on `clips` with write noise sigma, draw `instantiation`: on `board`, or with
// crossbar_kernels when it is null.
Result<Outcome> run_instantiation(Board* board, const Model& m, const std::vector<Clip>& clips,
                                  double sigma_uS, bool weights_only, uint64_t seed,
                                  int instantiation) {
  Normals z(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(instantiation))));
  Outcome out;
  std::vector<model::PlacedKernel> placed;
  for (int k = 0; k < m.spec.width(); ++k) {
    const int array = k;
    const auto& ck = m.compiled[static_cast<size_t>(k)];
    const Eigen::MatrixXd target = kernel::place(ck.target_uS, kernel::Placement::identity());
    const Eigen::MatrixXd weights = kernel::place(ck.part, kernel::Placement::identity());
    auto g_uS =
        write_with_noise(board, array, target, weights_only ? &weights : nullptr, sigma_uS, z);
    if (!g_uS) return std::unexpected(g_uS.error());
    placed.push_back(placed_kernel(m, k, array, *g_uS));
    const auto& p = placed.back();
    out.max_radius = std::max(
        out.max_radius,
        kernel::spectral_radius(kernel::effective_state_matrix(p.compiled, p.placement, p.g_uS)));
  }
  model::KernelFn fn;
  if (board) {
    auto hw = model::hardware_kernels(*board, placed);
    if (!hw) return std::unexpected(hw.error());
    fn = std::move(*hw);
  } else {
    fn = crossbar_kernels(placed);
  }
  int right = 0;
  for (size_t i = 0; i < clips.size(); ++i) {
    auto f = model::forward(m.spec, (*m.inputs)[i], fn);
    if (!f) return make_error(f.error().code, clips[i].file + ": " + f.error().message);
    right += f->label == clips[i].label;
  }
  out.accuracy = static_cast<double>(right) / static_cast<double>(clips.size());
  return out;
}

// ---- statistics ----

struct Summary {
  double mean = 0, sd = 0, min = 0, median = 0, max = 0;
};

// Quantile with linear interpolation between order statistics (R's type 7, numpy's default).
double quantile(const std::vector<double>& sorted, double p) {
  const double h = p * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

Summary summarise(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;  // sample sd
  s.min = v.front();
  s.max = v.back();
  s.median = quantile(v, 0.5);
  return s;
}

// ---- outputs ----

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string kernels_name(const Options& o) {
  return std::string(o.crossbar ? "floating-point crossbar model (kernel::run_crossbar, no board)"
                                : "board (sim:profile=" + o.profile + ")") +
         (o.weights_only ? ", write noise on the weight-carrying devices only"
                         : ", write noise on every device");
}

// [model][sigma][instantiation]: accuracy in percent, or the largest spectral radius.
using Results = std::vector<std::vector<std::vector<double>>>;

std::string to_json(const Options& o, const std::vector<Model>& models, const Results& acc,
                    const Results& radius, int clips, double wall_s) {
  std::string j = "{\n";
  j += fmt::format("  \"benchmark\": \"write_noise_sweep\",\n  \"kernels\": {},\n",
                   json_string(o.crossbar ? "crossbar" : "board"));
  j += fmt::format("  \"profile\": {},\n  \"noise_on\": {},\n",
                   json_string(o.crossbar ? "" : o.profile),
                   json_string(o.weights_only ? "weights" : "all"));
  j += fmt::format("  \"data\": {},\n  \"clips\": {},\n  \"instantiations\": {},\n",
                   json_string(o.data_dir), clips, o.instantiations);
  j += fmt::format("  \"seed\": {},\n  \"threads\": {},\n  \"wall_s\": {:.1f},\n", o.seed,
                   o.threads, wall_s);
  j += fmt::format("  \"sigmas_uS\": [{}],\n  \"models\": [\n", fmt::join(o.sigmas_uS, ", "));
  for (size_t m = 0; m < models.size(); ++m) {
    j += fmt::format("    {{\"file\": {}, \"label\": {}, \"software_accuracy_pct\": {:.4f},\n",
                     json_string(models[m].file), json_string(models[m].label),
                     100 * models[m].software_accuracy);
    j += "     \"sweep\": [\n";
    for (size_t s = 0; s < o.sigmas_uS.size(); ++s) {
      j += fmt::format(
          "       {{\"sigma_uS\": {}, \"accuracy_pct\": [{:.4f}],\n"
          "        \"max_spectral_radius\": [{:.5f}]}}{}\n",
          o.sigmas_uS[s], fmt::join(acc[m][s], ", "), fmt::join(radius[m][s], ", "),
          s + 1 < o.sigmas_uS.size() ? "," : "");
    }
    j += fmt::format("     ]}}{}\n", m + 1 < models.size() ? "," : "");
  }
  return j + "  ]\n}\n";
}

int run(int argc, char** argv) {
  bool help = false;
  auto parsed = parse_flags(argc, argv, help);
  if (!parsed) {
    fmt::print(stderr, "write_noise_sweep: {}\n", parsed.error().message);
    return 2;
  }
  if (help) {
    fmt::print("{}", kUsage);
    return 0;
  }
  const Options o = *parsed;
  const auto t_start = Clock::now();

  // Boards first: a bad profile is a bad flag.
  const std::string uri = "sim:profile=" + o.profile;
  std::vector<std::unique_ptr<Board>> boards;
  for (int t = 0; t < o.threads; ++t) {
    auto b = Board::open(uri);
    if (!b) {
      fmt::print(stderr, "write_noise_sweep: --profile {}: {}\n", o.profile, b.error().message);
      return 2;
    }
    boards.push_back(std::move(*b));
  }
  const BoardInfo info = boards[0]->info();

  std::vector<Model> models;
  for (const std::string& f : o.models) {
    auto m = load_model(f);
    if (!m) {
      fmt::print(stderr, "write_noise_sweep: {}\n", m.error().message);
      return 2;
    }
    if (m->spec.width() > info.arrays) {
      fmt::print(stderr, "write_noise_sweep: {}: {} kernels, the board has {} arrays\n", f,
                 m->spec.width(), info.arrays);
      return 2;
    }
    models.push_back(std::move(*m));
  }
  auto clips = load_clips(o.data_dir, o.clips);
  if (!clips) {
    fmt::print(stderr, "write_noise_sweep: {}\n", clips.error().message);
    return 2;
  }
  int n_label[2] = {0, 0};
  for (const Clip& c : *clips) ++n_label[c.label];

  // Preprocessed once per distinct preprocessing; the software baseline per model.
  // A list, not a map: Preprocessing has equality, not an order (a handful of models).
  std::list<std::pair<model::Preprocessing, std::vector<Eigen::VectorXd>>> inputs;
  for (Model& m : models) {
    const model::Preprocessing& p = m.spec.preprocessing;
    auto it = std::find_if(inputs.begin(), inputs.end(),
                           [&](const auto& entry) { return entry.first == p; });
    if (it == inputs.end()) {
      auto u = preprocess_all(*clips, p);
      if (!u) {
        fmt::print(stderr, "write_noise_sweep: {}\n", u.error().message);
        return 1;
      }
      it = inputs.emplace(inputs.end(), p, std::move(*u));
    }
    m.inputs = &it->second;
    const model::KernelFn sw = model::software_kernels(m.compiled);
    int right = 0;
    for (size_t i = 0; i < clips->size(); ++i) {
      auto f = model::forward(m.spec, (*m.inputs)[i], sw);
      if (!f) {
        fmt::print(stderr, "write_noise_sweep: {}: {}: {}\n", m.file, (*clips)[i].file,
                   f.error().message);
        return 1;
      }
      right += f->label == (*clips)[i].label;
    }
    m.software_accuracy = static_cast<double>(right) / static_cast<double>(clips->size());
  }

  // The sweep: (model, sigma, instantiation) items shared out to the workers as they finish.
  struct Item {
    size_t model, sigma;
    int instantiation;
  };
  std::vector<Item> items;
  for (int i = 0; i < o.instantiations; ++i) {
    for (size_t s = 0; s < o.sigmas_uS.size(); ++s) {
      for (size_t m = 0; m < models.size(); ++m) items.push_back({m, s, i});
    }
  }
  const Results shape(
      models.size(),
      std::vector<std::vector<double>>(o.sigmas_uS.size(),
                                       std::vector<double>(static_cast<size_t>(o.instantiations))));
  Results acc = shape, radius = shape;
  std::atomic<size_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::mutex mu;  // first_error, progress output
  std::string first_error;
  const bool tty = isatty(STDERR_FILENO) != 0;
  const auto t_sweep = Clock::now();
  auto worker = [&](Board* board) {
    while (!failed) {
      const size_t k = next++;
      if (k >= items.size()) return;
      const Item& it = items[k];
      auto a = run_instantiation(board, models[it.model], *clips, o.sigmas_uS[it.sigma],
                                 o.weights_only, o.seed, it.instantiation);
      std::lock_guard lock(mu);
      if (!a) {
        if (!failed.exchange(true)) {
          first_error =
              fmt::format("{} at sigma {} uS, instantiation {}: {}", models[it.model].label,
                          o.sigmas_uS[it.sigma], it.instantiation, a.error().message);
        }
        return;
      }
      acc[it.model][it.sigma][static_cast<size_t>(it.instantiation)] = 100 * a->accuracy;
      radius[it.model][it.sigma][static_cast<size_t>(it.instantiation)] = a->max_radius;
      const size_t d = ++done;
      const double s = std::chrono::duration<double>(Clock::now() - t_sweep).count();
      if (tty) {
        fmt::print(stderr, "\r{}/{} instantiations, {:.0f} s ", d, items.size(), s);
      } else if (d * 10 / items.size() != (d - 1) * 10 / items.size() || d == items.size()) {
        fmt::print(stderr, "{}/{} instantiations, {:.0f} s\n", d, items.size(), s);
      }
    }
  };
  std::vector<std::thread> threads;
  try {
    for (auto& b : boards) threads.emplace_back(worker, o.crossbar ? nullptr : b.get());
  } catch (const std::system_error& e) {  // the threads started so far finish the work
    if (threads.empty()) throw;
    fmt::print(stderr, "write_noise_sweep: started {} of {} threads: {}\n", threads.size(),
               boards.size(), e.what());
  }
  for (auto& t : threads) t.join();
  if (tty) fmt::print(stderr, "\n");
  if (failed) {
    fmt::print(stderr, "write_noise_sweep: {}\n", first_error);
    return 1;
  }
  const double sweep_s = std::chrono::duration<double>(Clock::now() - t_sweep).count();
  const double wall_s = std::chrono::duration<double>(Clock::now() - t_start).count();
  const double steps = static_cast<double>(items.size()) * static_cast<double>(clips->size()) *
                       static_cast<double>((*models[0].inputs)[0].size() + 1);

  fmt::print(
      "Write-noise sweep, kernels on the {}: {} test clips ({} zero, {} one) of {}, {} "
      "instantiations per model and sigma, seed {}, {} threads\n\n",
      kernels_name(o), clips->size(), n_label[0], n_label[1], o.data_dir, o.instantiations, o.seed,
      o.threads);
  fmt::print(
      "| model | σ µS | n | mean % | sd | min | median | max | software % | vs software | ρ ≥ 1 "
      "|\n");
  fmt::print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t m = 0; m < models.size(); ++m) {
    const double sw = 100 * models[m].software_accuracy;
    for (size_t s = 0; s < o.sigmas_uS.size(); ++s) {
      const Summary st = summarise(acc[m][s]);
      const auto unstable = std::ranges::count_if(radius[m][s], [](double r) { return r >= 1; });
      fmt::print(
          "| {} | {:g} | {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:+.2f} | {} "
          "|\n",
          models[m].label, o.sigmas_uS[s], acc[m][s].size(), st.mean, st.sd, st.min, st.median,
          st.max, sw, st.mean - sw, unstable);
    }
  }
  fmt::print(
      "\nρ ≥ 1: instantiations in which some kernel's state matrix as written (kernel::"
      "effective_state_matrix) has a spectral radius >= 1, i.e. is unstable.\n"
      "Wall time {:.1f} s (the sweep {:.1f} s: {} instantiations, {:.0f} {} steps/s over {} "
      "threads)\n",
      wall_s, sweep_s, items.size(), steps / sweep_s, o.crossbar ? "crossbar" : "loop", o.threads);

  int rc = 0;
  if (!o.json_path.empty()) {
    std::ofstream out(o.json_path);
    out << to_json(o, models, acc, radius, static_cast<int>(clips->size()), wall_s);
    if (!out.flush()) {
      fmt::print(stderr, "write_noise_sweep: --json: cannot write {}\n", o.json_path);
      rc = 1;
    } else {
      fmt::print("JSON: {}\n", o.json_path);
    }
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "write_noise_sweep: {}\n", e.what());
  } catch (...) {
    fmt::print(stderr, "write_noise_sweep: unknown error\n");
  }
  return 1;
}
