#include "matrix_cmds.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "deploy_cmds.h"
#include "json_out.h"
#include "matrix_file.h"
#include "operation_cmds.h"
#include "progress.h"
#include "xbar/v1/matrices.grpc.pb.h"

namespace xbar::client {

namespace {

// MatrixService's per-message limits (matrices.proto): a larger batch goes through
// StreamMultiply in chunks of this many vectors.
constexpr Eigen::Index kMaxVectors = 4096;
constexpr Eigen::Index kMaxValues = 262144;

void to_proto(const Eigen::MatrixXd& m, v1::Matrix* out) {
  out->set_rows(static_cast<uint32_t>(m.rows()));
  out->set_cols(static_cast<uint32_t>(m.cols()));
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    for (Eigen::Index c = 0; c < m.cols(); ++c) out->add_values(m(r, c));
  }
}

Eigen::MatrixXd from_proto(const v1::Matrix& m) {
  Eigen::MatrixXd out(m.rows(), m.cols());
  for (int i = 0; i < m.values_size() && m.cols() > 0; ++i) {
    out(i / static_cast<int>(m.cols()), i % static_cast<int>(m.cols())) = m.values(i);
  }
  return out;
}

}  // namespace

struct MatrixCommands::Impl {
  CLI::App* deploy = nullptr;
  CLI::App* multiply = nullptr;
  CLI::App* capacity = nullptr;
  // deploy
  std::string file, name, remap = "auto", levels, levels_file, calibration;
  uint32_t bits = 0, max_rounds = 0;
  double range = 0, tol_uS = 0, max_error = 0, g_min_uS = 0, g_max_uS = 0;
  std::vector<uint32_t> arrays;
  bool replace = false, detach = false;
  // multiply
  std::string deployment, inputs, out;
  double input_range = 0;
  uint32_t repeats = 0;
  bool uncalibrated = false;

  std::optional<int> set_levels(v1::MatrixQuantization* q) const;
  int run_deploy(const Session& session) const;
  int run_multiply(const Session& session) const;
  int run_capacity(const Session& session) const;
};

MatrixCommands::MatrixCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  CLI::App* m = app.add_subcommand("matrix", "general matrices on the arrays: deploy, multiply");
  m->require_subcommand(1);
  m->footer(
      footer_with("Examples:\n  xbarctl matrix deploy W.npy --bits 4 --name proj\n"
                  "  xbarctl matrix multiply dep-0123456789ab X.npy --out Y.npy\n"
                  "  xbarctl matrix capacity"));
  Impl& i = *impl_;
  i.deploy = m->add_subcommand("deploy", "deploy a matrix W (K inputs x N outputs): y = x W");
  i.deploy->add_option("file", i.file, "W as .npy (float64/32, int64/32) or CSV")->required();
  i.deploy->add_option("--bits", i.bits, "uniform quantization bits, 2..8 (0: none)");
  i.deploy->add_option("--range", i.range, "the weight at g_max (0: the largest |w|)");
  i.deploy->add_option("--levels", i.levels,
                       "one level table for the whole matrix: \"-1,-0.3,0,0.3,1\"");
  i.deploy->add_option(
      "--levels-file", i.levels_file,
      "level tables, one per CSV row: 1 row (whole matrix) or N rows (per column)");
  i.deploy->add_option("--name", i.name, "deployment name (up to 64 characters)");
  i.deploy->add_option("--remap", i.remap, "auto | naive")->check(CLI::IsMember({"auto", "naive"}));
  i.deploy->add_option("--arrays", i.arrays, "arrays it may use (default all)");
  i.deploy->add_flag("--replace", i.replace, "take arrays held by other deployments");
  i.deploy->add_option("--tol", i.tol_uS, "program-verify tolerance in uS (0: 2 uS for matrices)");
  i.deploy->add_option("--max-rounds", i.max_rounds, "program-verify rounds (0: default)");
  i.deploy->add_option("--max-error", i.max_error,
                       "read-back error above which it is degraded (0: 0.1)");
  i.deploy->add_option("--g-min", i.g_min_uS, "window bottom in uS (0: 2)");
  i.deploy->add_option("--g-max", i.g_max_uS, "window top in uS (0: 250)");
  i.deploy->add_flag("--detach", i.detach,
                     "print the operation id and return; xbard goes on (xbarctl watch ID)");
  i.deploy->add_option("--calibration", i.calibration,
                       "typical inputs (C x K .npy/CSV): calibrate on them and keep their range");
  i.deploy->footer(
      footer_with("Examples:\n  xbarctl matrix deploy W.npy --bits 4 --name proj\n"
                  "  xbarctl matrix deploy W.csv --levels-file levels.csv"));
  i.multiply =
      m->add_subcommand("multiply", "multiply input vectors (rows of X) by a deployed matrix");
  i.multiply->add_option("deployment", i.deployment, "matrix deployment id (dep-...)")->required();
  i.multiply->add_option("inputs", i.inputs, "X as .npy or CSV, one input vector per row")
      ->required();
  i.multiply->add_option("--out", i.out, "write Y here (.npy or CSV); default: CSV on stdout");
  i.multiply->add_option("--input-range", i.input_range,
                         "|x| at full 8-bit scale (0: calibrated, else per vector)");
  i.multiply->add_option("--repeats", i.repeats, "VMMs averaged per vector, 1..16");
  i.multiply->add_flag("--uncalibrated", i.uncalibrated, "without the per-output calibration");
  i.multiply->footer(
      footer_with("Examples:\n  xbarctl matrix multiply dep-0123456789ab X.npy --out Y.npy"));
  i.capacity = m->add_subcommand("capacity", "the largest matrices the chip holds");
  i.capacity->footer(
      footer_with("Examples:\n  xbarctl matrix capacity\n  xbarctl --json matrix capacity"));
}

