// End to end with real processes, as a lab uses them: xbar-fwsim (the twin on a socket),
// xbard in front of it, and xbarctl talking gRPC to xbard.
#include <fmt/format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <random>
#include <regex>
#include <thread>

#include "chip_record.h"
#include "process.h"
#include "xbar/drivers/board.h"

namespace xbar {
namespace {

using testing::Process;
using testing::TempDir;

class EndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = testing::start_twin_and_daemon(dir_.path(), XBAR_FWSIM_PATH, XBARD_PATH, "imssa", 13,
                                            state_dir_);
    fwsim_sock_ = t.fwsim_sock;
    xbard_addr_ = t.xbard_addr;
    fwsim_ = std::move(t.fwsim);
    xbard_ = std::move(t.xbard);
    ASSERT_TRUE(t.fwsim_up) << fwsim_->output();
    ASSERT_TRUE(testing::eventually([&] { return ctl({"info"}).first == 0; })) << xbard_->output();
  }

  std::pair<int, std::string> ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--addr", xbard_addr_};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(testing::with_generous_timeout(argv), dir_.path() / "ctl.log");
  }

  TempDir dir_;
  std::filesystem::path state_dir_ = dir_.path() / "state";
  std::filesystem::path fwsim_sock_;
  std::string xbard_addr_;
  std::unique_ptr<Process> fwsim_, xbard_;
};

TEST_F(EndToEnd, InfoShowsTheTwinBehindTheDaemon) {
  auto [rc, out] = ctl({"info"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("XS0000000000000D (simulated twin)"), std::string::npos) << out;
  EXPECT_NE(out.find("3 of 64x64"), std::string::npos) << out;
  EXPECT_NE(out.find("10-bit"), std::string::npos) << out;
  EXPECT_NE(out.find("16-bit over -10..+10 V"), std::string::npos) << out;
  EXPECT_NE(out.find("backend    unix"), std::string::npos) << out;

  auto [rj, json] = ctl({"--json", "info"});
  ASSERT_EQ(rj, 0) << json;
  EXPECT_NE(json.find("\"arrays\":3"), std::string::npos) << json;
  EXPECT_NE(json.find("\"serial\":\"XS0000000000000D\""), std::string::npos) << json;
}

TEST_F(EndToEnd, ReadWritesCsvAndPngAndCountsTheStuckDevice) {
  const auto csv = dir_.path() / "a1.csv", png = dir_.path() / "a1.png";
  auto [rc, out] =
      ctl({"read", "--array", "1", "--avg", "4", "--csv", csv.string(), "--png", png.string()});
  ASSERT_EQ(rc, 0) << out;
  const std::string text = testing::read_file(csv);
  std::istringstream lines(text);
  std::string line;
  int rows = 0;
  double max_uS = 0;
  while (std::getline(lines, line)) {
    if (line.starts_with("#")) continue;
    ++rows;
    int cols = 0;
    std::istringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) {
      ++cols;
      max_uS = std::max(max_uS, std::stod(cell));
    }
    EXPECT_EQ(cols, 64);
  }
  EXPECT_EQ(rows, 64);
  // imssa: 1-3 stuck-high devices (300-600 uS) per array; the as-formed rest sits near 2 uS.
  EXPECT_GT(max_uS, 250.0);
  const std::string p = testing::read_file(png);
  ASSERT_GT(p.size(), 8u);
  EXPECT_EQ(p.substr(1, 3), "PNG");
  EXPECT_NE(out.find("median"), std::string::npos);
}

TEST_F(EndToEnd, BadArgumentsGetExitCode2AndNameTheField) {
  auto [rc, out] = ctl({"read", "--array", "3"});
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("array = 3: allowed 0..2"), std::string::npos) << out;
  auto [rc2, out2] = ctl({"read", "--array", "0", "--avg", "65"});
  EXPECT_EQ(rc2, 2);
  EXPECT_NE(out2.find("n_avg = 65: allowed 1..64"), std::string::npos) << out2;
  auto [rc3, out3] = ctl({"read", "--array", "0", "--gain", "9"});
  EXPECT_EQ(rc3, 2);
  EXPECT_NE(out3.find("gain_index = 9: allowed 0..4"), std::string::npos) << out3;
  // The daemon is still serving afterwards.
  EXPECT_EQ(ctl({"status"}).first, 0);
}

