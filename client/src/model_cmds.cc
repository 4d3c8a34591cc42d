#include "model_cmds.h"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "cli.h"
#include "deploy_cmds.h"
#include "json_out.h"
#include "model_proto.h"
#include "operation_cmds.h"
#include "progress.h"
#include "xbar/audio/audio.h"
#include "xbar/v1/kernels.grpc.pb.h"
#include "xbar/v1/models.grpc.pb.h"

namespace xbar::client {

namespace {

std::string result_name(uint32_t label, const std::string& class_name) {
  return class_name.empty() ? fmt::format("class {}", label) : class_name;
}

using StreamInferStream = grpc::ClientReaderWriter<v1::StreamInferRequest, v1::StreamInferResponse>;

// The clip as it is streamed: at the stream's rate, and the steps the daemon will answer (for
// the progress).
struct StreamInput {
  int rate_hz = 0;
  std::vector<float> samples;
  double expected_steps = 1;
};

// What the daemon answered: how many answers, the last one, and all of them for --json.
struct StreamAnswers {
  int count = 0;
  v1::StreamInferResponse last;
  Json json = Json::array();
};

// Reads the answers until the daemon ends the stream: the running result as a bar on stderr,
// the final one (or, with --quiet, each one) on stdout; with --json only collected.
StreamAnswers read_stream_answers(const Session& session, StreamInferStream& rw,
                                  double expected_steps) {
  StreamAnswers answers;
  v1::StreamInferResponse r;
  Progress progress(session.progress());
  while (rw.Read(&r)) {
    ++answers.count;
    answers.last = r;
    const std::string now =
        r.probabilities_size() > static_cast<int>(r.label())
            ? fmt::format("{} (p {:.3f})", result_name(r.label(), r.class_name()),
                          r.probabilities(static_cast<int>(r.label())))
            : std::string("-");
    progress.bar("stream", r.final() ? 1.0 : r.steps() / expected_steps,
                 fmt::format("step {}: {}", r.steps(), now));
    if (session.json()) {
      answers.json.push_back(proto_value(r));
    } else if (r.final()) {
      progress.finish();
      std::cout << fmt::format("final step {}: {}\n", r.steps(), now);
    } else if (!session.progress() && r.probabilities_size() > 0) {
      std::cout << fmt::format("      step {}: {}\n", r.steps(), now);
    }
  }
  return answers;
}

}  // namespace

std::expected<ModelAudio, grpc::Status> model_audio(const Session& session, const std::string& id) {
  auto stub = v1::KernelService::NewStub(session.channel());
  v1::GetDeploymentRequest req;
  req.set_id(id);
  v1::Deployment dep;
  auto ctx = session.context();
  const grpc::Status s = stub->GetDeployment(ctx.get(), req, &dep);
  if (!s.ok()) return std::unexpected(s);
  ModelAudio a;
  if (dep.has_model()) {
    const v1::Model& model = dep.model();
    a.has_model = true;
    if (model.preprocessing().sample_rate_hz() > 0)
      a.sample_rate_hz = model.preprocessing().sample_rate_hz();
    if (model.preprocessing().downsample() > 0) a.downsample = model.preprocessing().downsample();
  }
  return a;
}

struct ModelCommands::Impl {
  CLI::App* deploy = nullptr;
  CLI::App* infer = nullptr;
  CLI::App* stream = nullptr;
  double chunk_ms = 20;
  int rate_hz = 0;  // 0: the model's
  std::string model_path, name, clip, deployment;
  std::vector<uint32_t> arrays;
  bool replace = false, software = false, emulate = false, kernel_outputs = false, detach = false;
  v1::InferPath path() const {
    return software ? v1::INFER_SOFTWARE : emulate ? v1::INFER_EMULATE : v1::INFER_HARDWARE;
  }
  std::string path_name() const { return software ? "software" : emulate ? "emulate" : "hardware"; }
  std::string remap = "auto";
  double tol_uS = 0, max_nrmse = 0;
  std::optional<double> min_agreement;
  uint32_t max_rounds = 0;
  uint32_t keep_clips = 16;
  bool mode_ranges = true;

