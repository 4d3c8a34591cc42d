// xbarctl as technicians and their scripts use it, with real processes: xbard (in front of
// xbar-fwsim, or on its embedded twin) on Unix sockets, and xbarctl. --json documents are
// parsed with protobuf's JSON parser (google.protobuf.Struct); exit codes are the documented
// table (docs/xbarctl.md). The client side of tokens and TLS is checked against a small gRPC
// server in this process that records what arrives; the daemon side only once xbard has the
// flags (skipped before).
#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "infer_stream.h"
#include "process.h"
#include "xbar/v1/board.grpc.pb.h"
#include "xbar/v1/models.pb.h"

namespace xbar {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using testing::Process;
using testing::TempDir;

const std::string kModel =
    (std::filesystem::path(XBAR_SOURCE_DIR) / "models/example-model.json").string();
// --timeout of the calls that answer at once (refused, unreachable, a small read): generous,
// since a deadline that runs out changes the exit code to 5, and what the tests check are the
// codes and messages.
const std::string kCallTimeout = "60";

struct Ran {
  int rc = -1;
  std::string out, err;
};

std::ostream& operator<<(std::ostream& os, const Ran& r) {
  return os << "exit " << r.rc << "\n--- stdout\n" << r.out << "\n--- stderr\n" << r.err;
}

// Runs a command to completion, stdout and stderr apart, in an environment without the
// caller's XBAR_* variables plus `env` ("NAME=value").
Ran run_split(std::vector<std::string> argv, const std::filesystem::path& dir,
              const std::vector<std::string>& env = {}) {
  const auto out_path = dir / "ctl.out", err_path = dir / "ctl.err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    if (!std::string_view(*e).starts_with("XBAR_")) envs.emplace_back(*e);
  }
  envs.insert(envs.end(), env.begin(), env.end());
  std::vector<char*> args, envp;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  Ran r;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data()) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&fa);
  r.out = testing::read_file(out_path);
  r.err = testing::read_file(err_path);
  return r;
}

// One JSON document (an object), strictly parsed; fails the test otherwise.
Struct parse_json(const std::string& text) {
  Struct s;
  const auto st = google::protobuf::util::JsonStringToMessage(text, &s);
  EXPECT_TRUE(st.ok()) << st.message() << "\n" << text;
  return s;
}

// The value at a dotted path ("status.p50_ms"), or a null Value when absent.
const Value& at(const Struct& s, const std::string& path) {
  static const Value kNull;
  const Struct* cur = &s;
  std::string_view rest = path;
  while (true) {
    const size_t dot = rest.find('.');
    const std::string key(rest.substr(0, dot));
    const auto it = cur->fields().find(key);
    if (it == cur->fields().end()) return kNull;
    if (dot == std::string_view::npos) return it->second;
    if (!it->second.has_struct_value()) return kNull;
    cur = &it->second.struct_value();
    rest = rest.substr(dot + 1);
  }
}

// A mono 16-bit WAV: a 440 Hz tone of `seconds` at `rate_hz`.
void write_wav(const std::filesystem::path& path, double seconds, int rate_hz) {
  const auto n = static_cast<uint32_t>(seconds * rate_hz);
  std::string data;
  for (uint32_t t = 0; t < n; ++t) {
    const auto s = static_cast<int16_t>(0.4 * 32767 * std::sin(2 * M_PI * 440.0 * t / rate_hz));
    data.append(reinterpret_cast<const char*>(&s), 2);
  }
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  f << "RIFF";
  u32(36 + static_cast<uint32_t>(data.size()));
  f << "WAVEfmt ";
  u32(16);
  u16(1);  // PCM
  u16(1);  // mono
  u32(static_cast<uint32_t>(rate_hz));
  u32(static_cast<uint32_t>(rate_hz) * 2);
  u16(2);
  u16(16);
  f << "data";
  u32(static_cast<uint32_t>(data.size()));
  f << data;
}

// --- xbard (in front of xbar-fwsim) on a Unix socket --------------------------------------

class Xbarctl : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = testing::start_twin_and_daemon(dir_.path(), XBAR_FWSIM_PATH, XBARD_PATH, "typical", 7,
                                            dir_.path() / "state");
    addr_ = t.xbard_addr;
    fwsim_ = std::move(t.fwsim);
    xbard_ = std::move(t.xbard);
    ASSERT_TRUE(t.fwsim_up) << fwsim_->output();
    ASSERT_TRUE(addr_.starts_with("unix:"));
    ASSERT_TRUE(testing::eventually([&] { return ctl({"status"}).rc == 0; })) << xbard_->output();
  }

  Ran ctl(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--server", addr_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(testing::with_generous_timeout(argv), dir_.path(), env);
  }

  TempDir dir_;
  std::string addr_;
  std::unique_ptr<Process> fwsim_, xbard_;
};

