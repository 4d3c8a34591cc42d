// Progress of long operations on stderr (program, scan, deploy, deploy-model, stream, bench).
// On a terminal one bar redrawn in place; otherwise (a log, a pipe) a line when a task starts,
// each time it passes a 10 % step, and its last state: logs stay short and readable.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace xbar::client {

class Progress {
 public:
  /// Disabled: prints nothing (--quiet). `tty` < 0: whether `out` is a terminal.
  explicit Progress(bool enabled, std::FILE* out = stderr, int tty = -1, int columns = 0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// A stage line ("compile  kernel 0"); closes an open bar first.
  void note(std::string_view text);
  /// Task `task` at `fraction` (clamped to 0..1), `detail` after the bar. A new task name
  /// starts a new bar.
  void bar(std::string_view task, double fraction, std::string_view detail = {});
  /// Ends the bar (a newline on a terminal; its last state, if not printed yet, otherwise).
  void finish();

  /// The bar's text: "TASK [#####.....]  50 % DETAIL" (for tests).
  static std::string render(std::string_view task, double fraction, std::string_view detail);

 private:
  void emit_line(const std::string& line);
  bool enabled_, tty_;
  int columns_;
  std::FILE* out_;
  std::string task_, pending_;  // pending_: last state not yet printed (not a terminal)
  int step_ = -1;               // last 10 % step printed
  bool open_ = false;
};

}  // namespace xbar::client
