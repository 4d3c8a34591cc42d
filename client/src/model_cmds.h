// xbarctl's model commands (ModelService, proto/xbar/v1/models.proto): deploy-model, infer and
// stream.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace xbar::client {

class Session;

/// What a client needs to know of a deployment's model before sending it audio.
struct ModelAudio {
  bool has_model = false;
  uint32_t sample_rate_hz = 48000;  // the model's preprocessing rate (default where unset)
  uint32_t downsample = 64;         // samples per step
};

/// ModelAudio of deployment `id` (one GetDeployment call); the call's status on failure.
std::expected<ModelAudio, grpc::Status> model_audio(const Session& session, const std::string& id);

class ModelCommands {
 public:
  /// Registers the subcommands on `app` (which must outlive this object).
  explicit ModelCommands(CLI::App& app);
  ~ModelCommands();
  ModelCommands(const ModelCommands&) = delete;
  ModelCommands& operator=(const ModelCommands&) = delete;

  /// Runs the subcommand that was parsed and returns its exit code; nullopt when none of these
  /// was given.
  std::optional<int> run(const Session& session) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xbar::client