MatrixCommands::~MatrixCommands() = default;

std::optional<int> MatrixCommands::run(const Session& session) const {
  if (impl_->deploy->parsed()) return impl_->run_deploy(session);
  if (impl_->multiply->parsed()) return impl_->run_multiply(session);
  if (impl_->capacity->parsed()) return impl_->run_capacity(session);
  return std::nullopt;
}

std::optional<int> MatrixCommands::Impl::set_levels(v1::MatrixQuantization* q) const {
  if (!levels.empty()) {
    std::stringstream in(levels);
    auto* t = q->add_tables();
    for (std::string v; std::getline(in, v, ',');) {
      try {
        t->add_levels(std::stod(v));
      } catch (const std::exception&) {
        std::cerr << fmt::format("xbarctl: --levels: '{}' is not a number\n", v);
        return kUsage;
      }
    }
  }
  if (!levels_file.empty()) {
    auto l = read_matrix_file(levels_file);
    if (!l) {
      std::cerr << "xbarctl: " << l.error() << "\n";
      return kUsage;
    }
    for (Eigen::Index r = 0; r < l->rows(); ++r) {
      auto* t = q->add_tables();
      for (Eigen::Index c = 0; c < l->cols(); ++c) t->add_levels((*l)(r, c));
    }
  }
  return std::nullopt;
}

int MatrixCommands::Impl::run_deploy(const Session& session) const {
  auto w = read_matrix_file(file);
  if (!w) {
    std::cerr << "xbarctl: " << w.error() << "\n";
    return kUsage;
  }
  v1::DeployMatrixRequest req;
  to_proto(*w, req.mutable_matrix());
  req.mutable_quantization()->set_bits(bits);
  req.mutable_quantization()->set_range(range);
  if (auto rc = set_levels(req.mutable_quantization())) return *rc;
  if (!calibration.empty()) {
    auto x = read_matrix_file(calibration);
    if (!x) {
      std::cerr << "xbarctl: " << x.error() << "\n";
      return kUsage;
    }
    to_proto(*x, req.mutable_calibration_inputs());
  }
  req.set_g_min_us(g_min_uS);
  req.set_g_max_us(g_max_uS);
  set_deploy_options(req.mutable_options(), name, remap, arrays, replace, tol_uS, max_rounds,
                     max_error);
  auto stub = v1::MatrixService::NewStub(session.channel());
  auto ctx = session.context(kLongCallS);
  if (detach) request_detach(*ctx);
  auto reader = stub->DeployMatrix(ctx.get(), req);
  v1::DeployKernelResponse msg;
  const bool got = reader->Read(&msg);
  if (auto rc = after_first_message(session, *ctx, *reader, got, detach)) return *rc;
  return finish_deploy_stream(session, *reader, msg, got, operation_id(*ctx));
}