  CLI::App* calibrate = nullptr;
  std::vector<std::string> clips;  // calibrate: files or directories
  std::string out_path, source;

  // Each registers its subcommand on `app` with its options, filling in the fields above.
  void add_deploy(CLI::App& app);
  void add_infer(CLI::App& app);
  void add_stream(CLI::App& app);
  void add_calibrate(CLI::App& app);

  int run_deploy(const Session& session) const;
  int run_infer(const Session& session) const;
  int run_stream(const Session& session) const;
  // run_stream's parts: the clip at the stream's rate (error: the exit code, the reason on
  // stderr); the clip sent in --chunk-ms chunks (the writer thread); the --json document.
  std::expected<StreamInput, int> load_stream_input(const Session& session) const;
  void send_clip(StreamInferStream& rw, const StreamInput& in) const;
  void print_stream_json(const StreamInput& in, StreamAnswers answers) const;
  int run_calibrate(const Session& session) const;
};

ModelCommands::ModelCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  impl_->add_deploy(app);
  impl_->add_infer(app);
  impl_->add_stream(app);
  impl_->add_calibrate(app);
}

void ModelCommands::Impl::add_deploy(CLI::App& app) {
  deploy = app.add_subcommand(
      "deploy-model",
      "deploy a model: its kernels onto the arrays, its digital layers on the host");
  deploy->add_option("MODEL.json", model_path, "an xbar.v1.Model in the protobuf JSON mapping")
      ->required();
  deploy->add_option("--name", name, "deployment name (default: the model's)");
  deploy->add_option("--remap", remap, "auto or naive")
      ->check(CLI::IsMember({"auto", "naive"}))
      ->capture_default_str();
  deploy->add_option("--arrays", arrays, "arrays it may use, e.g. 0,2 (default: all)")
      ->delimiter(',');
  deploy->add_flag("--replace", replace, "take arrays held by other deployments");
  deploy->add_option("--tol", tol_uS, "program-verify tolerance in uS (default: the daemon's)");
  deploy->add_option("--max-rounds", max_rounds,
                     "program-verify rounds per array (default: the daemon's)");
  deploy->add_option("--max-nrmse", max_nrmse,
                     "read-back NRMSE above which the deployment is degraded (default 0.5)");
  deploy
      ->add_option("--min-agreement", min_agreement,
                   "with fidelity clips in the model: the fraction of them on which the board's "
                   "label must equal the software path's, else degraded (default 0.8)")
      ->check(CLI::Range(0.0, 1.0));
  deploy->add_flag("--detach", detach,
                   "start it and return: print the operation id (xbarctl watch ID follows it)");
  deploy->footer(footer_with(
      "Progress (stages, a bar per array) goes to stderr. Exit 0 when the deployment is ready,\n"
      "1 when degraded or failed, 6 when the arrays are held by another deployment.\n"
      "--detach: prints the operation id and returns; xbard goes on (xbarctl watch ID).\n"
      "Examples:\n  xbarctl deploy-model models/example-model.json --replace\n"
      "  xbarctl --json deploy-model model.json --name kws-v2 --arrays 0,1,2 | jq -r .id\n"
      "  xbarctl deploy-model models/example-model.json --replace --detach"));
}