TEST_F(EndToEnd, ScanFindsTheStuckDevicesRecordsThemAndRestoresTheArray) {
  auto truth = Board::open("unix:" + fwsim_sock_.string());
  ASSERT_TRUE(truth.has_value());
  const auto faults = *(*truth)->sim_fault_map(2);
  int stuck_high = 0;
  for (auto f : faults) stuck_high += f == wire::FaultKind::kStuckHigh;
  ASSERT_GE(stuck_high, 1);  // imssa: 1-3 per array

  const auto png = dir_.path() / "scan.png";
  auto [rc, out] = ctl({"--json", "scan", "--array", "2", "--png", png.string()});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(fmt::format("\"stuck_high\":{},\"stuck_low\":0", stuck_high)),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"destructive\":false"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(png));
  auto [rf, map] = ctl({"--json", "faults", "--array", "2"});
  ASSERT_EQ(rf, 0);
  size_t recorded = 0;
  for (size_t pos = map.find("\"method\":\"scan\""); pos != std::string::npos;
       pos = map.find("\"method\":\"scan\"", pos + 1)) {
    ++recorded;
  }
  EXPECT_EQ(recorded, static_cast<size_t>(stuck_high)) << map;

  // Endurance is counted write-ahead for every batch of the scan (hard pulses, confirm pulses,
  // the restore's rounds): with no crash the record matches what the board applied exactly.
  {
    auto record = server::ChipRecord::open(state_dir_);
    ASSERT_TRUE(record.has_value()) << record.error().message;
    auto e = (*record)->endurance((*truth)->info().serial, 2);
    ASSERT_TRUE(e.has_value()) << e.error().message;
    EXPECT_EQ(static_cast<uint64_t>(e->set_pulses.sum() + e->reset_pulses.sum()),
              (*truth)->status()->pulses_applied);
  }

  // The destructive mode must be confirmed.
  auto [rd, outd] = ctl({"scan", "--array", "2", "--destructive"});
  EXPECT_EQ(rd, 2);
  EXPECT_NE(outd.find("add --yes to confirm"), std::string::npos) << outd;
}

TEST_F(EndToEnd, ProgramRejectsBadInputWithoutTouchingTheArray) {
  auto board = Board::open("unix:" + fwsim_sock_.string());
  ASSERT_TRUE(board.has_value());
  const uint64_t pulses = (*board)->status()->pulses_applied;
  auto [rc, out] = ctl({"program", "--array", "0", "--random", "7:900"});
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("uS: allowed 1..250 uS"), std::string::npos) << out;
  auto [rc2, out2] = ctl({"program", "--array", "3", "--random", "7:200"});
  EXPECT_EQ(rc2, 2);
  EXPECT_NE(out2.find("array = 3: allowed 0..2"), std::string::npos) << out2;
  auto [rc3, out3] = ctl({"program", "--array", "0", "--random", "7:200", "--tol", "-1"});
  EXPECT_EQ(rc3, 2);
  EXPECT_NE(out3.find("tol_uS = -1: allowed (0, 100]"), std::string::npos) << out3;
  const auto csv = dir_.path() / "bad.csv";
  std::ofstream(csv) << "1,2,3\n4,5\n";
  auto [rc4, out4] = ctl({"program", "--array", "0", "--target", csv.string()});
  EXPECT_EQ(rc4, 2);
  EXPECT_NE(out4.find("row 1 has 2 values, row 0 has 3"), std::string::npos) << out4;
  EXPECT_EQ((*board)->status()->pulses_applied, pulses);
}