int MatrixCommands::Impl::run_multiply(const Session& session) const {
  auto x = read_matrix_file(inputs);
  if (!x) {
    std::cerr << "xbarctl: " << x.error() << "\n";
    return kUsage;
  }
  auto stub = v1::MatrixService::NewStub(session.channel());
  auto ctx = session.context(kLongCallS);
  auto rw = stub->StreamMultiply(ctx.get());
  const Eigen::Index chunk = std::max<Eigen::Index>(
      1, std::min(kMaxVectors, kMaxValues / std::max<Eigen::Index>(1, x->cols())));
  Eigen::MatrixXd y;
  double est = 0, quant = 0;
  for (Eigen::Index at = 0; at < x->rows(); at += chunk) {
    v1::StreamMultiplyRequest msg;
    v1::MultiplyRequest& req = *msg.mutable_batch();
    req.set_deployment(deployment);
    to_proto(x->middleRows(at, std::min(chunk, x->rows() - at)), req.mutable_inputs());
    req.set_input_range(input_range);
    req.set_repeats(repeats);
    req.set_uncalibrated(uncalibrated);
    v1::MultiplyResponse r;
    if (!rw->Write(msg) || !rw->Read(&r)) break;
    const Eigen::MatrixXd part = from_proto(r.outputs());
    if (y.size() == 0) y.resize(x->rows(), part.cols());
    y.middleRows(at, part.rows()) = part;
    est = std::max(est, r.estimated_error());
    quant = std::max(quant, r.quantization_error());
  }
  rw->WritesDone();
  const grpc::Status s = rw->Finish();
  if (!s.ok()) return session.fail(s);
  if (!out.empty()) {
    if (auto wr = write_matrix_file(out, y); !wr) {
      std::cerr << "xbarctl: " << wr.error() << "\n";
      return kFailed;
    }
  }
  if (session.json()) {
    Json j = {{"rows", y.rows()},
              {"cols", y.cols()},
              {"estimated_error", est},
              {"quantization_error", quant}};
    if (out.empty()) {
      Json rows = Json::array();
      for (Eigen::Index r = 0; r < y.rows(); ++r) {
        Json row = Json::array();
        for (Eigen::Index c = 0; c < y.cols(); ++c) row.push_back(y(r, c));
        rows.push_back(std::move(row));
      }
      j["outputs"] = rows;
    } else {
      j["out"] = out;
    }
    std::cout << dump(j) << "\n";
  } else {
    if (out.empty()) std::cout << matrix_csv(y);
    std::cerr << fmt::format(
        "{} x {} results{}; estimated error from the read-back {:.3g}, "
        "quantization error {:.3g}\n",
        y.rows(), y.cols(), out.empty() ? "" : " written to " + out, est, quant);
  }
  return kOk;
}

int MatrixCommands::Impl::run_capacity(const Session& session) const {
  auto stub = v1::MatrixService::NewStub(session.channel());
  auto ctx = session.context();
  v1::MatrixCapacity c;
  const grpc::Status s = stub->GetMatrixCapacity(ctx.get(), {}, &c);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    std::cout << dump(proto_value(c)) << "\n";
  } else {
    std::cout << fmt::format(
        "{} arrays; per array {} x {} (column pairs) or {} x {} (row pairs); "
        "{}\n",
        c.arrays(), c.column_pairs_inputs(), c.column_pairs_outputs(), c.row_pairs_inputs(),
        c.row_pairs_outputs(), c.text());
  }
  return kOk;
}

}  // namespace xbar::client
