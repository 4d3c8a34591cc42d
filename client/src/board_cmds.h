// xbarctl's board and array commands (BoardService, ArrayService: proto/xbar/v1/board.proto,
// arrays.proto): info, status, read, program, scan, faults.
#pragma once

#include <memory>
#include <optional>

namespace CLI {
class App;
}

namespace xbar::client {

class Session;

class BoardCommands {
 public:
  /// Registers the subcommands on `app` (which must outlive this object).
  explicit BoardCommands(CLI::App& app);
  ~BoardCommands();
  BoardCommands(const BoardCommands&) = delete;
  BoardCommands& operator=(const BoardCommands&) = delete;

  /// Runs the subcommand that was parsed and returns its exit code; nullopt when none of these
  /// was given.
  std::optional<int> run(const Session& session) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xbar::client