TEST_F(Xbarctl, JsonOfInfoStatusReadFaultsAndDeploymentsParsesWithTheirFields) {
  const Ran info = ctl({"--json", "info"});
  ASSERT_EQ(info.rc, 0) << info;
  const Struct i = parse_json(info.out);
  EXPECT_TRUE(at(i, "serial").string_value().starts_with("XS")) << info;
  EXPECT_EQ(at(i, "arrays").number_value(), 3);
  EXPECT_EQ(at(i, "rows").number_value(), 64);
  EXPECT_EQ(at(i, "cols").number_value(), 64);
  EXPECT_EQ(at(i, "adc_bits").number_value(), 10);
  EXPECT_TRUE(at(i, "simulated").bool_value());
  EXPECT_EQ(at(i, "backend").string_value(), "unix");
  EXPECT_EQ(at(i, "tia_gains_ohm").list_value().values_size(), 5);
  EXPECT_EQ(at(i, "full_scale_uS").list_value().values_size(), 5);
  EXPECT_LT(at(i, "set_V.lo_V").number_value(), at(i, "set_V.hi_V").number_value());
  EXPECT_GT(at(i, "max_read_avg").number_value(), 1);
  EXPECT_TRUE(info.err.empty()) << info;

  // Global options go after the command too.
  const Ran status = ctl({"status", "--json"});
  ASSERT_EQ(status.rc, 0) << status;
  const Struct s = parse_json(status.out);
  for (const char* k :
       {"uptime_ns", "ops_executed", "pulses_applied", "replays_served", "last_error"}) {
    EXPECT_TRUE(at(s, k).has_number_value()) << k << "\n" << status;
  }
  EXPECT_GT(at(s, "ops_executed").number_value(), 0);

  const Ran read = ctl({"--json", "read", "--array", "1", "--avg", "2"});
  ASSERT_EQ(read.rc, 0) << read;
  const Struct r = parse_json(read.out);
  EXPECT_EQ(at(r, "array").number_value(), 1);
  EXPECT_EQ(at(r, "n_avg").number_value(), 2);
  ASSERT_EQ(at(r, "g_uS").list_value().values_size(), 64);
  EXPECT_EQ(at(r, "g_uS").list_value().values(63).list_value().values_size(), 64);
  EXPECT_LE(at(r, "min_uS").number_value(), at(r, "median_uS").number_value());
  EXPECT_LE(at(r, "median_uS").number_value(), at(r, "max_uS").number_value());

  const Ran faults = ctl({"--json", "faults"});
  ASSERT_EQ(faults.rc, 0) << faults;
  const Struct f = parse_json(faults.out);
  EXPECT_EQ(at(f, "serial").string_value(), at(i, "serial").string_value());
  EXPECT_TRUE(at(f, "faults").has_list_value()) << faults;

  const Ran deps = ctl({"--json", "deployments"});
  ASSERT_EQ(deps.rc, 0) << deps;
  const Struct d = parse_json(deps.out);
  ASSERT_TRUE(at(d, "deployments").has_list_value()) << deps;
  EXPECT_EQ(at(d, "deployments").list_value().values_size(), 0);
}

TEST_F(Xbarctl, UnknownDeploymentIsExitCode4Everywhere) {
  const auto clip = dir_.path() / "clip.wav";
  write_wav(clip, 0.1, 48000);
  const std::string id = "dep-000000000000";
  const std::vector<std::vector<std::string>> commands = {
      {"deployment", id},
      {"undeploy", id},
      {"map", "-d", id, "--png", (dir_.path() / "m.png").string()},
      {"infer", clip.string(), "-d", id},
      {"stream", clip.string(), "-d", id},
      {"bench", "-d", id, "--repeat", "1", "--calls", "1"},
  };
  for (const auto& c : commands) {
    SCOPED_TRACE(c[0]);
    std::vector<std::string> args = {"--json"};
    args.insert(args.end(), c.begin(), c.end());
    const Ran r = ctl(args);
    EXPECT_EQ(r.rc, 4) << r;
    EXPECT_NE(r.err.find("no such deployment"), std::string::npos) << r;
    EXPECT_TRUE(r.out.empty()) << r;  // no half document on stdout
  }
}

TEST_F(Xbarctl, BenchReportsPlausibleFiguresAndPulsesNothing) {
  const Ran b = ctl({"--json", "bench", "--repeat", "2", "--status-calls", "5"});
  ASSERT_EQ(b.rc, 0) << b;
  const Struct j = parse_json(b.out);
  EXPECT_EQ(at(j, "server").string_value(), addr_);
  EXPECT_EQ(at(j, "status.calls").number_value(), 5);
  const double p50 = at(j, "status.p50_ms").number_value(),
               p99 = at(j, "status.p99_ms").number_value();
  EXPECT_GT(p50, 0);
  EXPECT_GE(p99, p50);
  EXPECT_LT(p99, 5000);
  EXPECT_EQ(at(j, "board.pulses_during_bench").number_value(), 0);
  const auto& reads = at(j, "reads").list_value();
  ASSERT_EQ(reads.values_size(), 3) << b;
  for (int a = 0; a < 3; ++a) {
    const Struct& r = reads.values(a).struct_value();
    EXPECT_EQ(at(r, "array").number_value(), a);
    EXPECT_EQ(at(r, "rows").number_value() * at(r, "cols").number_value(), 4096);
    EXPECT_GE(at(r, "median_ms").number_value(), at(r, "best_ms").number_value());
    const double dps = at(r, "devices_per_s").number_value();
    EXPECT_GT(dps, 1e3) << b;  // a 64x64 read over a Unix socket: well under 4 s
    EXPECT_LT(dps, 1e10) << b;
  }
  EXPECT_EQ(at(j, "infer").kind_case(), Value::kNullValue) << b;

  // The human table names every check.
  const Ran h = ctl({"--quiet", "bench", "--repeat", "1"});
  ASSERT_EQ(h.rc, 0) << h;
  EXPECT_NE(h.out.find("status round trip"), std::string::npos) << h;
  EXPECT_NE(h.out.find("read array 2"), std::string::npos) << h;
  EXPECT_NE(h.out.find("devices/s"), std::string::npos) << h;
  EXPECT_TRUE(h.err.empty()) << h;  // --quiet: no progress

  // With a model deployment: timed hardware inference on a synthetic clip.
  const Ran d = ctl({"--json", "--quiet", "deploy-model", kModel});
  ASSERT_TRUE(d.rc == 0 || d.rc == 1) << d;  // ready or degraded (untrained, unscanned chip)
  const std::string id = at(parse_json(d.out), "id").string_value();
  ASSERT_TRUE(id.starts_with("dep-")) << d;
  const Ran bi =
      ctl({"--json", "bench", "-d", id, "--repeat", "1", "--calls", "4", "--clip-ms", "200"});
  ASSERT_EQ(bi.rc, 0) << bi;
  const Struct k = parse_json(bi.out);
  EXPECT_EQ(at(k, "infer.deployment").string_value(), id);
  EXPECT_EQ(at(k, "infer.path").string_value(), "hardware");
  EXPECT_EQ(at(k, "infer.calls").number_value(), 4);
  EXPECT_EQ(at(k, "infer.sample_rate_hz").number_value(), 48000);  // the model's
  const double steps = at(k, "infer.steps").number_value();
  EXPECT_GT(steps, 0) << bi;  // the model's fixed length, or 200 ms at 48 kHz / 64
  const double ip50 = at(k, "infer.p50_ms").number_value();
  EXPECT_GT(ip50, 0);
  EXPECT_GE(at(k, "infer.p99_ms").number_value(), ip50);
  EXPECT_GT(at(k, "infer.board_ms_p50").number_value(), 0);
  EXPECT_LE(at(k, "infer.board_ms_p50").number_value(), at(k, "infer.p99_ms").number_value());
  // steps/s is steps over the mean call time: consistent with the latencies.
  const double sps = at(k, "infer.steps_per_s").number_value();
  EXPECT_NEAR(sps, steps * 1000.0 / at(k, "infer.mean_ms").number_value(), 0.01 * sps + 1);
  EXPECT_EQ(at(k, "board.pulses_during_bench").number_value(), 0);
}