TEST_F(EndToEnd, StatusCountsTheBoardsOperations) {
  const auto t0 = std::chrono::steady_clock::now();
  auto [rc, out] = ctl({"--json", "status"});
  ASSERT_EQ(rc, 0) << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("\"ops_executed\":(\\d+)")));
  const int ops = std::stoi(m[1]);
  ctl({"read", "--array", "0"});
  auto [rc2, out2] = ctl({"--json", "status"});
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(std::regex_search(out2, m, std::regex("\"ops_executed\":(\\d+)")));
  // The READ, then this STATUS; xbard's own health check adds a STATUS at most once a second
  // in between (however long the three calls took on this machine).
  const int health_checks = static_cast<int>(std::ceil(elapsed_s)) + 1;
  EXPECT_GE(std::stoi(m[1]), ops + 2);
  EXPECT_LE(std::stoi(m[1]), ops + 2 + health_checks) << "in " << elapsed_s << " s";
}

// grpc.health.v1.Health/Check by hand-encoded protobuf (Debian ships no generated health
// stubs): request {service: "xbar.v1.BoardService"}, reply {status: SERVING (1)} = 08 01.
TEST_F(EndToEnd, HealthCheckReportsTheBoardServiceServing) {
  auto channel = grpc::CreateChannel(xbard_addr_, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  auto check = [&](const std::string& service) {
    std::string req = "\x0a" + std::string(1, static_cast<char>(service.size())) + service;
    grpc::Slice slice(req);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::ClientContext ctx;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) { done.set_value(s); });
    const grpc::Status s = done.get_future().get();
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (s.ok() && response.Dump(&slices).ok()) {
      for (auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
    return std::make_pair(s.error_code(), bytes);
  };
  auto [code, bytes] = check("xbar.v1.BoardService");
  EXPECT_EQ(code, grpc::StatusCode::OK);
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
  EXPECT_EQ(check("no.such.Service").first, grpc::StatusCode::NOT_FOUND);
}

// The chip record across daemon restarts and kill -9 during programming. The board is an
// xbar-fwsim process, so it keeps its conductances while the daemon dies, as a real one would.
TEST(Record, SurvivesRestartAndKillDuringProgramming) {
  TempDir dir;
  const auto fw_sock = dir.path() / "fwsim.sock";
  const auto state = dir.path() / "state";
  const std::string addr = "unix:" + (dir.path() / "xbard.sock").string();
  Process fwsim({XBAR_FWSIM_PATH, "--profile", "typical", "--seed", "21", "--listen",
                 "unix:" + fw_sock.string()},
                dir.path() / "fwsim.log");
  ASSERT_TRUE(testing::eventually([&] { return std::filesystem::exists(fw_sock); }));
  auto start_xbard = [&] {
    return std::make_unique<Process>(
        std::vector<std::string>{XBARD_PATH, "--board", "unix:" + fw_sock.string(), "--listen",
                                 addr, "--state-dir", state.string()},
        dir.path() / "xbard.log");
  };
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--addr", addr};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(testing::with_generous_timeout(argv), dir.path() / "ctl.log");
  };

  // 1. A full program-verify run; its findings are recorded.
  auto xbard = start_xbard();
  ASSERT_TRUE(testing::eventually([&] { return ctl({"status"}).first == 0; })) << xbard->output();
  auto [rc, out] = ctl({"program", "--array", "1", "--random", "7:200", "--seed", "3"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("within ±4 uS"), std::string::npos) << out;
  auto [rf, faults_before] = ctl({"--json", "faults"});
  ASSERT_EQ(rf, 0);
  EXPECT_NE(faults_before.find("\"method\":\"program_verify\""), std::string::npos)
      << faults_before;

  // 2. Restart: the same record is served.
  xbard.reset();
  xbard = start_xbard();
  ASSERT_TRUE(testing::eventually([&] { return ctl({"status"}).first == 0; }));
  EXPECT_EQ(ctl({"--json", "faults"}).second, faults_before);

  // 3. kill -9 at random points of a programming run, then reopen the record.
  std::mt19937 rng(7);
  for (int k = 0; k < 4; ++k) {
    auto prog = std::make_unique<Process>(
        std::vector<std::string>{XBARCTL_PATH, "--addr", addr, "program", "--array", "2",
                                 "--random", "7:200", "--seed", std::to_string(k)},
        dir.path() / "prog.log");
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<>(30, 400)(rng)));
    xbard->kill_hard();
    prog->wait();
    xbard = start_xbard();
    ASSERT_TRUE(testing::eventually([&] { return ctl({"status"}).first == 0; })) << xbard->output();
  }
  xbard.reset();  // close the record before reading it here

  auto record = server::ChipRecord::open(state);
  ASSERT_TRUE(record.has_value()) << record.error().message;
  EXPECT_EQ((*record)->integrity_check().value(), "ok");
  auto board = Board::open("unix:" + fw_sock.string());
  ASSERT_TRUE(board.has_value());
  const uint64_t applied = (*board)->status()->pulses_applied;
  uint64_t recorded = 0;
  for (int a = 0; a < 3; ++a) {
    auto e = (*record)->endurance((*board)->info().serial, a);
    ASSERT_TRUE(e.has_value()) << e.error().message;
    recorded += e->set_pulses.sum() + e->reset_pulses.sum();
  }
  // Write-ahead: every applied pulse is counted; at most one unsent batch per kill is extra.
  EXPECT_GE(recorded, applied);
  EXPECT_LE(recorded, applied + 4 * 4096u);
}

