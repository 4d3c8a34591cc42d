#include "model_cmds.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "xbar/audio/audio.h"
#include "xbar/v1/models.grpc.pb.h"

namespace xbar::client {

namespace {

std::optional<std::string> read_file(const std::string& path, std::string* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = path + ": cannot open";
    return std::nullopt;
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string to_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

}  // namespace

struct ModelCommands::Impl {
  CLI::App* deploy = nullptr;
  CLI::App* infer = nullptr;
  CLI::App* stream = nullptr;
  double chunk_ms = 20;
  int rate_hz = 48000;
  std::string model_path, name, clip, deployment;
  std::vector<uint32_t> arrays;
  bool replace = false, software = false, kernel_outputs = false;
  std::string remap = "auto";
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
      ->check(CLI::IsMember({"auto", "naive"}));
  m.deploy->add_option("--arrays", m.arrays, "arrays it may use (default: all)")->delimiter(',');
  m.deploy->add_flag("--replace", m.replace, "take arrays held by other deployments");
  m.deploy->footer("Examples:\n  xbarctl deploy-model models/example-model.json --replace");
  m.infer = app.add_subcommand("infer", "classify one clip (WAV/FLAC) with a deployed model");
  m.infer->add_option("CLIP", m.clip, "audio file: WAV, FLAC or OGG, any rate and channels")
      ->required();
  m.infer->add_option("--deployment,-d", m.deployment, "deployment id (dep-...)")->required();
  m.infer->add_flag("--software", m.software,
                    "run the kernels in software instead of on the board");
  m.infer->add_flag("--kernel-outputs", m.kernel_outputs,
                    "include each kernel's output sequence (--json)");
  m.infer->footer(
      "Examples:\n  xbarctl infer clip.wav -d dep-0123456789ab\n  xbarctl --json infer clip.flac "
      "-d dep-0123456789ab --software");
  m.stream = app.add_subcommand(
      "stream", "stream a clip to a deployed model in chunks; results as they come");
  m.stream->add_option("CLIP", m.clip, "audio file: WAV, FLAC or OGG (resampled here to --rate)")
      ->required();
  m.stream->add_option("--deployment,-d", m.deployment, "deployment id (dep-...)")->required();
  m.stream->add_option("--chunk-ms", m.chunk_ms, "chunk length in ms")
      ->check(CLI::Range(1.0, 10000.0))
      ->capture_default_str();
  m.stream->add_option("--rate", m.rate_hz, "the model's sample rate in Hz")
      ->check(CLI::Range(1000, 384000))
      ->capture_default_str();
  m.stream->add_flag("--software", m.software,
                     "run the kernels in software instead of on the board");
  m.stream->footer("Examples:\n  xbarctl stream clip.wav -d dep-0123456789ab --chunk-ms 20");
}

ModelCommands::~ModelCommands() = default;

std::optional<int> ModelCommands::run(const CliGlobal& g,
                                      const std::shared_ptr<grpc::Channel>& channel,
                                      const std::function<int(const grpc::Status&)>& fail) const {
  const Impl& m = *impl_;
  auto stub = v1::ModelService::NewStub(channel);
  if (*m.deploy) {
    std::string err;
    auto text = read_file(m.model_path, &err);
    if (!text) {
      std::cerr << "xbarctl: " << err << "\n";
      return 2;
    }
    v1::DeployModelRequest req;
    if (auto s = google::protobuf::util::JsonStringToMessage(*text, req.mutable_model()); !s.ok()) {
      std::cerr << "xbarctl: " << m.model_path << ": " << s.ToString() << "\n";
      return 2;
    }
    auto* o = req.mutable_options();
    o->set_name(m.name);
    o->set_remap(m.remap == "naive" ? v1::REMAP_NAIVE : v1::REMAP_AUTO);
    for (uint32_t a : m.arrays) o->add_arrays(a);
    o->set_replace(m.replace);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(600));
    auto reader = stub->DeployModel(&ctx, req);
    v1::DeployKernelResponse msg;
    v1::Deployment dep;
    bool have = false;
    while (reader->Read(&msg)) {
      if (msg.has_deployment()) {
        dep = msg.deployment();
        have = true;
      } else if (!g.json && !msg.progress().message().empty()) {
        std::cerr << msg.progress().stage() << "  " << msg.progress().message() << "\n";
      }
    }
    const grpc::Status s = reader->Finish();
    if (!s.ok()) return fail(s);
    if (!have) return 1;
    if (g.json) {
      for (auto& p : *dep.mutable_placements()) {
        p.clear_target_us();
        p.clear_readback_us();
        p.mutable_programming()->clear_final_us();
      }
      dep.clear_model();
      std::cout << to_json(dep) << "\n";
    } else {
      std::cout << format_deployment(dep);
    }
    return dep.state() == "ready" ? 0 : 1;
  }
  if (*m.infer) {
    std::string err;
    auto bytes = read_file(m.clip, &err);
    if (!bytes) {
      std::cerr << "xbarctl: " << err << "\n";
      return 2;
    }
    v1::InferRequest req;
    req.set_deployment(m.deployment);
    req.set_audio(*bytes);
    req.set_path(m.software ? v1::INFER_SOFTWARE : v1::INFER_HARDWARE);
    req.set_kernel_outputs(m.kernel_outputs);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(g.timeout_s * 1000)));
    v1::InferResponse out;
    const grpc::Status s = stub->Infer(&ctx, req, &out);
    if (!s.ok()) return fail(s);
    if (g.json) {
      std::cout << to_json(out) << "\n";
      return 0;
    }
    std::cout << (out.class_name().empty() ? std::to_string(out.label()) : out.class_name());
    std::cout << "  (";
    for (int i = 0; i < out.probabilities_size(); ++i) {
      std::cout << (i ? ", " : "") << "p" << i << " " << out.probabilities(i);
    }
    std::cout << ")  " << out.steps() << " steps, "
              << (m.software ? "software kernels" : "board closed loop ")
              << (m.software ? "" : std::to_string(out.board_ms()) + " ms") << "\n";
    return 0;
  }
  if (*m.stream) {
    auto clip = audio::load_audio_file(m.clip);
    if (!clip) {
      std::cerr << "xbarctl: " << clip.error().message << "\n";
      return 2;
    }
    auto at_rate = audio::resample(*clip, m.rate_hz);
    if (!at_rate) {
      std::cerr << "xbarctl: " << at_rate.error().message << "\n";
      return 2;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(600));
    auto rw = stub->StreamInfer(&ctx);
    const auto chunk = std::max<size_t>(1, static_cast<size_t>(m.chunk_ms * 1e-3 * m.rate_hz));
    std::thread writer([&] {
      v1::StreamInferRequest q;
      q.set_deployment(m.deployment);
      q.set_sample_rate_hz(static_cast<uint32_t>(m.rate_hz));
      q.set_path(m.software ? v1::INFER_SOFTWARE : v1::INFER_HARDWARE);
      const std::vector<float>& s = at_rate->samples;
      for (size_t start = 0; start < s.size() || start == 0; start += chunk) {
        const size_t end = std::min(s.size(), start + chunk);
        for (size_t i = start; i < end; ++i) q.add_samples(s[i]);
        q.set_end(end == s.size());
        if (!rw->Write(q)) break;
        q.Clear();
        if (end == s.size()) break;
      }
      rw->WritesDone();
    });
    v1::StreamInferResponse r;
    int answers = 0;
    while (rw->Read(&r)) {
      ++answers;
      if (g.json) {
        std::cout << to_json(r) << "\n";
      } else if (r.probabilities_size() > 0) {
        std::cout << (r.final() ? "final " : "      ") << "step " << r.steps() << ": "
                  << (r.class_name().empty() ? std::to_string(r.label()) : r.class_name()) << " (p"
                  << r.label() << " " << r.probabilities(static_cast<int>(r.label())) << ")\n";
      }
    }
    writer.join();
    const grpc::Status s = rw->Finish();
    if (!s.ok()) return fail(s);
    return answers > 0 ? 0 : 1;
  }
  return std::nullopt;
}

}  // namespace xbar::client