void ModelCommands::Impl::add_infer(CLI::App& app) {
  infer = app.add_subcommand("infer", "classify one clip (WAV/FLAC) with a deployed model");
  infer->add_option("CLIP", clip, "audio file: WAV, FLAC or OGG, any rate and channels")
      ->required();
  infer->add_option("--deployment,-d", deployment, "deployment id (dep-...)")->required();
  auto* infer_sw = infer->add_flag("--software", software,
                                   "run the kernels in software instead of on the board");
  infer
      ->add_flag("--emulate", emulate,
                 "the board-exact reference: the loop's arithmetic on the host, one VMM per step "
                 "on the board (same codes as the board's loop on the twin)")
      ->excludes(infer_sw);
  infer->add_flag("--kernel-outputs", kernel_outputs,
                  "include each kernel's output sequence (--json)");
  infer->footer(footer_with(
      "--json: the InferResponse (logits, probabilities, label, class_name, steps, board_ms).\n"
      "Exit 4 for an unknown deployment, 6 for one without a model.\n"
      "Examples:\n  xbarctl infer clip.wav -d dep-0123456789ab\n"
      "  xbarctl --json infer clip.flac -d dep-0123456789ab --software\n"
      "  xbarctl --json infer clip.wav -d dep-0123456789ab --emulate --kernel-outputs"));
}

void ModelCommands::Impl::add_stream(CLI::App& app) {
  stream = app.add_subcommand("stream",
                              "stream a clip to a deployed model in chunks; results as they come");
  stream->add_option("CLIP", clip, "audio file: WAV, FLAC or OGG (resampled here to --rate)")
      ->required();
  stream->add_option("--deployment,-d", deployment, "deployment id (dep-...)")->required();
  stream->add_option("--chunk-ms", chunk_ms, "chunk length in ms")
      ->check(CLI::Range(1.0, 10000.0))
      ->capture_default_str();
  stream->add_option("--rate", rate_hz, "sample rate in Hz (default: the model's)")
      ->check(CLI::Range(1000, 384000));
  auto* stream_sw = stream->add_flag("--software", software,
                                     "run the kernels in software instead of on the board");
  stream
      ->add_flag("--emulate", emulate,
                 "the board-exact reference: the loop's arithmetic on the host, one VMM per step")
      ->excludes(stream_sw);
  stream->footer(footer_with(
      "Prints the running result as the steps complete; progress (steps of the clip) on stderr.\n"
      "--json: one document at the end: the answers in order and the final result.\n"
      "Examples:\n  xbarctl stream clip.wav -d dep-0123456789ab --chunk-ms 20\n"
      "  xbarctl --json --quiet stream clip.wav -d dep-0123456789ab | jq .class_name"));
}

void ModelCommands::Impl::add_calibrate(CLI::App& app) {
  calibrate = app.add_subcommand(
      "calibrate",
      "measure the ranges a model's kernels meet on real clips and write them into the model "
      "(offline: no daemon needed)");
  calibrate->add_option("MODEL.json", model_path, "an xbar.v1.Model in the protobuf JSON mapping")
      ->required();
  calibrate
      ->add_option("CLIPS", clips, "audio files (WAV, FLAC, OGG), or directories searched for them")
      ->required();
  calibrate->add_option("--out,-o", out_path, "where to write the calibrated model")->required();
  calibrate->add_option("--source", source,
                        "where the clips come from, recorded in the model (default: the paths)");
  calibrate
      ->add_option("--keep-clips", keep_clips,
                   "clips kept in the model (preprocessed, evenly spaced in path order) for "
                   "DeployModel's fidelity check; 0: none")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  calibrate->add_flag("--mode-ranges,!--no-mode-ranges", mode_ranges,
                      "size each mode's codes from the clips (kernel_set mode_range; default) "
                      "or use the worst-case mode gains (clearing any the model carries)");
  calibrate->footer(footer_with(
      "Runs every clip through the model's preprocessing, encoder and each kernel's compiled\n"
      "recurrence and records, per kernel, the largest state the array holds, output and input\n"
      "(Model.calibration). xbard then sizes the board loop's 8-bit state range from them, so\n"
      "real clips do not clip (docs/models.md, \"Calibration\"). Use the model's training clips.\n"
      "--keep-clips N keeps N of them, preprocessed, in calibration.fidelity_clips: DeployModel\n"
      "runs them on the board and in software and reports the agreement (Deployment.fidelity).\n"
      "Examples:\n  xbarctl calibrate model.json data/voices/train -o model-cal.json\n"
      "  xbarctl --json calibrate model.json a.wav b.wav -o out.json"));
}