TEST_F(Xbarctl, ProgressIsOneLinePerTenPercentOffATerminalAndQuietSilencesIt) {
  const Ran p = ctl({"--json", "program", "--array", "2", "--random", "7:200", "--seed", "5"});
  ASSERT_EQ(p.rc, 0) << p;
  const Struct j = parse_json(p.out);
  EXPECT_GT(at(j, "within_tol_pct").number_value(), 50) << p;
  EXPECT_TRUE(at(j, "abandoned_cells").has_list_value()) << p;
  // The operation's id: in the document, and announced on stderr's first line.
  const std::string op = at(j, "operation").string_value();
  EXPECT_TRUE(std::regex_match(op, std::regex("op-[0-9a-f]{12}"))) << p;
  std::istringstream lines(p.err);
  std::string line;
  ASSERT_TRUE(std::getline(lines, line)) << p;
  EXPECT_TRUE(line.starts_with("operation " + op + " started")) << p;
  int n = 0;
  int last_pct = -1;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_TRUE(line.starts_with("program array 2 [")) << line;
    EXPECT_EQ(line.find('\r'), std::string::npos) << "no redraw off a terminal";
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, std::regex("\\] +(\\d+) %"))) << line;
    const int pct = std::stoi(m[1]);
    EXPECT_GE(pct, last_pct) << p.err;
    last_pct = pct;
  }
  EXPECT_GE(n, 2) << p.err;
  EXPECT_LE(n, 12) << "one line per 10 % step (and the last state)\n" << p.err;

  const Ran q = ctl({"--quiet", "scan", "--array", "2"});
  ASSERT_EQ(q.rc, 0) << q;
  EXPECT_TRUE(q.err.empty()) << q;
  EXPECT_NE(q.out.find("stuck-high"), std::string::npos) << q;
}

TEST_F(Xbarctl, ClientSideErrorsHaveTheirExitCodes) {
  // mTLS needs both halves; an unreadable CA file is named.
  const Ran half = ctl({"--tls-cert", "/dev/null", "info"});
  EXPECT_EQ(half.rc, 2) << half;
  EXPECT_NE(half.err.find("--tls-key"), std::string::npos) << half;
  const Ran ca = ctl({"--tls-ca", (dir_.path() / "none.pem").string(), "info"});
  EXPECT_EQ(ca.rc, 2) << ca;
  EXPECT_NE(ca.err.find("none.pem: cannot open"), std::string::npos) << ca;
  const Ran tf = ctl({"--token-file", (dir_.path() / "none.token").string(), "info"});
  EXPECT_EQ(tf.rc, 2) << tf;
  const Ran flag = ctl({"info", "--no-such-flag"});
  EXPECT_EQ(flag.rc, 2) << flag;
  // Nobody listening: 3, with the address in the message.
  const std::string none = "unix:" + (dir_.path() / "none.sock").string();
  const Ran down =
      run_split({XBARCTL_PATH, "--server", none, "--timeout", kCallTimeout, "status"}, dir_.path());
  EXPECT_EQ(down.rc, 3) << down;
  EXPECT_NE(down.err.find(none), std::string::npos) << down;
  EXPECT_NE(down.err.find("is xbard running"), std::string::npos) << down;
  // An argument the daemon rejects: 2.
  const Ran bad = ctl({"read", "--array", "3"});
  EXPECT_EQ(bad.rc, 2) << bad;
}

// The board gone from behind a running xbard: UNAVAILABLE from the daemon, which says what
// happened, and no hint that xbard might not be running. The first request that meets the
// closed link waits the reopen window (5 s) and fails "not back within"; every later one fails
// at once, "the board is gone". xbard's readiness check (a STATUS once a second) and the
// client's read race to be that first request, so the test lets the check win: it waits for
// the daemon to log that it gave up, then the read is a later request whatever the load.
TEST_F(Xbarctl, BoardGoneIsUnavailableFromTheDaemonWithoutTheConnectionHint) {
  fwsim_->stop();
  std::string not_ready;  // the daemon's whole log line
  ASSERT_TRUE(testing::eventually([&] {
    const std::string log = xbard_->output();
    const size_t at = log.find("not ready: board: ");
    const size_t end = at == std::string::npos ? at : log.find('\n', at);
    if (end == std::string::npos) return false;
    not_ready = log.substr(at, end - at);
    return true;
  })) << xbard_->output();
  EXPECT_NE(not_ready.find("not back within 5000 ms"), std::string::npos) << not_ready;
  const Ran r = ctl({"read", "--array", "0"});
  EXPECT_EQ(r.rc, 3) << r;
  EXPECT_NE(r.err.find("READ: the board is gone"), std::string::npos) << r;
  EXPECT_NE(r.err.find("is xbar-fwsim running there?"), std::string::npos) << r;
  EXPECT_EQ(r.err.find("is xbard running"), std::string::npos) << r;
}

// --- xbard on its embedded twin, listening on a Unix socket -------------------------------

TEST(XbarctlUnix, ServerUnixPathEndToEndAndItsSpellings) {
  TempDir dir;
  const std::string sock = (dir.path() / "x.sock").string();
  Process xbard(
      {XBARD_PATH, "--listen", "unix:" + sock, "--state-dir", (dir.path() / "state").string()},
      dir.path() / "xbard.log");
  Ran r;
  ASSERT_TRUE(testing::eventually([&] {
    r = run_split({XBARCTL_PATH, "--server", "unix:" + sock, "info"}, dir.path());
    return r.rc == 0;
  })) << r
      << xbard.output();
  EXPECT_NE(r.out.find("(simulated twin)"), std::string::npos) << r;
  EXPECT_NE(r.out.find("backend    sim"), std::string::npos) << r;
  // --addr (the older spelling) and the environment.
  EXPECT_EQ(run_split({XBARCTL_PATH, "--addr", "unix:" + sock, "status"}, dir.path()).rc, 0);
  const Ran env =
      run_split({XBARCTL_PATH, "--json", "status"}, dir.path(), {"XBAR_SERVER=unix:" + sock});
  EXPECT_EQ(env.rc, 0) << env;
  parse_json(env.out);
  const Ran env2 =
      run_split({XBARCTL_PATH, "--json", "status"}, dir.path(), {"XBAR_ADDR=unix:" + sock});
  EXPECT_EQ(env2.rc, 0) << env2;
}

