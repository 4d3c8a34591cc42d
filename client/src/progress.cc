#include "progress.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace xbar::client {

namespace {
constexpr int kBarWidth = 30;
}

Progress::Progress(bool enabled, std::FILE* out, int tty, int columns)
    : enabled_(enabled), tty_(false), columns_(columns), out_(out) {
  if (!enabled_) return;
  tty_ = tty < 0 ? isatty(fileno(out_)) != 0 : tty != 0;
  if (tty_ && columns_ <= 0) {
    winsize ws{};
    if (ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) columns_ = ws.ws_col;
  }
}

Progress::~Progress() { finish(); }

std::string Progress::render(std::string_view task, double fraction, std::string_view detail) {
  const double f = std::isfinite(fraction) ? std::clamp(fraction, 0.0, 1.0) : 0.0;
  const int done = static_cast<int>(std::floor(f * kBarWidth));
  std::string line =
      fmt::format("{} [{}{}] {:>3} %", task, std::string(done, '#'),
                  std::string(kBarWidth - done, '.'), static_cast<int>(std::floor(f * 100)));
  if (!detail.empty()) line += fmt::format(" {}", detail);
  return line;
}

void Progress::emit_line(const std::string& line) {
  std::fputs(line.c_str(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

void Progress::note(std::string_view text) {
  if (!enabled_) return;
  finish();
  emit_line(std::string(text));
}

void Progress::bar(std::string_view task, double fraction, std::string_view detail) {
  if (!enabled_) return;
  if (task != task_) {
    finish();
    task_ = task;
    step_ = -1;
  }
  const std::string line = render(task, fraction, detail);
  if (tty_) {
    std::string shown = line;
    // A line that wraps cannot be redrawn with '\r'.
    if (columns_ > 1 && shown.size() >= static_cast<size_t>(columns_)) shown.resize(columns_ - 1);
    std::fputs(("\r" + shown + "\x1b[K").c_str(), out_);
    std::fflush(out_);
    open_ = true;
    return;
  }
  const double f = std::isfinite(fraction) ? std::clamp(fraction, 0.0, 1.0) : 0.0;
  const int step = static_cast<int>(std::floor(f * 10));
  if (step > step_) {
    emit_line(line);
    step_ = step;
    pending_.clear();
  } else {
    pending_ = line;
  }
  open_ = true;
}

void Progress::finish() {
  if (!enabled_ || !open_) return;
  if (tty_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  } else if (!pending_.empty()) {
    emit_line(pending_);
  }
  pending_.clear();
  open_ = false;
  task_.clear();
  step_ = -1;
}

}  // namespace xbar::client
