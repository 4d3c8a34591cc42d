// xbarctl's board and array commands (BoardService, ArrayService: proto/xbar/v1/board.proto,
// arrays.proto): info, status, read, program, scan, faults.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "xbar/v1/arrays.pb.h"

namespace CLI {
class App;
}

namespace xbar::client {

class Progress;
class Session;

/// Shows one ProgramArray message on `progress`: a bar per round under `task`. When it is the
/// report, copies it to `report` and returns true.
bool show_program_message(Progress& progress, std::string_view task,
                          const v1::ProgramArrayResponse& msg, v1::ProgramReport* report);

/// Shows one ScanFaults message on `progress`: a bar per phase under `task`. When it is the
/// report, copies it to `report` and returns true.
bool show_scan_message(Progress& progress, std::string_view task, const v1::ScanFaultsResponse& msg,
                       v1::ScanReport* report);

/// What a program-verify report is printed with; what is not known (`xbarctl watch` knows
/// neither the array nor the tolerance) is left out of the text and null in --json.
struct ProgramResultInfo {
  std::optional<uint32_t> array;
  std::optional<double> tol_uS;
  std::string csv, png;  // written by the caller
  std::string operation;
};

/// Prints the result of a program-verify run (text, or --json) and returns the exit code
/// (1 when it was cancelled).
int print_program_result(const Session& session, const v1::ProgramReport& report,
                         const ProgramResultInfo& info);

/// Prints the result of a scan (text, or --json; `png` when the caller wrote one) and returns
/// the exit code (1 when it was cancelled).
int print_scan_result(const Session& session, const v1::ScanReport& report, const std::string& png,
                      const std::string& operation);

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
