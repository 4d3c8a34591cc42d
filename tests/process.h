// Test helper: starts a real process (xbard, xbar-fwsim, xbarctl) with its output captured,
// and kills it (SIGTERM, then SIGKILL) when the object goes away.
//
// Timing policy of the tests (docs/reliability.md, "Tests under load"): they pass on a loaded
// machine (CI runs them 2 at a time on 2 cores, under sanitizers) as on a quiet one. A test
// waits for a condition (eventually(), a log line, a state it polls, the twin's hooks), never
// for a guessed time; the bound of such a wait is generous (kGenerous) because it costs
// nothing when the condition comes. A deadline the product must keep (a timeout, a reopen
// window) is checked against a bound far from it, or by what the product says. Which of two
// racing outcomes wins is never assumed: the test forces the order or waits for one.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace xbar::testing {

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "xbar-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class Process {
 public:
  /// Starts argv[0] with stdout+stderr redirected to `log`.
  Process(std::vector<std::string> argv, std::filesystem::path log) : log_(std::move(log)) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    if (const int e = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ); e != 0) {
      pid_ = -1;
      exit_ = std::string("not started: posix_spawn: ") + std::strerror(e);
    }
    posix_spawn_file_actions_destroy(&fa);
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { stop(); }

  bool started() const { return pid_ > 0; }
  /// The process id while it runs (-1 before it started or after it ended).
  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      ended(status);
      return false;
    }
    return true;
  }
  /// Waits for exit and returns the exit code (128+signal when killed).
  int wait() {
    if (pid_ > 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
      ended(status);
    }
    return exit_code_;
  }
  /// SIGTERM, then up to `timeout` for it to exit (SIGKILL after that); true when it exited
  /// with status 0 in time. exit_description() says how it ended.
  bool terminate(std::chrono::milliseconds timeout) {
    if (!running()) return exit_code_ == 0;
    kill(pid_, SIGTERM);
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (running() && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (running()) {
      kill(pid_, SIGKILL);
      wait();
      exit_ = "did not stop within " + std::to_string(timeout.count()) + " ms of SIGTERM";
      return false;
    }
    return exit_code_ == 0;
  }
  /// How it ended: "exit N", "signal N", "running", or why it did not start or stop.
  const std::string& exit_description() const { return exit_; }
  void stop() {
    if (!running()) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (running()) {
      kill(pid_, SIGKILL);
      wait();
    }
  }
  /// Sends `sig` (SIGSTOP freezes it, SIGCONT lets it go on) while it runs.
  void signal(int sig) {
    if (running()) kill(pid_, sig);
  }
  /// kill -9, as an operator or the OOM killer would.
  void kill_hard() {
    if (!running()) return;
    kill(pid_, SIGKILL);
    wait();
  }
  std::string output() const { return read_file(log_); }

 private:
  void ended(int status) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    exit_ = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                              : "signal " + std::to_string(WTERMSIG(status));
    pid_ = -1;
  }
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string exit_ = "running";
  std::filesystem::path log_;
};

/// xbarctl's argv with a generous --timeout, unless `argv` gives one: its 30 s default for
/// short calls (info, read, infer, ...) is the product's, not what a test checks, and a loaded
/// machine must not turn a slow answer into exit code 5. argv[0] is xbarctl.
inline std::vector<std::string> with_generous_timeout(std::vector<std::string> argv) {
  if (std::find(argv.begin(), argv.end(), "--timeout") == argv.end())
    argv.insert(argv.begin() + 1, {"--timeout", "600"});
  return argv;
}

/// Runs a command to completion; returns {exit code, combined output}.
inline std::pair<int, std::string> run(std::vector<std::string> argv,
                                       const std::filesystem::path& log) {
  Process p(std::move(argv), log);
  const int rc = p.wait();
  return {rc, p.output()};
}

/// The end-to-end setup: xbar-fwsim (`profile`, chip `seed`) on a Unix socket in `dir`, and
/// xbard in front of it listening on another one, with its chip record in `state_dir` and
/// `xbard_extra` flags. The caller waits for xbard to answer (its own client).
struct TwinAndDaemon {
  std::filesystem::path fwsim_sock;
  std::string xbard_addr;
  std::unique_ptr<Process> fwsim, xbard;
  bool fwsim_up = false;  // the twin's socket appeared
};

/// The bound of a wait for something that must happen (a process up, a log line, a state):
/// long enough for a sanitizer build on a loaded machine, and only reached on a failure.
inline constexpr std::chrono::milliseconds kGenerous = std::chrono::seconds(120);

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = kGenerous);

inline TwinAndDaemon start_twin_and_daemon(const std::filesystem::path& dir,
                                           const std::string& fwsim_exe,
                                           const std::string& xbard_exe, const std::string& profile,
                                           int seed, const std::filesystem::path& state_dir,
                                           std::vector<std::string> xbard_extra = {}) {
  TwinAndDaemon t;
  t.fwsim_sock = dir / "fwsim.sock";
  t.xbard_addr = "unix:" + (dir / "xbard.sock").string();
  t.fwsim = std::make_unique<Process>(
      std::vector<std::string>{fwsim_exe, "--profile", profile, "--seed", std::to_string(seed),
                               "--listen", "unix:" + t.fwsim_sock.string()},
      dir / "fwsim.log");
  t.fwsim_up = eventually([&] { return std::filesystem::exists(t.fwsim_sock); });
  if (!t.fwsim_up) return t;
  std::vector<std::string> argv = {xbard_exe,         "--board",    "unix:" + t.fwsim_sock.string(),
                                   "--listen",        t.xbard_addr, "--state-dir",
                                   state_dir.string()};
  argv.insert(argv.end(), xbard_extra.begin(), xbard_extra.end());
  t.xbard = std::make_unique<Process>(std::move(argv), dir / "xbard.log");
  return t;
}

/// Polls `pred` every 20 ms for up to `timeout`.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace xbar::testing