ModelCommands::~ModelCommands() = default;

std::optional<int> ModelCommands::run(const Session& session) const {
  const Impl& m = *impl_;
  if (*m.deploy) return m.run_deploy(session);
  if (*m.infer) return m.run_infer(session);
  if (*m.stream) return m.run_stream(session);
  if (*m.calibrate) return m.run_calibrate(session);
  return std::nullopt;
}

int ModelCommands::Impl::run_deploy(const Session& session) const {
  auto text = read_file_bytes(model_path);
  if (!text) {
    std::cerr << "xbarctl: " << text.error() << "\n";
    return kUsage;
  }
  v1::DeployModelRequest req;
  if (auto s = google::protobuf::util::JsonStringToMessage(*text, req.mutable_model()); !s.ok()) {
    std::cerr << "xbarctl: " << model_path << ": " << s.message() << "\n";
    return kUsage;
  }
  set_deploy_options(req.mutable_options(), name, remap, arrays, replace, tol_uS, max_rounds,
                     max_nrmse);
  if (min_agreement) req.set_min_label_agreement(*min_agreement);
  auto stub = v1::ModelService::NewStub(session.channel());
  auto ctx = session.context(kLongCallS);
  if (detach) request_detach(*ctx);
  auto reader = stub->DeployModel(ctx.get(), req);
  v1::DeployKernelResponse msg;
  bool got = reader->Read(&msg);
  if (auto rc = after_first_message(session, *ctx, *reader, got, detach)) return *rc;
  return finish_deploy_stream(session, *reader, msg, got, operation_id(*ctx));
}

int ModelCommands::Impl::run_infer(const Session& session) const {
  auto bytes = read_file_bytes(clip);
  if (!bytes) {
    std::cerr << "xbarctl: " << bytes.error() << "\n";
    return kUsage;
  }
  v1::InferRequest req;
  req.set_deployment(deployment);
  req.set_audio(*bytes);
  req.set_path(path());
  req.set_kernel_outputs(kernel_outputs);
  auto stub = v1::ModelService::NewStub(session.channel());
  auto ctx = session.context();
  v1::InferResponse out;
  const grpc::Status s = stub->Infer(ctx.get(), req, &out);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    std::cout << proto_json(out) << "\n";
    return kOk;
  }
  std::string probs;
  for (int i = 0; i < out.probabilities_size(); ++i)
    probs += fmt::format("{}p{} {:.4f}", i ? ", " : "", i, out.probabilities(i));
  std::cout << fmt::format(
      "{}  ({})  {} steps, {}\n", result_name(out.label(), out.class_name()), probs, out.steps(),
      software  ? std::string("software kernels")
      : emulate ? fmt::format("board-exact emulation {:.1f} ms", out.board_ms())
                : fmt::format("board closed loop {:.1f} ms", out.board_ms()));
  return kOk;
}

std::expected<StreamInput, int> ModelCommands::Impl::load_stream_input(
    const Session& session) const {
  auto audio_in = audio::load_audio_file(clip);
  if (!audio_in) {
    std::cerr << "xbarctl: " << audio_in.error().message << "\n";
    return std::unexpected(kUsage);
  }
  // The model's rate (a stream is not resampled by the daemon) and its step length, for the
  // progress; an explicit --rate is sent as given (the daemon refuses a wrong one).
  ModelAudio model;
  if (auto a = model_audio(session, deployment)) {
    model = *a;
  } else {
    return std::unexpected(session.fail(a.error()));
  }
  const int rate = rate_hz > 0 ? rate_hz : static_cast<int>(model.sample_rate_hz);
  auto at_rate = audio::resample(*audio_in, rate);
  if (!at_rate) {
    std::cerr << "xbarctl: " << at_rate.error().message << "\n";
    return std::unexpected(kUsage);
  }
  StreamInput in{.rate_hz = rate, .samples = std::move(at_rate->samples)};
  // The daemon's steps: ceil(n / downsample) (the last, partial one comes with the end).
  const size_t all_steps = (in.samples.size() + model.downsample - 1) / model.downsample;
  in.expected_steps = std::max<double>(1, static_cast<double>(all_steps));
  return in;
}