// --- long operations: xbard on its embedded twin (ideal devices: the model deploys ready) ----

TEST(XbarctlOperations, DetachedDeployModelIsWatchedListedAndCancelledWhenFinished) {
  TempDir dir;
  const std::string sock = "unix:" + (dir.path() / "x.sock").string();
  Process xbard({XBARD_PATH, "--board", "sim:profile=ideal", "--listen", sock, "--state-dir",
                 (dir.path() / "state").string()},
                dir.path() / "xbard.log");
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--server", sock};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(testing::with_generous_timeout(argv), dir.path());
  };
  Ran r;
  ASSERT_TRUE(testing::eventually([&] {
    r = ctl({"status"});
    return r.rc == 0;
  })) << r
      << xbard.output();

  // --detach: returns once the operation has its id (its first message); xbard goes on.
  const Ran d = ctl({"deploy-model", kModel, "--replace", "--detach"});
  ASSERT_EQ(d.rc, 0) << d;
  EXPECT_TRUE(d.err.empty()) << d;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_match(d.out, m,
                       std::regex("operation (op-[0-9a-f]{12}) started; follow with: xbarctl watch "
                                  "(op-[0-9a-f]{12})\n")))
      << d;
  const std::string id = m[1];
  EXPECT_EQ(m[2], id);

  // watch: the progress replayed and followed on stderr, the deployment at the end, exit 0.
  const Ran w = ctl({"watch", id});
  ASSERT_EQ(w.rc, 0) << w;
  EXPECT_TRUE(std::regex_search(w.out, std::regex("^deployment dep-[0-9a-f]{12} .*: ready\n")))
      << w;
  EXPECT_NE(w.err.find("compile "), std::string::npos) << w;
  EXPECT_NE(w.err.find("program  array "), std::string::npos) << w;
  // Again, finished: the same result as JSON (what deploy-model --json prints).
  const Ran wj = ctl({"--json", "--quiet", "watch", id});
  ASSERT_EQ(wj.rc, 0) << wj;
  EXPECT_TRUE(wj.err.empty()) << wj;
  const Struct dep = parse_json(wj.out);
  EXPECT_EQ(at(dep, "operation").string_value(), id);
  EXPECT_EQ(at(dep, "state").string_value(), "ready");
  EXPECT_TRUE(at(dep, "id").string_value().starts_with("dep-")) << wj;

  // operations --json: listed, done, detached (it went on after the client left).
  const Ran l = ctl({"--json", "operations"});
  ASSERT_EQ(l.rc, 0) << l;
  const Struct list = parse_json(l.out);
  const Struct* op = nullptr;
  for (const auto& v : at(list, "operations").list_value().values()) {
    if (at(v.struct_value(), "id").string_value() == id) op = &v.struct_value();
  }
  ASSERT_NE(op, nullptr) << l;
  EXPECT_EQ(at(*op, "state").string_value(), "done");
  EXPECT_EQ(at(*op, "method").string_value(), "/xbar.v1.ModelService/DeployModel");
  EXPECT_TRUE(at(*op, "detached").bool_value());
  EXPECT_GT(at(*op, "events").number_value(), 3);
  const Ran running = ctl({"--json", "operations", "--running"});
  ASSERT_EQ(running.rc, 0) << running;
  EXPECT_EQ(running.out.find(id), std::string::npos) << running;
  const Ran table = ctl({"operations"});
  ASSERT_EQ(table.rc, 0) << table;
  EXPECT_TRUE(table.out.starts_with("ID ")) << table;
  EXPECT_NE(table.out.find(id + "  DeployModel (detached)  done"), std::string::npos) << table;

  // operation: the summary; unknown ids are 4.
  const Ran one = ctl({"--json", "operation", id});
  ASSERT_EQ(one.rc, 0) << one;
  EXPECT_EQ(at(parse_json(one.out), "state").string_value(), "done");
  const Ran unknown = ctl({"operation", "op-000000000000"});
  EXPECT_EQ(unknown.rc, 4) << unknown;
  EXPECT_NE(unknown.err.find("no such operation"), std::string::npos) << unknown;
  EXPECT_TRUE(unknown.out.empty()) << unknown;
  EXPECT_EQ(ctl({"watch", "op-000000000000"}).rc, 4);

  // cancel of a finished operation: returned unchanged.
  const Ran c = ctl({"--json", "cancel", id});
  ASSERT_EQ(c.rc, 0) << c;
  EXPECT_EQ(c.out, one.out);
  const Struct cancelled = parse_json(c.out);
  EXPECT_EQ(at(cancelled, "state").string_value(), "done");
  EXPECT_FALSE(at(cancelled, "cancel_requested").bool_value());
  const Ran ch = ctl({"cancel", id});
  ASSERT_EQ(ch.rc, 0) << ch;
  EXPECT_NE(ch.out.find("already finished"), std::string::npos) << ch;
  EXPECT_NE(ch.out.find("operation " + id + ": done"), std::string::npos) << ch;

  // --detach --json: the id alone.
  const Ran q = ctl({"--json", "scan", "--array", "0", "--quick", "--detach"});
  ASSERT_EQ(q.rc, 0) << q;
  const std::string qid = at(parse_json(q.out), "operation").string_value();
  EXPECT_TRUE(std::regex_match(qid, std::regex("op-[0-9a-f]{12}"))) << q;
  EXPECT_TRUE(q.err.empty()) << q;
}

// --- help ------------------------------------------------------------------------------