TEST(Daemon, WithoutConfigServesTheEmbeddedTypicalTwin) {
  TempDir dir;
  const std::string addr = "unix:" + (dir.path() / "xbard.sock").string();
  Process xbard({XBARD_PATH, "--listen", addr, "--state-dir", (dir.path() / "state").string()},
                dir.path() / "xbard.log");
  std::pair<int, std::string> r;
  ASSERT_TRUE(testing::eventually([&] {
    r = testing::run({XBARCTL_PATH, "--addr", addr, "info"}, dir.path() / "ctl.log");
    return r.first == 0;
  })) << xbard.output();
  EXPECT_NE(r.second.find("XS00000000000001 (simulated twin)"), std::string::npos) << r.second;
  EXPECT_NE(r.second.find("backend    sim"), std::string::npos) << r.second;
}

TEST(Daemon, ConfigErrorsNameTheKeyAndExit2) {
  TempDir dir;
  const auto cfg = dir.path() / "bad.yaml";
  std::ofstream(cfg) << "listen: 127.0.0.1:0\nboard:\n  backend: sim\n  seed: seven\n";
  auto [rc, out] = testing::run({XBARD_PATH, "--config", cfg.string()}, dir.path() / "xbard.log");
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("board.seed: expected an unsigned integer, got 'seven'"), std::string::npos)
      << out;
  std::ofstream(cfg) << "listen: 127.0.0.1:0\nboard:\n  backend: sim\n  profile: nosuch\n";
  auto [rc2, out2] = testing::run({XBARD_PATH, "--config", cfg.string()}, dir.path() / "xbard.log");
  EXPECT_EQ(rc2, 3);
  EXPECT_NE(out2.find("profile 'nosuch': unknown"), std::string::npos) << out2;
}

TEST(Daemon, XbarctlWithoutDaemonSaysSoWithExitCode3) {
  TempDir dir;
  // Nobody listening fails at once (3); a deadline that ran out would be 5. So the deadline is
  // generous: a sanitizer build on a loaded machine takes its time to find nobody there.
  auto [rc, out] =
      testing::run({XBARCTL_PATH, "--addr", "unix:" + (dir.path() / "none.sock").string(),
                    "--timeout", "60", "info"},
                   dir.path() / "ctl.log");
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("is xbard running at"), std::string::npos) << out;
}

}  // namespace
}  // namespace xbar