void ModelCommands::Impl::send_clip(StreamInferStream& rw, const StreamInput& in) const {
  const std::vector<float>& samples = in.samples;
  const auto chunk = std::max<size_t>(1, static_cast<size_t>(chunk_ms * 1e-3 * in.rate_hz));
  v1::StreamInferRequest q;
  q.set_deployment(deployment);
  q.set_sample_rate_hz(static_cast<uint32_t>(in.rate_hz));
  q.set_path(path());
  for (size_t start = 0; start < samples.size() || start == 0; start += chunk) {
    const size_t end = std::min(samples.size(), start + chunk);
    for (size_t i = start; i < end; ++i) q.add_samples(samples[i]);
    q.set_end(end == samples.size());
    if (!rw.Write(q)) break;
    q.Clear();
    if (end == samples.size()) break;
  }
  rw.WritesDone();
}

void ModelCommands::Impl::print_stream_json(const StreamInput& in, StreamAnswers answers) const {
  const v1::StreamInferResponse& last = answers.last;
  Json j;
  j["deployment"] = deployment;
  j["path"] = path_name();
  j["sample_rate_hz"] = in.rate_hz;
  j["chunk_ms"] = json_number(chunk_ms);
  j["samples"] = in.samples.size();
  j["steps"] = last.steps();
  j["label"] = last.label();
  j["class_name"] = last.class_name();
  j["probabilities"] = json_numbers(last.probabilities());
  j["logits"] = json_numbers(last.logits());
  j["answers"] = std::move(answers.json);
  std::cout << dump(j) << "\n";
}

int ModelCommands::Impl::run_stream(const Session& session) const {
  auto in = load_stream_input(session);
  if (!in) return in.error();
  auto stub = v1::ModelService::NewStub(session.channel());
  auto ctx = session.context(kLongCallS);
  auto rw = stub->StreamInfer(ctx.get());
  std::thread writer([&] { send_clip(*rw, *in); });
  StreamAnswers answers = read_stream_answers(session, *rw, in->expected_steps);
  writer.join();
  const grpc::Status s = rw->Finish();
  if (!s.ok()) return session.fail(s);
  if (answers.count == 0) {
    std::cerr << "xbarctl: the daemon sent no answer\n";
    return kFailed;
  }
  if (session.json()) print_stream_json(*in, std::move(answers));
  return kOk;
}

}  // namespace xbar::client