TEST(XbarctlHelp, EveryCommandHasHelpWithExamplesAndExitsZero) {
  TempDir dir;
  const Ran top = run_split({XBARCTL_PATH, "--help"}, dir.path());
  ASSERT_EQ(top.rc, 0) << top;
  for (const char* s : {"Exit codes", "7 not allowed", "--server", "--token", "--tls-ca",
                        "--tls-server-name", "--json", "--quiet", "XBAR_TOKEN"}) {
    EXPECT_NE(top.out.find(s), std::string::npos) << s << "\n" << top;
  }
  // The subcommands, as the help lists them.
  std::vector<std::string> subs;
  std::istringstream lines(top.out);
  std::string line;
  bool in_subs = false;
  while (std::getline(lines, line)) {
    if (line.starts_with("Subcommands:")) {
      in_subs = true;
      continue;
    }
    if (in_subs) {
      std::smatch m;
      if (!std::regex_search(line, m, std::regex("^  ([a-z][a-z-]*) "))) break;
      subs.push_back(m[1]);
    }
  }
  const std::set<std::string> expected = {
      "info",        "status",     "read",      "program", "scan",         "faults",    "deploy",
      "deployments", "deployment", "undeploy",  "map",     "deploy-model", "infer",     "stream",
      "bench",       "operations", "operation", "watch",   "cancel",       "calibrate", "matrix"};
  EXPECT_EQ(std::set<std::string>(subs.begin(), subs.end()), expected) << top;
  for (const auto& s : subs) {
    SCOPED_TRACE(s);
    const Ran h = run_split({XBARCTL_PATH, s, "--help"}, dir.path());
    EXPECT_EQ(h.rc, 0) << h;
    EXPECT_NE(h.out.find("Usage:"), std::string::npos) << h;
    EXPECT_NE(h.out.find("Example"), std::string::npos) << h;
    EXPECT_NE(h.out.find("xbarctl " + s), std::string::npos) << "an example of the command\n" << h;
    // Global options are accepted after the command: --help of the command works with them.
    EXPECT_EQ(run_split({XBARCTL_PATH, s, "--json", "--help"}, dir.path()).rc, 0);
  }
  // No command: usage, exit 2.
  EXPECT_EQ(run_split({XBARCTL_PATH}, dir.path()).rc, 2);
}

// --- tokens and TLS: the client side, against a recording server in this process ------------

class RecordingBoard final : public v1::BoardService::Service {
 public:
  grpc::Status GetBoardInfo(grpc::ServerContext* ctx, const v1::GetBoardInfoRequest*,
                            v1::BoardInfo* out) override {
    std::lock_guard lock(mu_);
    const auto& md = ctx->client_metadata();
    const auto it = md.find("authorization");
    last_auth_ = it == md.end() ? "<none>" : std::string(it->second.data(), it->second.size());
    last_cn_.clear();
    if (auto auth = ctx->auth_context()) {
      for (const auto& v : auth->FindPropertyValues("x509_common_name"))
        last_cn_ = std::string(v.data(), v.size());
    }
    ++calls_;
    if (!want_token_.empty() && last_auth_ != "Bearer " + want_token_)
      return {grpc::StatusCode::UNAUTHENTICATED, "missing or wrong bearer token"};
    if (deny_) return {grpc::StatusCode::PERMISSION_DENIED, "token may not read the board"};
    out->set_serial("XS-RECORDING");
    out->set_arrays(3);
    return grpc::Status::OK;
  }

  std::mutex mu_;
  std::string want_token_, last_auth_, last_cn_;
  bool deny_ = false;
  int calls_ = 0;
};

struct Pki {
  std::filesystem::path ca, server_cert, server_key, client_cert, client_key;
  std::string error;  // non-empty: could not make them
};

// A CA, a server certificate for DNS:xbard.test only, and a client certificate CN=technician.
Pki make_pki(const std::filesystem::path& dir) {
  Pki p{dir / "ca.pem",     dir / "server.pem", dir / "server.key",
        dir / "client.pem", dir / "client.key", {}};
  const std::string openssl = "/usr/bin/openssl";
  if (!std::filesystem::exists(openssl)) {
    p.error = "no /usr/bin/openssl";
    return p;
  }
  std::ofstream(dir / "server.ext") << "subjectAltName=DNS:xbard.test\n"
                                       "extendedKeyUsage=serverAuth\n";
  std::ofstream(dir / "client.ext") << "extendedKeyUsage=clientAuth\n";
  const std::string ec = "ec:" + (dir / "ec.param").string();
  const std::vector<std::vector<std::string>> steps = {
      {openssl, "ecparam", "-name", "prime256v1", "-out", (dir / "ec.param").string()},
      {openssl, "req", "-x509", "-newkey", ec, "-nodes", "-keyout", (dir / "ca.key").string(),
       "-out", p.ca.string(), "-days", "2", "-subj", "/CN=xbar test CA"},
      {openssl, "req", "-newkey", ec, "-nodes", "-keyout", p.server_key.string(), "-out",
       (dir / "server.csr").string(), "-subj", "/CN=xbard.test"},
      {openssl, "x509", "-req", "-in", (dir / "server.csr").string(), "-CA", p.ca.string(),
       "-CAkey", (dir / "ca.key").string(), "-CAcreateserial", "-out", p.server_cert.string(),
       "-days", "2", "-extfile", (dir / "server.ext").string()},
      {openssl, "req", "-newkey", ec, "-nodes", "-keyout", p.client_key.string(), "-out",
       (dir / "client.csr").string(), "-subj", "/CN=technician"},
      {openssl, "x509", "-req", "-in", (dir / "client.csr").string(), "-CA", p.ca.string(),
       "-CAkey", (dir / "ca.key").string(), "-CAcreateserial", "-out", p.client_cert.string(),
       "-days", "2", "-extfile", (dir / "client.ext").string()},
  };
  for (const auto& s : steps) {
    const Ran r = run_split(s, dir);
    if (r.rc != 0) {
      p.error = fmt::format("{} {}: {}", s[0], s[1], r.err);
      return p;
    }
  }
  return p;
}

class RecordingServer {
 public:
  RecordingServer(const std::string& target, std::shared_ptr<grpc::ServerCredentials> creds) {
    grpc::ServerBuilder b;
    b.AddListeningPort(target, std::move(creds));
    b.RegisterService(&board_);
    server_ = b.BuildAndStart();
  }
  ~RecordingServer() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }
  bool up() const { return server_ != nullptr; }
  RecordingBoard& board() { return board_; }

 private:
  RecordingBoard board_;
  std::unique_ptr<grpc::Server> server_;
};

