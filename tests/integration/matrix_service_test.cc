// MatrixService end to end, as a user runs it: xbar-fwsim as the board (an imssa chip with
// stuck-high devices), xbard on it, xbarctl over a Unix socket with .csv files. Deploy with remap
// against the identity placement, multiply, bad input refused without a change, and the deployment
// surviving kill -9.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "process.h"
#include "xbar/matrix/matrix.h"

namespace xbar {
namespace {

using testing::Process;
using testing::TempDir;

struct Rig {
  TempDir dir;
  std::string sock, board;
  std::unique_ptr<Process> fwsim, xbard;

  Rig()
      : sock("unix:" + (dir.path() / "xbard.sock").string()),
        board((dir.path() / "fwsim.sock").string()) {
    fwsim = std::make_unique<Process>(
        std::vector<std::string>{XBAR_FWSIM_PATH, "--profile", "imssa", "--seed", "3", "--listen",
                                 "unix:" + board},
        dir.path() / "fwsim.log");
    EXPECT_TRUE(testing::eventually([&] { return std::filesystem::exists(board); }));
    start();
  }

  void start() {
    xbard = std::make_unique<Process>(
        std::vector<std::string>{XBARD_PATH, "--board", "unix:" + board, "--listen", sock,
                                 "--state-dir", (dir.path() / "state").string()},
        dir.path() / "xbard.log");
    EXPECT_TRUE(testing::eventually([&] { return ctl({"status"}).first == 0; })) << xbard->output();
  }

  std::pair<int, std::string> ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {XBARCTL_PATH, "--server", sock, "-q"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(testing::with_generous_timeout(argv), dir.path() / "ctl.log");
  }

  std::string write_csv(const std::string& name, const Eigen::MatrixXd& m) {
    const std::string path = (dir.path() / name).string();
    std::ofstream out(path);
    out.precision(17);
    for (Eigen::Index r = 0; r < m.rows(); ++r) {
      for (Eigen::Index c = 0; c < m.cols(); ++c) out << (c ? "," : "") << m(r, c);
      out << "\n";
    }
    return path;
  }