namespace xbar::client {

namespace {

// The model a calibration starts from: without its calibration (measured anew), and its spec.
struct ModelToCalibrate {
  v1::Model proto;
  model::ModelSpec spec;
};

// Error: the exit code, the reason on stderr.
std::expected<ModelToCalibrate, int> load_model_to_calibrate(const std::string& model_path) {
  auto text = read_file_bytes(model_path);
  if (!text) {
    std::cerr << "xbarctl: " << model_path << ": " << text.error() << "\n";
    return std::unexpected(kUsage);
  }
  v1::Model model;
  if (auto st = google::protobuf::util::JsonStringToMessage(*text, &model); !st.ok()) {
    std::cerr << "xbarctl: " << model_path << ": not an xbar.v1.Model: " << st.ToString() << "\n";
    return std::unexpected(kUsage);
  }
  model.clear_calibration();  // measured anew
  auto spec = server::model_from_proto(model);
  if (!spec) {
    std::cerr << "xbarctl: " << model_path << ": " << spec.error().message << "\n";
    return std::unexpected(kUsage);
  }
  return ModelToCalibrate{.proto = std::move(model), .spec = std::move(*spec)};
}

// The audio files among `clips`: files as given, directories searched for .wav, .flac and .ogg.
std::vector<std::filesystem::path> find_audio_files(const std::vector<std::string>& clips) {
  std::vector<std::filesystem::path> files;
  for (const std::string& c : clips) {
    std::error_code ec;
    if (std::filesystem::is_directory(c, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(c, ec)) {
        std::string ext = e.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        if (e.is_regular_file() && (ext == ".wav" || ext == ".flac" || ext == ".ogg")) {
          files.push_back(e.path());
        }
      }
    } else {
      files.emplace_back(c);
    }
  }
  std::sort(files.begin(), files.end());  // the same clips give the same file, in any order
  return files;
}

// The model's own front end (block average or log-mel): each clip is steps x channels values.
// A bar on stderr per clip. Error: the exit code, the reason on stderr.
std::expected<std::vector<Eigen::VectorXd>, int> preprocess_clips(
    const std::vector<std::filesystem::path>& files, const audio::Preprocessing& pp,
    bool show_progress) {
  std::vector<Eigen::VectorXd> steps;
  steps.reserve(files.size());
  Progress progress(show_progress);
  for (size_t i = 0; i < files.size(); ++i) {
    auto a = audio::load_audio_file(files[i].string());
    if (!a) {
      std::cerr << "xbarctl: " << a.error().message << "\n";
      return std::unexpected(kUsage);
    }
    auto s = audio::preprocess(*a, pp);
    if (!s) {
      std::cerr << "xbarctl: " << files[i].string() << ": " << s.error().message << "\n";
      return std::unexpected(kUsage);
    }
    steps.emplace_back(
        Eigen::Map<const Eigen::VectorXf>(s->data(), static_cast<Eigen::Index>(s->size()))
            .cast<double>());
    progress.bar("calibrate", static_cast<double>(i + 1) / static_cast<double>(files.size()),
                 files[i].filename().string());
  }
  return steps;
}

std::vector<kernel::CompiledKernel> compile_kernels(const model::ModelSpec& spec) {
  std::vector<kernel::CompiledKernel> out;
  out.reserve(spec.kernels.kernels.size());
  for (const kernel::KernelSpec& k : spec.kernels.kernels) {
    out.push_back(kernel::compile(k, spec.kernels.window));
  }
  return out;
}

// Sets the mode ranges of every kernel, in the spec and the proto (measured on `steps`, or
// cleared for the worst-case gains), and returns the kernels compiled with them. Error: the
// exit code, the reason on stderr.
std::expected<std::vector<kernel::CompiledKernel>, int> compile_with_mode_ranges(
    ModelToCalibrate& m, const std::vector<Eigen::VectorXd>& steps, bool measure) {
  std::vector<kernel::CompiledKernel> compiled = compile_kernels(m.spec);
  if (measure) {
    // Each mode's codes sized from what the clips put in it (kernel_set.kernels[k].mode_range),
    // then the kernel's state range measured on the kernels compiled that way.
    auto ranges = model::measure_mode_ranges(m.spec, compiled, steps);
    if (!ranges) {
      std::cerr << "xbarctl: " << ranges.error().message << "\n";
      return std::unexpected(kFailed);
    }
    for (size_t k = 0; k < ranges->size(); ++k) {
      m.spec.kernels.kernels[k].mode_range = (*ranges)[k];
      auto* field =
          m.proto.mutable_kernel_set()->mutable_kernels(static_cast<int>(k))->mutable_mode_range();
      field->Assign((*ranges)[k].begin(), (*ranges)[k].end());
    }
  } else {
    // The worst-case gains: a model trained with its own mode ranges (models/train.py) loses
    // them, and its state ranges are measured again on the kernels compiled without.
    for (size_t k = 0; k < m.spec.kernels.kernels.size(); ++k) {
      m.spec.kernels.kernels[k].mode_range.clear();
      m.proto.mutable_kernel_set()->mutable_kernels(static_cast<int>(k))->clear_mode_range();
    }
  }
  return compile_kernels(m.spec);
}

// Where the clips come from: --source, else the paths given; cut to the 256 characters a model
// allows.
void record_source(model::Calibration& cal, const std::string& source,
                   const std::vector<std::string>& clips) {
  if (!source.empty()) {
    cal.source = source;
  } else {
    for (const std::string& c : clips) cal.source += (cal.source.empty() ? "" : ", ") + c;
  }
  if (cal.source.size() > 256) cal.source = cal.source.substr(0, 253) + "...";
}

// Keeps `keep_clips` of the preprocessed clips for DeployModel's fidelity check.
void keep_fidelity_clips(model::Calibration& cal, const std::vector<Eigen::VectorXd>& steps,
                         size_t keep_clips) {
  // Evenly spaced in path order: a directory sorted by speaker or word gives some of each.
  const size_t keep = std::min<size_t>(keep_clips, steps.size());
  for (size_t i = 0; i < keep; ++i) cal.fidelity_clips.push_back(steps[i * steps.size() / keep]);
}

// `model` in the protobuf JSON mapping, indented, to `out_path`.
std::expected<void, std::string> write_model_json(const v1::Model& model,
                                                  const std::string& out_path) {
  google::protobuf::util::JsonPrintOptions jo;
  jo.add_whitespace = true;
  std::string json;
  if (auto st = google::protobuf::util::MessageToJsonString(model, &json, jo); !st.ok()) {
    return std::unexpected(st.ToString());
  }
  std::ofstream out(out_path);
  out << json;
  if (!out.flush()) return std::unexpected("--out " + out_path + ": cannot write");
  return {};
}

void print_calibration(const model::Calibration& cal,
                       const std::vector<kernel::CompiledKernel>& compiled,
                       const std::string& out_path) {
  std::cout << fmt::format("{} clips ({})\n", cal.clips, cal.source);
  for (size_t k = 0; k < cal.kernels.size(); ++k) {
    const model::KernelRange& r = cal.kernels[k];
    std::cout << fmt::format(
        "kernel {}: state max {:.4g} (least {:.4g}), output max {:.4g}, input max {:.4g}\n", k,
        r.state_max, model::least_state_range(compiled[k], r.input_max), r.output_max, r.input_max);
  }
  std::cout << "wrote " << out_path << "\n";
}

}  // namespace

int ModelCommands::Impl::run_calibrate(const Session& session) const {
  auto m = load_model_to_calibrate(model_path);
  if (!m) return m.error();
  const std::vector<std::filesystem::path> files = find_audio_files(clips);
  if (files.empty()) {
    std::cerr << "xbarctl: no audio files (.wav, .flac, .ogg) in the clips given\n";
    return kUsage;
  }
  auto steps = preprocess_clips(files, m->spec.preprocessing, session.progress());
  if (!steps) return steps.error();
  auto compiled = compile_with_mode_ranges(*m, *steps, mode_ranges);
  if (!compiled) return compiled.error();
  auto cal = model::calibrate(m->spec, *compiled, *steps);
  if (!cal) {
    std::cerr << "xbarctl: " << cal.error().message << "\n";
    return kFailed;
  }
  record_source(*cal, source, clips);
  keep_fidelity_clips(*cal, *steps, keep_clips);
  server::calibration_to_proto(*cal, &m->proto);
  // What deploy will check: the model with its calibration is valid.
  if (auto again = server::model_from_proto(m->proto); !again) {
    std::cerr << "xbarctl: the calibrated model is refused: " << again.error().message << "\n";
    return kFailed;
  }
  if (auto w = write_model_json(m->proto, out_path); !w) {
    std::cerr << "xbarctl: " << w.error() << "\n";
    return kFailed;
  }
  if (session.json()) {
    std::cout << proto_json(m->proto.calibration()) << "\n";
    return kOk;
  }
  print_calibration(*cal, *compiled, out_path);
  return kOk;
}

}  // namespace xbar::client