TEST(XbarctlAuth, TokenIsSentAsBearerMetadataAndRefusalsAreExitCode7) {
  TempDir dir;
  const std::string addr = "unix:" + (dir.path() / "rec.sock").string();
  RecordingServer server(addr, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.up());
  auto& board = server.board();
  auto ctl = [&](std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--server", addr, "--timeout", kCallTimeout};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(argv, dir.path(), env);
  };
  auto last_auth = [&] {
    std::lock_guard lock(board.mu_);
    return board.last_auth_;
  };

  Ran r = ctl({"info"});
  EXPECT_EQ(r.rc, 0) << r;
  EXPECT_EQ(last_auth(), "<none>");  // no token, no header

  r = ctl({"--token", "s3cret", "info"});
  EXPECT_EQ(r.rc, 0) << r;
  EXPECT_EQ(last_auth(), "Bearer s3cret");
  r = ctl({"info", "--token", "after-the-command"});
  EXPECT_EQ(r.rc, 0) << r;
  EXPECT_EQ(last_auth(), "Bearer after-the-command");
  r = ctl({"info"}, {"XBAR_TOKEN=from-env"});
  EXPECT_EQ(r.rc, 0) << r;
  EXPECT_EQ(last_auth(), "Bearer from-env");
  const auto file = dir.path() / "token";
  std::ofstream(file) << "  from-file\n";
  r = ctl({"--token-file", file.string(), "info"}, {"XBAR_TOKEN=from-env"});
  EXPECT_EQ(r.rc, 0) << r;
  EXPECT_EQ(last_auth(), "Bearer from-file");  // the file wins over the environment
  r = ctl({"--token", "flag", "--token-file", file.string(), "info"});
  EXPECT_EQ(last_auth(), "Bearer flag");  // and the flag over the file
  r = ctl({"--token", "two\nlines", "info"});
  EXPECT_EQ(r.rc, 2) << r;

  {
    std::lock_guard lock(board.mu_);
    board.want_token_ = "right";
  }
  r = ctl({"info"});
  EXPECT_EQ(r.rc, 7) << r;
  EXPECT_NE(r.err.find("XBAR_TOKEN"), std::string::npos) << "says how to give one\n" << r;
  r = ctl({"--json", "info", "--token", "wrong"});
  EXPECT_EQ(r.rc, 7) << r;
  EXPECT_TRUE(r.out.empty()) << r;
  EXPECT_NE(r.err.find("refused the token"), std::string::npos) << r;
  r = ctl({"--token", "right", "--json", "info"});
  EXPECT_EQ(r.rc, 0) << r;
  EXPECT_EQ(at(parse_json(r.out), "serial").string_value(), "XS-RECORDING");
  {
    std::lock_guard lock(board.mu_);
    board.deny_ = true;
  }
  r = ctl({"--token", "right", "info"});
  EXPECT_EQ(r.rc, 7) << r;
  EXPECT_NE(r.err.find("may not read the board"), std::string::npos) << r;
}

TEST(XbarctlTls, ServerVerifiedByCaAndNameAndMutualTls) {
  TempDir dir;
  const Pki pki = make_pki(dir.path());
  if (!pki.error.empty()) GTEST_SKIP() << "cannot make test certificates: " << pki.error;
  const std::string addr = "unix:" + (dir.path() / "tls.sock").string();
  const std::string maddr = "unix:" + (dir.path() / "mtls.sock").string();
  grpc::SslServerCredentialsOptions tls;
  tls.pem_key_cert_pairs.push_back(
      {testing::read_file(pki.server_key), testing::read_file(pki.server_cert)});
  RecordingServer server(addr, grpc::SslServerCredentials(tls));
  grpc::SslServerCredentialsOptions mtls(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  mtls.pem_key_cert_pairs = tls.pem_key_cert_pairs;
  mtls.pem_root_certs = testing::read_file(pki.ca);
  RecordingServer mserver(maddr, grpc::SslServerCredentials(mtls));
  ASSERT_TRUE(server.up() && mserver.up());
  auto ctl = [&](const std::string& a, std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--server", a, "--timeout", kCallTimeout};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(argv, dir.path());
  };
  const std::string ca = pki.ca.string();

  Ran r = ctl(addr, {"--tls-ca", ca, "--tls-server-name", "xbard.test", "info"});
  EXPECT_EQ(r.rc, 0) << r;
  // The certificate is for xbard.test, not for the socket's default name: refused.
  r = ctl(addr, {"--tls-ca", ca, "info"});
  EXPECT_EQ(r.rc, 3) << r;
  // Plaintext against a TLS server: unreachable, with the hint.
  r = ctl(addr, {"info"});
  EXPECT_EQ(r.rc, 3) << r;
  EXPECT_NE(r.err.find("--tls-ca"), std::string::npos) << r;
  // A CA that did not sign it (the client certificate is no CA): refused.
  r = ctl(addr, {"--tls-ca", pki.client_cert.string(), "--tls-server-name", "xbard.test", "info"});
  EXPECT_EQ(r.rc, 3) << r;

  // mTLS: without a client certificate the handshake fails; with one, the server sees it.
  r = ctl(maddr, {"--tls-ca", ca, "--tls-server-name", "xbard.test", "info"});
  EXPECT_EQ(r.rc, 3) << r;
  r = ctl(maddr,
          {"--tls-ca", ca, "--tls-server-name", "xbard.test", "--tls-cert",
           pki.client_cert.string(), "--tls-key", pki.client_key.string(), "--token", "t", "info"});
  EXPECT_EQ(r.rc, 0) << r;
  std::lock_guard lock(mserver.board().mu_);
  EXPECT_EQ(mserver.board().last_cn_, "technician");
  EXPECT_EQ(mserver.board().last_auth_, "Bearer t");
}

// --- tokens and TLS against xbard ---------------------------------------------------------

// xbard asks for the token on the calls that change the board (program, scan, deploy,
// deploy-model, undeploy); reads need none.
TEST(XbarctlDaemonAuth, TokenFileOnTheDaemon) {
  TempDir dir;
  const std::string token = "lab-token-0123456789";
  const auto tokens = dir.path() / "tokens";
  std::ofstream(tokens) << token << "\n";
  const std::string sock = "unix:" + (dir.path() / "x.sock").string();
  Process xbard({XBARD_PATH, "--listen", sock, "--state-dir", (dir.path() / "state").string(),
                 "--auth-token-file", tokens.string()},
                dir.path() / "xbard.log");
  auto ctl = [&](std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--server", sock, "--timeout", kCallTimeout};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(argv, dir.path(), env);
  };
  Ran r;
  ASSERT_TRUE(testing::eventually([&] {
    r = ctl({"status"});
    return r.rc == 0;
  })) << r
      << xbard.output();
  // A change without the token, or with another: 7, and the board is not touched.
  const std::string id = "dep-000000000000";
  r = ctl({"undeploy", id});
  EXPECT_EQ(r.rc, 7) << r;
  r = ctl({"--json", "undeploy", id, "--token", "not-the-token-at-all"});
  EXPECT_EQ(r.rc, 7) << r;
  EXPECT_TRUE(r.out.empty()) << r;
  r = ctl({"scan", "--array", "0"}, {"XBAR_TOKEN=not-the-token-at-all"});
  EXPECT_EQ(r.rc, 7) << r;
  // With it (flag, environment, file) the call goes through to the lookup: 4.
  EXPECT_EQ(ctl({"--token", token, "undeploy", id}).rc, 4);
  EXPECT_EQ(ctl({"undeploy", id}, {"XBAR_TOKEN=" + token}).rc, 4);
  const auto file = dir.path() / "mine";
  std::ofstream(file) << token << "\n";
  EXPECT_EQ(ctl({"--token-file", file.string(), "undeploy", id}).rc, 4);
  // Reads need no token.
  r = ctl({"--json", "info"});
  EXPECT_EQ(r.rc, 0) << r;
  parse_json(r.out);
}

// CancelOperation changes what the board does: it needs the token; listing does not.
TEST(XbarctlDaemonAuth, CancelNeedsTheToken) {
  TempDir dir;
  const std::string token = "lab-token-0123456789";
  const auto tokens = dir.path() / "tokens";
  std::ofstream(tokens) << token << "\n";
  const std::string sock = "unix:" + (dir.path() / "x.sock").string();
  Process xbard({XBARD_PATH, "--listen", sock, "--state-dir", (dir.path() / "state").string(),
                 "--auth-token-file", tokens.string()},
                dir.path() / "xbard.log");
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--server", sock, "--timeout", kCallTimeout};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(argv, dir.path());
  };
  Ran r;
  ASSERT_TRUE(testing::eventually([&] {
    r = ctl({"status"});
    return r.rc == 0;
  })) << r
      << xbard.output();
  const std::string id = "op-000000000000";
  r = ctl({"cancel", id});
  EXPECT_EQ(r.rc, 7) << r;
  EXPECT_NE(r.err.find("XBAR_TOKEN"), std::string::npos) << r;
  r = ctl({"--json", "cancel", id, "--token", "not-the-token-at-all"});
  EXPECT_EQ(r.rc, 7) << r;
  EXPECT_TRUE(r.out.empty()) << r;
  EXPECT_EQ(ctl({"--token", token, "cancel", id}).rc, 4);  // through to the lookup
  r = ctl({"--json", "operations"});
  EXPECT_EQ(r.rc, 0) << r;
  parse_json(r.out);
}

