// xbarctl's matrix commands (MatrixService, proto/xbar/v1/matrices.proto): `matrix deploy`,
// `matrix multiply` and `matrix capacity`. main.cc registers them and runs the one parsed.
#pragma once

#include <memory>
#include <optional>

namespace CLI {
class App;
}

namespace xbar::client {

class Session;

class MatrixCommands {
 public:
  /// Registers `matrix` and its subcommands on `app` (which must outlive this object).
  explicit MatrixCommands(CLI::App& app);
  ~MatrixCommands();
  MatrixCommands(const MatrixCommands&) = delete;
  MatrixCommands& operator=(const MatrixCommands&) = delete;

  /// Runs the subcommand that was parsed and returns its exit code; nullopt when none of these
  /// was given.
  std::optional<int> run(const Session& session) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xbar::client