  Eigen::MatrixXd read_csv(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::vector<double>> rows;
    for (std::string line; std::getline(in, line);) {
      std::stringstream cells(line);
      rows.emplace_back();
      for (std::string cell; std::getline(cells, cell, ',');)
        rows.back().push_back(std::stod(cell));
    }
    Eigen::MatrixXd m(static_cast<Eigen::Index>(rows.size()),
                      rows.empty() ? 0 : static_cast<Eigen::Index>(rows[0].size()));
    for (size_t r = 0; r < rows.size(); ++r) {
      for (size_t c = 0; c < rows[r].size(); ++c)
        m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = rows[r][c];
    }
    return m;
  }
};

Eigen::MatrixXd randn(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z;
  return Eigen::MatrixXd::NullaryExpr(rows, cols, [&] { return z(rng); });
}

std::string deployment_id(const std::string& out) {
  const size_t at = out.find("dep-");
  return at == std::string::npos ? "" : out.substr(at, 16);
}

// The median over the rows of ||y - ref|| / ||ref||.
double median_error(const Eigen::MatrixXd& y, const Eigen::MatrixXd& ref) {
  std::vector<double> e;
  for (Eigen::Index i = 0; i < y.rows(); ++i)
    e.push_back((y.row(i) - ref.row(i)).norm() / ref.row(i).norm());
  std::sort(e.begin(), e.end());
  return e[e.size() / 2];
}

TEST(MatrixService, RemappedDeployMultipliesWithinTheTargetAndBeatsTheIdentityPlacement) {
  Rig rig;
  for (const char* a : {"0", "1", "2"}) ASSERT_EQ(rig.ctl({"scan", "--array", a}).first, 0);
  const Eigen::MatrixXd w = randn(64, 32, 1);
  const Eigen::MatrixXd x = randn(300, 64, 2);
  const std::string w_csv = rig.write_csv("W.csv", w), x_csv = rig.write_csv("X.csv", x);
  matrix::MatrixSpec spec;
  spec.w = w;
  spec.quant.bits = 4;
  const Eigen::MatrixXd ref = x * matrix::quantize(spec);

  auto dep = rig.ctl({"matrix", "deploy", w_csv, "--bits", "4", "--name", "w4"});
  ASSERT_EQ(dep.first, 0) << dep.second << rig.xbard->output();
  EXPECT_NE(dep.second.find("\"w4\": ready"), std::string::npos) << dep.second;
  const std::string id = deployment_id(dep.second);
  const std::string y_csv = (rig.dir.path() / "Y.csv").string();
  auto mul = rig.ctl({"matrix", "multiply", id, x_csv, "--out", y_csv});
  ASSERT_EQ(mul.first, 0) << mul.second;
  const double remapped = median_error(rig.read_csv(y_csv), ref);
  EXPECT_LT(remapped, 0.08) << "median relative error, imssa seed 3 (5.5 % measured)";

  auto naive = rig.ctl({"matrix", "deploy", w_csv, "--bits", "4", "--remap", "naive", "--replace"});
  ASSERT_NE(deployment_id(naive.second), "") << naive.second;
  const std::string id2 = deployment_id(naive.second);
  ASSERT_EQ(rig.ctl({"matrix", "multiply", id2, x_csv, "--out", y_csv}).first, 0);
  const double identity = median_error(rig.read_csv(y_csv), ref);
  EXPECT_GT(identity, 2 * remapped) << identity << " vs " << remapped;

  // xbard killed hard and started again on the same board: the start-up read-back finds the
  // matrix still there.
  rig.xbard->kill_hard();
  rig.start();
  auto again = rig.ctl({"matrix", "multiply", id2, x_csv, "--out", y_csv});
  ASSERT_EQ(again.first, 0) << again.second << rig.xbard->output();
  EXPECT_LT(median_error(rig.read_csv(y_csv), ref), 2 * identity);
}

TEST(MatrixService, BadInputIsRefusedNamingTheFieldAndChangesNothing) {
  Rig rig;
  const Eigen::MatrixXd w = randn(8, 4, 3);
  auto dep = rig.ctl({"matrix", "deploy", rig.write_csv("W.csv", w), "--bits", "3"});
  ASSERT_EQ(dep.first, 0) << dep.second;
  const std::string id = deployment_id(dep.second);
  const std::string before = rig.ctl({"--json", "deployments"}).second;

  Eigen::MatrixXd nan = w;
  nan(2, 1) = std::nan("");
  auto r = rig.ctl({"matrix", "deploy", rig.write_csv("nan.csv", nan), "--replace"});
  EXPECT_EQ(r.first, 2) << r.second;
  EXPECT_NE(r.second.find("matrix.values[9]"), std::string::npos) << r.second;
  r = rig.ctl({"matrix", "deploy", rig.write_csv("big.csv", randn(200, 200, 4)), "--replace"});
  EXPECT_EQ(r.first, 2) << r.second;
  EXPECT_NE(r.second.find("it holds up to"), std::string::npos) << r.second;
  r = rig.ctl(
      {"matrix", "deploy", rig.write_csv("W2.csv", w), "--levels", "0.5,-0.5", "--replace"});
  EXPECT_EQ(r.first, 2) << r.second;
  EXPECT_NE(r.second.find("quantization.tables[0].levels[1]"), std::string::npos) << r.second;
  r = rig.ctl({"matrix", "multiply", id, rig.write_csv("x5.csv", randn(3, 5, 5))});
  EXPECT_EQ(r.first, 2) << r.second;
  EXPECT_NE(r.second.find("inputs: vectors of 5 values, the matrix has 8 rows"), std::string::npos)
      << r.second;
  EXPECT_EQ(rig.ctl({"--json", "deployments"}).second, before);
  // The deployment still multiplies.
  EXPECT_EQ(rig.ctl({"matrix", "multiply", id, rig.write_csv("x.csv", randn(3, 8, 6))}).first, 0);
}

}  // namespace
}  // namespace xbar