TEST(XbarctlDaemonTls, TlsAndMutualTlsOnTheDaemon) {
  TempDir dir;
  const Pki pki = make_pki(dir.path());
  if (!pki.error.empty()) GTEST_SKIP() << "cannot make test certificates: " << pki.error;
  const std::string sock = "unix:" + (dir.path() / "x.sock").string();
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH,    "--server",          sock,
                                     "--timeout",     kCallTimeout,        "--tls-ca",
                                     pki.ca.string(), "--tls-server-name", "xbard.test"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_split(argv, dir.path());
  };
  {
    Process xbard({XBARD_PATH, "--listen", sock, "--state-dir", (dir.path() / "state").string(),
                   "--tls-cert", pki.server_cert.string(), "--tls-key", pki.server_key.string()},
                  dir.path() / "xbard.log");
    Ran r;
    ASSERT_TRUE(testing::eventually([&] {
      r = ctl({"status"});
      return r.rc == 0;
    })) << r
        << xbard.output();
    r = run_split({XBARCTL_PATH, "--server", sock, "--timeout", kCallTimeout, "status"},
                  dir.path());
    EXPECT_EQ(r.rc, 3) << "plaintext against TLS\n" << r;
  }
  std::filesystem::remove(dir.path() / "x.sock");
  Process xbard({XBARD_PATH, "--listen", sock, "--state-dir", (dir.path() / "state").string(),
                 "--tls-cert", pki.server_cert.string(), "--tls-key", pki.server_key.string(),
                 "--tls-client-ca", pki.ca.string()},
                dir.path() / "xbard.log");
  Ran r;
  ASSERT_TRUE(testing::eventually([&] {
    r = ctl(
        {"--tls-cert", pki.client_cert.string(), "--tls-key", pki.client_key.string(), "status"});
    return r.rc == 0;
  })) << r
      << xbard.output();
  r = ctl({"status"});
  EXPECT_EQ(r.rc, 3) << "no client certificate\n" << r;
}

}  // namespace
}  // namespace xbar

