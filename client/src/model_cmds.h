// xbarctl's model commands (ModelService, proto/xbar/v1/models.proto): deploy-model and infer.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "deploy_cmds.h"

namespace xbar::client {

class ModelCommands {
 public:
  explicit ModelCommands(CLI::App& app);
  ~ModelCommands();
  ModelCommands(const ModelCommands&) = delete;
  ModelCommands& operator=(const ModelCommands&) = delete;
  std::optional<int> run(const CliGlobal& g, const std::shared_ptr<grpc::Channel>& channel,
                         const std::function<int(const grpc::Status&)>& fail) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xbar::client
