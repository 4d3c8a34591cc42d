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

  int run_deploy(const Session& session) const;
  int run_infer(const Session& session) const;
  int run_stream(const Session& session) const;
  int run_calibrate(const Session& session) const;
};

ModelCommands::ModelCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.deploy = app.add_subcommand(
      "deploy-model",
      "deploy a model: its kernels onto the arrays, its digital layers on the host");
  m.deploy->add_option("MODEL.json", m.model_path, "an xbar.v1.Model in the protobuf JSON mapping")
      ->required();
  m.deploy->add_option("--name", m.name, "deployment name (default: the model's)");
  m.deploy->add_option("--remap", m.remap, "auto or naive")
      ->check(CLI::IsMember({"auto", "naive"}))
      ->capture_default_str();
  m.deploy->add_option("--arrays", m.arrays, "arrays it may use, e.g. 0,2 (default: all)")
      ->delimiter(',');
  m.deploy->add_flag("--replace", m.replace, "take arrays held by other deployments");
  m.deploy->add_option("--tol", m.tol_uS, "program-verify tolerance in uS (default: the daemon's)");
  m.deploy->add_option("--max-rounds", m.max_rounds,
                       "program-verify rounds per array (default: the daemon's)");
  m.deploy->add_option("--max-nrmse", m.max_nrmse,
                       "read-back NRMSE above which the deployment is degraded (default 0.5)");
  m.deploy
      ->add_option("--min-agreement", m.min_agreement,
                   "with fidelity clips in the model: the fraction of them on which the board's "
                   "label must equal the software path's, else degraded (default 0.8)")
      ->check(CLI::Range(0.0, 1.0));
  m.deploy->add_flag("--detach", m.detach,
                     "start it and return: print the operation id (xbarctl watch ID follows it)");
  m.deploy->footer(footer_with(
      "Progress (stages, a bar per array) goes to stderr. Exit 0 when the deployment is ready,\n"
      "1 when degraded or failed, 6 when the arrays are held by another deployment.\n"
      "--detach: prints the operation id and returns; xbard goes on (xbarctl watch ID).\n"
      "Examples:\n  xbarctl deploy-model models/example-model.json --replace\n"
      "  xbarctl --json deploy-model model.json --name kws-v2 --arrays 0,1,2 | jq -r .id\n"
      "  xbarctl deploy-model models/example-model.json --replace --detach"));

  m.infer = app.add_subcommand("infer", "classify one clip (WAV/FLAC) with a deployed model");
  m.infer->add_option("CLIP", m.clip, "audio file: WAV, FLAC or OGG, any rate and channels")
      ->required();
  m.infer->add_option("--deployment,-d", m.deployment, "deployment id (dep-...)")->required();
  auto* infer_sw = m.infer->add_flag("--software", m.software,
                                     "run the kernels in software instead of on the board");
  m.infer
      ->add_flag("--emulate", m.emulate,
                 "the board-exact reference: the loop's arithmetic on the host, one VMM per step "
                 "on the board (same codes as the board's loop on the twin)")
      ->excludes(infer_sw);
  m.infer->add_flag("--kernel-outputs", m.kernel_outputs,
                    "include each kernel's output sequence (--json)");
  m.infer->footer(footer_with(
      "--json: the InferResponse (logits, probabilities, label, class_name, steps, board_ms).\n"
      "Exit 4 for an unknown deployment, 6 for one without a model.\n"
      "Examples:\n  xbarctl infer clip.wav -d dep-0123456789ab\n"
      "  xbarctl --json infer clip.flac -d dep-0123456789ab --software\n"
      "  xbarctl --json infer clip.wav -d dep-0123456789ab --emulate --kernel-outputs"));

  m.stream = app.add_subcommand(
      "stream", "stream a clip to a deployed model in chunks; results as they come");
  m.stream->add_option("CLIP", m.clip, "audio file: WAV, FLAC or OGG (resampled here to --rate)")
      ->required();
  m.stream->add_option("--deployment,-d", m.deployment, "deployment id (dep-...)")->required();
  m.stream->add_option("--chunk-ms", m.chunk_ms, "chunk length in ms")
      ->check(CLI::Range(1.0, 10000.0))
      ->capture_default_str();
  m.stream->add_option("--rate", m.rate_hz, "sample rate in Hz (default: the model's)")
      ->check(CLI::Range(1000, 384000));
  auto* stream_sw = m.stream->add_flag("--software", m.software,
                                       "run the kernels in software instead of on the board");
  m.stream
      ->add_flag("--emulate", m.emulate,
                 "the board-exact reference: the loop's arithmetic on the host, one VMM per step")
      ->excludes(stream_sw);
  m.stream->footer(footer_with(
      "Prints the running result as the steps complete; progress (steps of the clip) on stderr.\n"
      "--json: one document at the end: the answers in order and the final result.\n"
      "Examples:\n  xbarctl stream clip.wav -d dep-0123456789ab --chunk-ms 20\n"
      "  xbarctl --json --quiet stream clip.wav -d dep-0123456789ab | jq .class_name"));

  m.calibrate = app.add_subcommand(
      "calibrate",
      "measure the ranges a model's kernels meet on real clips and write them into the model "
      "(offline: no daemon needed)");
  m.calibrate
      ->add_option("MODEL.json", m.model_path, "an xbar.v1.Model in the protobuf JSON mapping")
      ->required();
  m.calibrate
      ->add_option("CLIPS", m.clips,
                   "audio files (WAV, FLAC, OGG), or directories searched for them")
      ->required();
  m.calibrate->add_option("--out,-o", m.out_path, "where to write the calibrated model")
      ->required();
  m.calibrate->add_option("--source", m.source,
                          "where the clips come from, recorded in the model (default: the paths)");
  m.calibrate
      ->add_option("--keep-clips", m.keep_clips,
                   "clips kept in the model (preprocessed, evenly spaced in path order) for "
                   "DeployModel's fidelity check; 0: none")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  m.calibrate->add_flag("--mode-ranges,!--no-mode-ranges", m.mode_ranges,
                        "size each mode's codes from the clips (kernel_set mode_range; default) "
                        "or use the worst-case mode gains (clearing any the model carries)");
  m.calibrate->footer(footer_with(
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
  auto* o = req.mutable_options();
  o->set_name(name);
  o->set_remap(remap == "naive" ? v1::REMAP_NAIVE : v1::REMAP_AUTO);
  for (uint32_t a : arrays) o->add_arrays(a);
  o->set_replace(replace);
  o->set_tol_us(tol_uS);
  o->set_max_rounds(max_rounds);
  o->set_max_nrmse(max_nrmse);
  if (min_agreement) req.set_min_label_agreement(*min_agreement);
  auto stub = v1::ModelService::NewStub(session.channel());
  auto ctx = session.context(kLongCallS);
  if (detach) request_detach(*ctx);
  auto reader = stub->DeployModel(ctx.get(), req);
  v1::DeployKernelResponse msg;
  bool got = reader->Read(&msg);
  if (auto rc = after_first_message(session, *ctx, *reader, got, detach)) return *rc;
  const std::string op = operation_id(*ctx);
  v1::Deployment dep;
  bool have = false;
  {
    Progress progress(session.progress());
    for (; got; got = reader->Read(&msg)) {
      if (show_deploy_message(progress, msg, &dep)) have = true;
    }
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return session.fail(s);
  if (!have) {
    std::cerr << "xbarctl: the daemon sent no deployment\n";
    return kFailed;
  }
  return print_deploy_result(session, dep, op);
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

int ModelCommands::Impl::run_stream(const Session& session) const {
  auto audio_in = audio::load_audio_file(clip);
  if (!audio_in) {
    std::cerr << "xbarctl: " << audio_in.error().message << "\n";
    return kUsage;
  }
  // The model's rate (a stream is not resampled by the daemon) and its step length, for the
  // progress; an explicit --rate is sent as given (the daemon refuses a wrong one).
  ModelAudio model;
  if (auto a = model_audio(session, deployment)) {
    model = *a;
  } else {
    return session.fail(a.error());
  }
  const int rate = rate_hz > 0 ? rate_hz : static_cast<int>(model.sample_rate_hz);
  auto at_rate = audio::resample(*audio_in, rate);
  if (!at_rate) {
    std::cerr << "xbarctl: " << at_rate.error().message << "\n";
    return kUsage;
  }
  const std::vector<float>& samples = at_rate->samples;
  // The daemon's steps: ceil(n / downsample) (the last, partial one comes with the end).
  const size_t all_steps = (samples.size() + model.downsample - 1) / model.downsample;
  const double expected_steps = std::max<double>(1, static_cast<double>(all_steps));

  auto stub = v1::ModelService::NewStub(session.channel());
  auto ctx = session.context(kLongCallS);
  auto rw = stub->StreamInfer(ctx.get());
  const auto chunk = std::max<size_t>(1, static_cast<size_t>(chunk_ms * 1e-3 * rate));
  std::thread writer([&] {
    v1::StreamInferRequest q;
    q.set_deployment(deployment);
    q.set_sample_rate_hz(static_cast<uint32_t>(rate));
    q.set_path(path());
    for (size_t start = 0; start < samples.size() || start == 0; start += chunk) {
      const size_t end = std::min(samples.size(), start + chunk);
      for (size_t i = start; i < end; ++i) q.add_samples(samples[i]);
      q.set_end(end == samples.size());
      if (!rw->Write(q)) break;
      q.Clear();
      if (end == samples.size()) break;
    }
    rw->WritesDone();
  });
  v1::StreamInferResponse r, last;
  int answers = 0;
  Json answers_json = Json::array();
  {
    Progress progress(session.progress());
    while (rw->Read(&r)) {
      ++answers;
      last = r;
      const std::string now =
          r.probabilities_size() > static_cast<int>(r.label())
              ? fmt::format("{} (p {:.3f})", result_name(r.label(), r.class_name()),
                            r.probabilities(static_cast<int>(r.label())))
              : std::string("-");
      progress.bar("stream", r.final() ? 1.0 : r.steps() / expected_steps,
                   fmt::format("step {}: {}", r.steps(), now));
      if (session.json()) {
        answers_json.push_back(proto_value(r));
      } else if (r.final()) {
        progress.finish();
        std::cout << fmt::format("final step {}: {}\n", r.steps(), now);
      } else if (!session.progress() && r.probabilities_size() > 0) {
        std::cout << fmt::format("      step {}: {}\n", r.steps(), now);
      }
    }
  }
  writer.join();
  const grpc::Status s = rw->Finish();
  if (!s.ok()) return session.fail(s);
  if (answers == 0) {
    std::cerr << "xbarctl: the daemon sent no answer\n";
    return kFailed;
  }
  if (session.json()) {
    Json j;
    j["deployment"] = deployment;
    j["path"] = path_name();
    j["sample_rate_hz"] = rate;
    j["chunk_ms"] = json_number(chunk_ms);
    j["samples"] = samples.size();
    j["steps"] = last.steps();
    j["label"] = last.label();
    j["class_name"] = last.class_name();
    j["probabilities"] = json_numbers(last.probabilities());
    j["logits"] = json_numbers(last.logits());
    j["answers"] = std::move(answers_json);
    std::cout << dump(j) << "\n";
  }
  return kOk;
}

}  // namespace xbar::client

namespace xbar::client {

int ModelCommands::Impl::run_calibrate(const Session& session) const {
  auto text = read_file_bytes(model_path);
  if (!text) {
    std::cerr << "xbarctl: " << model_path << ": " << text.error() << "\n";
    return kUsage;
  }
  v1::Model model;
  if (auto st = google::protobuf::util::JsonStringToMessage(*text, &model); !st.ok()) {
    std::cerr << "xbarctl: " << model_path << ": not an xbar.v1.Model: " << st.ToString() << "\n";
    return kUsage;
  }
  model.clear_calibration();  // measured anew
  auto spec = server::model_from_proto(model);
  if (!spec) {
    std::cerr << "xbarctl: " << model_path << ": " << spec.error().message << "\n";
    return kUsage;
  }
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
  if (files.empty()) {
    std::cerr << "xbarctl: no audio files (.wav, .flac, .ogg) in the clips given\n";
    return kUsage;
  }
  // The model's own front end (block average or log-mel): each clip is steps x channels values.
  const audio::Preprocessing& pp = spec->preprocessing;
  std::vector<Eigen::VectorXd> steps;
  steps.reserve(files.size());
  {
    Progress progress(session.progress());
    for (size_t i = 0; i < files.size(); ++i) {
      auto a = audio::load_audio_file(files[i].string());
      if (!a) {
        std::cerr << "xbarctl: " << a.error().message << "\n";
        return kUsage;
      }
      auto s = audio::preprocess(*a, pp);
      if (!s) {
        std::cerr << "xbarctl: " << files[i].string() << ": " << s.error().message << "\n";
        return kUsage;
      }
      steps.emplace_back(
          Eigen::Map<const Eigen::VectorXf>(s->data(), static_cast<Eigen::Index>(s->size()))
              .cast<double>());
      progress.bar("calibrate", static_cast<double>(i + 1) / static_cast<double>(files.size()),
                   files[i].filename().string());
    }
  }
  auto compile_all = [&] {
    std::vector<kernel::CompiledKernel> out;
    for (const kernel::KernelSpec& k : spec->kernels.kernels) {
      out.push_back(kernel::compile(k, spec->kernels.window));
    }
    return out;
  };
  std::vector<kernel::CompiledKernel> compiled = compile_all();
  if (mode_ranges) {
    // Each mode's codes sized from what the clips put in it (kernel_set.kernels[k].mode_range),
    // then the kernel's state range measured on the kernels compiled that way.
    auto ranges = model::measure_mode_ranges(*spec, compiled, steps);
    if (!ranges) {
      std::cerr << "xbarctl: " << ranges.error().message << "\n";
      return kFailed;
    }
    for (size_t k = 0; k < ranges->size(); ++k) {
      spec->kernels.kernels[k].mode_range = (*ranges)[k];
      auto* field =
          model.mutable_kernel_set()->mutable_kernels(static_cast<int>(k))->mutable_mode_range();
      field->Assign((*ranges)[k].begin(), (*ranges)[k].end());
    }
    compiled = compile_all();
  } else {
    // The worst-case gains: a model trained with its own mode ranges (models/train.py) loses
    // them, and its state ranges are measured again on the kernels compiled without.
    for (size_t k = 0; k < spec->kernels.kernels.size(); ++k) {
      spec->kernels.kernels[k].mode_range.clear();
      model.mutable_kernel_set()->mutable_kernels(static_cast<int>(k))->clear_mode_range();
    }
    compiled = compile_all();
  }
  auto cal = model::calibrate(*spec, compiled, steps);
  if (!cal) {
    std::cerr << "xbarctl: " << cal.error().message << "\n";
    return kFailed;
  }
  if (!source.empty()) {
    cal->source = source;
  } else {
    for (const std::string& c : clips) cal->source += (cal->source.empty() ? "" : ", ") + c;
  }
  if (cal->source.size() > 256) cal->source = cal->source.substr(0, 253) + "...";
  // Evenly spaced in path order: a directory sorted by speaker or word gives some of each.
  const size_t keep = std::min<size_t>(keep_clips, steps.size());
  for (size_t i = 0; i < keep; ++i) cal->fidelity_clips.push_back(steps[i * steps.size() / keep]);
  server::calibration_to_proto(*cal, &model);
  // What deploy will check: the model with its calibration is valid.
  if (auto again = server::model_from_proto(model); !again) {
    std::cerr << "xbarctl: the calibrated model is refused: " << again.error().message << "\n";
    return kFailed;
  }
  google::protobuf::util::JsonPrintOptions jo;
  jo.add_whitespace = true;
  std::string json;
  if (auto st = google::protobuf::util::MessageToJsonString(model, &json, jo); !st.ok()) {
    std::cerr << "xbarctl: " << st.ToString() << "\n";
    return kFailed;
  }
  std::ofstream out(out_path);
  out << json;
  if (!out.flush()) {
    std::cerr << "xbarctl: --out " << out_path << ": cannot write\n";
    return kFailed;
  }
  if (session.json()) {
    std::cout << proto_json(model.calibration()) << "\n";
    return kOk;
  }
  std::cout << fmt::format("{} clips ({})\n", cal->clips, cal->source);
  for (size_t k = 0; k < cal->kernels.size(); ++k) {
    const model::KernelRange& r = cal->kernels[k];
    std::cout << fmt::format(
        "kernel {}: state max {:.4g} (least {:.4g}), output max {:.4g}, input max {:.4g}\n", k,
        r.state_max, model::least_state_range(compiled[k], r.input_max), r.output_max, r.input_max);
  }
  std::cout << "wrote " << out_path << "\n";
  return kOk;
}

}  // namespace xbar::client