namespace xbar {
namespace {

// Issue 17: `xbarctl calibrate` measures a model's ranges on clips, offline (no daemon), and
// writes the model back with them; what it writes is a model deploy accepts (it re-validates).
TEST(XbarctlCalibrate, WritesTheRangesIntoTheModelAndRefusesNoClips) {
  TempDir dir;
  const std::string src = XBAR_SOURCE_DIR;
  const auto out = dir.path() / "cal.json";
  const Ran r =
      run_split({XBARCTL_PATH, "--json", "calibrate", src + "/models/reference/zero-one-2bit.json",
                 src + "/models/reference/clips/zero.wav", src + "/models/reference/clips/one.wav",
                 "-o", out.string(), "--source", "the two golden clips"},
                dir.path());
  ASSERT_EQ(r.rc, 0) << r;
  v1::Model m;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(testing::read_file(out), &m).ok());
  ASSERT_EQ(m.calibration().kernels_size(), 3);
  EXPECT_EQ(m.calibration().clips(), 2u);
  EXPECT_EQ(m.calibration().source(), "the two golden clips");
  for (const v1::KernelRange& k : m.calibration().kernels()) {
    EXPECT_GT(k.state_max(), 0);
    EXPECT_GT(k.input_max(), 0);
    EXPECT_GT(k.state_range(), 0);
    // A fraction of the largest state, or raised to what the input's own codes need
    // (input_max / b_weight >= input_max: LoopPlanOptions::input_max).
    if (k.state_range() > 1.1 * k.state_max() * (1 + 1e-12)) {
      EXPECT_GE(k.state_range(), k.input_max());
    }
  }
  // Each mode's range, measured (the largest at most 100 x the smallest: the floor), and the
  // clips kept for the deploy's fidelity check (up to --keep-clips 16: both).
  for (const v1::Kernel& k : m.kernel_set().kernels()) {
    ASSERT_EQ(k.mode_range_size(), k.continuous().a_size());
    const auto [lo, hi] = std::minmax_element(k.mode_range().begin(), k.mode_range().end());
    EXPECT_GT(*lo, 0);
    EXPECT_LE(*hi, 100 * *lo * (1 + 1e-12));
    EXPECT_GT(*hi, *lo);  // real clips excite the modes unequally
  }
  ASSERT_EQ(m.calibration().fidelity_clips_size(), 2);
  EXPECT_EQ(m.calibration().fidelity_clips(0).values_size(), 160 * 16);  // steps x bands
  {  // --no-mode-ranges --keep-clips 1: the worst-case gains, one clip
    const auto plain = dir.path() / "plain.json";
    const Ran p =
        run_split({XBARCTL_PATH, "-q", "calibrate", src + "/models/reference/zero-one-2bit.json",
                   src + "/models/reference/clips/heldout", "-o", plain.string(),
                   "--no-mode-ranges", "--keep-clips", "1"},
                  dir.path());
    ASSERT_EQ(p.rc, 0) << p;
    v1::Model pm;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(testing::read_file(plain), &pm).ok());
    for (const v1::Kernel& k : pm.kernel_set().kernels()) EXPECT_EQ(k.mode_range_size(), 0);
    EXPECT_EQ(pm.calibration().fidelity_clips_size(), 1);
    EXPECT_EQ(pm.calibration().clips(), 24u);  // every WAV of the folder
    const Ran many =
        run_split({XBARCTL_PATH, "calibrate", src + "/models/reference/zero-one-2bit.json",
                   src + "/models/reference/clips", "-o", plain.string(), "--keep-clips", "65"},
                  dir.path());
    EXPECT_EQ(many.rc, 2) << many;
  }
  // The same clips in another order give the same file.
  const auto again = dir.path() / "again.json";
  const Ran r2 =
      run_split({XBARCTL_PATH, "-q", "calibrate", src + "/models/reference/zero-one-2bit.json",
                 src + "/models/reference/clips/one.wav", src + "/models/reference/clips/zero.wav",
                 "-o", again.string(), "--source", "the two golden clips"},
                dir.path());
  ASSERT_EQ(r2.rc, 0) << r2;
  EXPECT_EQ(testing::read_file(again), testing::read_file(out));
  // No clips: exit 2 and a clear message.
  std::filesystem::create_directory(dir.path() / "empty");
  const Ran none =
      run_split({XBARCTL_PATH, "calibrate", src + "/models/reference/zero-one-2bit.json",
                 (dir.path() / "empty").string(), "-o", out.string()},
                dir.path());
  EXPECT_EQ(none.rc, 2) << none;
  EXPECT_NE(none.err.find("no audio files"), std::string::npos) << none;
}

}  // namespace
}  // namespace xbar

namespace xbar {
namespace {

// Issue 18: `xbarctl calibrate` runs clips through the model's own front end: a log-mel model
// (16 bands at 8 kHz) calibrated on 16 kHz WAVs (resampled) keeps clips of steps x 16 values,
// and what it writes is a model deploy accepts.
TEST(XbarctlCalibrate, WorksWithALogMelModel) {
  TempDir dir;
  v1::Model m;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(
          testing::read_file(std::string(XBAR_SOURCE_DIR) + "/models/example-model.json"), &m)
          .ok());
  testing::set_reference_log_mel(m.mutable_preprocessing(), 30);
  m.mutable_encoder()->set_inputs(16);
  m.mutable_encoder()->clear_weight();
  for (int i = 0; i < 3 * 16; ++i) m.mutable_encoder()->add_weight(0.2 * std::sin(0.7 * i));
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(m, &json).ok());
  const auto model = dir.path() / "log-mel.json";
  std::ofstream(model) << json;
  std::filesystem::create_directory(dir.path() / "clips");
  for (int i = 0; i < 3; ++i) {
    write_wav(dir.path() / "clips" / fmt::format("c{}.wav", i), 0.2 + 0.1 * i, 16000);
  }
  const auto out = dir.path() / "cal.json";
  const Ran r = run_split({XBARCTL_PATH, "-q", "calibrate", model.string(),
                           (dir.path() / "clips").string(), "-o", out.string()},
                          dir.path());
  ASSERT_EQ(r.rc, 0) << r;
  v1::Model cal;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(testing::read_file(out), &cal).ok());
  EXPECT_EQ(cal.calibration().clips(), 3u);
  ASSERT_EQ(cal.calibration().kernels_size(), 3);
  for (const v1::KernelRange& k : cal.calibration().kernels()) EXPECT_GT(k.input_max(), 0);
  ASSERT_EQ(cal.calibration().fidelity_clips_size(), 3);
  for (const v1::Sequence& c : cal.calibration().fidelity_clips()) {
    EXPECT_EQ(c.values_size(), 30 * 16);  // target_length steps x 16 bands, step-major
    for (float v : c.values()) {
      EXPECT_GE(v, 0.0f);
      EXPECT_LE(v, 1.0f);
    }
  }
  EXPECT_TRUE(cal.preprocessing().has_log_mel());
  EXPECT_EQ(cal.preprocessing().log_mel().bands(), 16u);
  // A model whose encoder does not take the bands is refused, naming the field.
  m.mutable_encoder()->set_inputs(1);
  m.mutable_encoder()->mutable_weight()->Truncate(3);
  json.clear();  // MessageToJsonString appends
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(m, &json).ok());
  std::ofstream(model) << json;
  const Ran bad = run_split({XBARCTL_PATH, "calibrate", model.string(),
                             (dir.path() / "clips").string(), "-o", out.string()},
                            dir.path());
  EXPECT_EQ(bad.rc, 2) << bad;
  EXPECT_NE(bad.err.find("encoder.weight: 3 x 1, the model needs 3 x 16"), std::string::npos)
      << bad;
}

}  // namespace
}  // namespace xbar
