#include "deploy_cmds.h"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <vector>

#include "cli.h"
#include "json_out.h"
#include "operation_cmds.h"
#include "progress.h"
#include "xbar/v1/arrays.grpc.pb.h"
#include "xbar/v1/kernels.grpc.pb.h"

namespace xbar::client {
namespace {

constexpr int kSide = 64;  // rows and columns of an array
constexpr double kDefaultGMin = 7, kDefaultGMax = 200;

std::string local_time(int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// An NRMSE: four decimals, or four significant digits once it is large (a diverging kernel).
std::string nrmse_str(double x) {
  return std::abs(x) < 1000 ? fmt::format("{:.4f}", x) : fmt::format("{:.4g}", x);
}

std::string remap_name(v1::RemapMode m) { return m == v1::REMAP_NAIVE ? "naive" : "auto"; }

// Without the per-device matrices (64x64 floats each; `map --csv` or --full gives them).
v1::Deployment without_matrices(v1::Deployment d) {
  for (auto& p : *d.mutable_placements()) {
    p.clear_target_us();
    p.clear_readback_us();
    p.mutable_programming()->clear_final_us();
  }
  return d;
}

std::string kernel_name(const v1::Deployment& d, uint32_t kernel) {
  if (kernel < static_cast<uint32_t>(d.kernel_set().kernels_size()))
    return d.kernel_set().kernels(static_cast<int>(kernel)).name();
  return "";
}

// 0 when nothing was verified (no placements, or a deployment that failed before verify).
double worst_nrmse(const v1::Deployment& d) {
  double w = 0;
  for (const auto& p : d.placements()) w = std::max(w, p.nrmse());
  return w;
}

struct DeployArgs {
  std::string file, name, remap = "auto";
  std::vector<uint32_t> arrays;
  bool replace = false;
  double tol_uS = 0;
  uint32_t max_rounds = 0;
  double max_nrmse = 0;
  bool detach = false;
};

struct MapArgs {
  std::string id, png, csv;
  bool targets = false;
  int cell_px = 8;
};

}  // namespace

std::expected<v1::KernelSet, std::string> load_kernel_set(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return std::unexpected(path + ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  v1::KernelSet ks;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(text.str(), &ks, options);
  if (!status.ok())
    return std::unexpected(fmt::format("{}: {}", path, std::string(status.message())));
  return ks;
}

std::pair<double, double> window_uS(const v1::KernelSet& ks) {
  const double lo = ks.window().g_min_us() > 0 ? ks.window().g_min_us() : kDefaultGMin;
  const double hi = ks.window().g_max_us() > 0 ? ks.window().g_max_us() : kDefaultGMax;
  return {lo, hi};
}

std::pair<double, double> deployment_window_uS(const v1::Deployment& d) {
  if (d.has_matrix()) return {d.matrix().g_min_us(), d.matrix().g_max_us()};
  return window_uS(d.kernel_set());
}

std::expected<KernelPanel, std::string> kernel_panel(const v1::Placement& p,
                                                     const v1::FaultMap& faults, bool targets) {
  const auto& values = targets ? p.target_us() : p.readback_us();
  if (values.size() != kSide * kSide) {
    return std::unexpected(
        fmt::format("kernel {} on array {}: the deployment has {} {} values, expected {}x{}{}",
                    p.kernel(), p.array(), values.size(), targets ? "target" : "read-back", kSide,
                    kSide, targets ? "" : " (not programmed? --targets draws what was asked for)"));
  }
  KernelPanel k;
  k.g_uS.resize(kSide, kSide);
  for (int i = 0; i < kSide * kSide; ++i) k.g_uS(i / kSide, i % kSide) = values[i];
  k.row_of_logical.assign(p.row_of_logical().begin(), p.row_of_logical().end());
  k.col_of_logical.assign(p.col_of_logical().begin(), p.col_of_logical().end());
  k.states = static_cast<int>(p.states());
  for (const auto& f : faults.faults()) {
    if (f.array() != p.array()) continue;
    const std::pair<int, int> rc{static_cast<int>(f.row()), static_cast<int>(f.col())};
    if (f.kind() == "stuck_high") k.stuck_high.push_back(rc);
    if (f.kind() == "stuck_low") k.stuck_low.push_back(rc);
  }
  return k;
}

void show_deploy_progress(Progress& progress, const v1::DeployProgress& p) {
  if (p.stage() == "program" && p.has_round()) {
    const auto& r = p.round();
    const double total = r.converged() + r.pending() + r.abandoned();
    progress.bar(fmt::format("program  array {}{}", p.array(),
                             p.kernel() >= 0 ? fmt::format(" (kernel {})", p.kernel()) : ""),
                 total > 0 ? (r.converged() + r.abandoned()) / total : 0,
                 fmt::format("round {}/{}: converged {} pending {} abandoned {}", r.round(),
                             r.max_rounds(), r.converged(), r.pending(), r.abandoned()));
    return;
  }
  std::string what = p.message();
  if (what.empty()) {
    if (p.kernel() >= 0) what += fmt::format("kernel {}", p.kernel());
    if (p.array() >= 0) what += fmt::format("{}array {}", what.empty() ? "" : " -> ", p.array());
  }
  progress.note(fmt::format("{:<8} {}", p.stage(), what));
}

bool show_deploy_message(Progress& progress, const v1::DeployKernelResponse& msg,
                         v1::Deployment* deployment) {
  if (msg.has_progress()) {
    show_deploy_progress(progress, msg.progress());
  } else if (msg.has_deployment()) {
    *deployment = msg.deployment();
    return true;
  }
  return false;
}

void set_deploy_options(v1::DeployKernelRequest* o, const std::string& name,
                        const std::string& remap, const std::vector<uint32_t>& arrays, bool replace,
                        double tol_uS, uint32_t max_rounds, double max_nrmse) {
  o->set_name(name);
  o->set_remap(remap == "naive" ? v1::REMAP_NAIVE : v1::REMAP_AUTO);
  for (uint32_t a : arrays) o->add_arrays(a);
  o->set_replace(replace);
  o->set_tol_us(tol_uS);
  o->set_max_rounds(max_rounds);
  o->set_max_nrmse(max_nrmse);
}

int finish_deploy_stream(const Session& session,
                         grpc::ClientReaderInterface<v1::DeployKernelResponse>& reader,
                         v1::DeployKernelResponse msg, bool got, const std::string& operation) {
  v1::Deployment dep;
  bool have = false;
  {
    Progress progress(session.progress());
    for (; got; got = reader.Read(&msg)) {
      if (show_deploy_message(progress, msg, &dep)) have = true;
    }
  }
  const grpc::Status s = reader.Finish();
  if (!s.ok()) {
    const int rc = session.fail(s);
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
        s.error_code() == grpc::StatusCode::CANCELLED) {
      std::cerr << "xbarctl: a deployment stopped while programming is recorded as failed (its "
                   "arrays hold partial content): see xbarctl deployments\n";
    }
    return rc;
  }
  if (!have) {
    std::cerr << "xbarctl: the daemon sent no deployment\n";
    return kFailed;
  }
  return print_deploy_result(session, dep, operation);
}

int print_deploy_result(const Session& session, const v1::Deployment& dep,
                        const std::string& operation) {
  if (session.json()) {
    v1::Deployment d = without_matrices(dep);
    d.clear_model();
    std::cout << dump(with_operation(proto_value(d), operation)) << "\n";
    if (dep.state_code() != v1::DEPLOYMENT_STATE_READY) {
      std::cerr << fmt::format("xbarctl: deployment {} is {}: {}\n", dep.id(), dep.state(),
                               dep.message().empty() ? "no reason given" : dep.message());
    }
  } else {
    std::cout << format_deployment(dep);
  }
  return dep.state_code() == v1::DEPLOYMENT_STATE_READY ? kOk : kFailed;
}

// The programming report of one placement, as a line of format_deployment.
std::string programming_line(const v1::ProgramReport& pr) {
  return fmt::format(
      "    programming   {:.2f} % within tol in {} rounds (error sigma {:.2f} uS), {} abandoned, "
      "{} skipped{}\n",
      pr.within_tol_pct(), pr.rounds(), pr.error_sigma_us(), pr.abandoned_size(), pr.skipped(),
      pr.cancelled() ? ", CANCELLED" : "");
}

// A matrix deployment's own lines: the matrix, then each tile (after the common header).
std::string format_matrix(const v1::Deployment& d) {
  const v1::MatrixDeployment& m = d.matrix();
  const v1::MatrixQuantization& q = m.quantization();
  const std::string quant = q.tables_size() > 0 ? fmt::format("{} level table(s)", q.tables_size())
                            : q.bits() > 0      ? fmt::format("{}-bit uniform", q.bits())
                                                : std::string("unquantized");
  std::string o = fmt::format(
      "  matrix {} x {} (inputs x outputs), {}, range {:.4g}, {}, {:.4g} uS per unit weight\n",
      m.matrix().rows(), m.matrix().cols(), quant, m.range(),
      m.orientation() == v1::MATRIX_ORIENTATION_ROW_PAIRS ? "row pairs" : "column pairs",
      m.scale_us());
  o += fmt::format(
      "    errors        quantization {:.4f}, read-back {:.4f}, after calibration {:.4f} "
      "(median over the calibration vectors)\n",
      m.quantization_error(), m.readback_error(), m.calibrated_error());
  for (int t = 0; t < m.tiles_size() && t < d.placements_size(); ++t) {
    const v1::MatrixTile& mt = m.tiles(t);
    const v1::Placement& p = d.placements(t);
    const auto& pr = p.programming();
    o += fmt::format("  tile {} (inputs {}..{}, outputs {}..{}) -> array {}\n", t, mt.input_begin(),
                     mt.input_begin() + mt.inputs() - 1, mt.output_begin(),
                     mt.output_begin() + mt.outputs() - 1, mt.array());
    o += fmt::format(
        "    error         {:.4f} read-back ({:.4f} analog alone, {} weights fixed digitally), "
        "{:.4f} predicted, {:.4f} naive placement (predicted)\n",
        mt.readback_error(), mt.readback_error_analog(), mt.fixes_size(), mt.predicted_error(),
        mt.naive_predicted_error());
    o += fmt::format("    faults        {} recorded: {} avoided, {} compensated, {} residual\n",
                     p.faults(), p.faults_avoided(), p.faults_compensated(), p.faults_residual());
    o += programming_line(pr);
  }
  return o;
}

std::string format_deployment(const v1::Deployment& d) {
  const auto [g_min, g_max] = deployment_window_uS(d);
  std::string o = fmt::format("deployment {} \"{}\": {}\n", d.id(), d.name(), d.state());
  if (!d.message().empty() && d.state_code() != v1::DEPLOYMENT_STATE_READY)
    o += fmt::format("  why: {}\n", d.message());
  if (d.archived_at_ms() != 0) {
    o += fmt::format("  archived {} by retention: the per-device matrices are no longer kept\n",
                     local_time(d.archived_at_ms()));
  }
  o += fmt::format("  chip {}, created {}, remap {}, window {:g}..{:g} uS, {} placement{}\n",
                   d.serial(), local_time(d.created_at_ms()), remap_name(d.remap()), g_min, g_max,
                   d.placements_size(), d.placements_size() == 1 ? "" : "s");
  if (d.has_matrix()) return o + format_matrix(d);
  for (const auto& p : d.placements()) {
    const auto& pr = p.programming();
    o += fmt::format("  kernel {} \"{}\" -> array {}: {} states\n", p.kernel(),
                     kernel_name(d, p.kernel()), p.array(), p.states());
    o += fmt::format(
        "    nrmse         {} read-back, {} predicted, {} naive placement (predicted)\n",
        nrmse_str(p.nrmse()), nrmse_str(p.nrmse_predicted()), nrmse_str(p.nrmse_naive_predicted()));
    o += fmt::format("    quantization  {} nrmse (compiled vs full precision)\n",
                     nrmse_str(p.quantization_nrmse()));
    o += fmt::format("    faults        {} recorded: {} avoided, {} compensated, {} residual\n",
                     p.faults(), p.faults_avoided(), p.faults_compensated(), p.faults_residual());
    o += programming_line(pr);
    o += fmt::format("    remap         {:.1f} ms\n", p.remap_ms());
  }
  if (d.has_fidelity()) {
    const auto& f = d.fidelity();
    std::string rates;
    for (int k = 0; k < f.state_clip_rate_size(); ++k) {
      rates += fmt::format("{}{:.3g} %", k ? ", " : "", 100 * f.state_clip_rate(k));
    }
    o += fmt::format(
        "  fidelity        {} clips: labels agree {:.1f} % (min {:.1f} %), logit NRMSE {:.3g}, "
        "predicted state clipping per kernel {}\n",
        f.clips(), 100 * f.label_agreement(), 100 * f.min_label_agreement(), f.logit_nrmse(),
        rates);
  }
  return o;
}

struct DeployCommands::Impl {
  CLI::App *deploy = nullptr, *list = nullptr, *show = nullptr, *undeploy = nullptr, *map = nullptr;
  DeployArgs da;
  std::string show_id, undeploy_id;
  bool show_full = false;
  bool list_archived = false;
  uint32_t list_limit = 0;
  MapArgs ma;

  // Each registers its subcommand on `app` with its options, filling in the fields above.
  void add_deploy(CLI::App& app);
  void add_list(CLI::App& app);
  void add_show(CLI::App& app);
  void add_undeploy(CLI::App& app);
  void add_map(CLI::App& app);

  int run_deploy(const Session& session, v1::KernelService::Stub& stub) const;
  int run_list(const Session& session, v1::KernelService::Stub& stub) const;
  int run_show(const Session& session, v1::KernelService::Stub& stub) const;
  int run_undeploy(const Session& session, v1::KernelService::Stub& stub) const;
  int run_map(const Session& session) const;
};

DeployCommands::DeployCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  impl_->add_deploy(app);
  impl_->add_list(app);
  impl_->add_show(app);
  impl_->add_undeploy(app);
  impl_->add_map(app);
}

void DeployCommands::Impl::add_deploy(CLI::App& app) {
  deploy = app.add_subcommand(
      "deploy", "compile, place, program and verify S4D kernels from a KernelSet JSON file");
  deploy
      ->add_option("KERNEL.json", da.file,
                   "kernel file: an xbar.v1.KernelSet in the protobuf JSON mapping "
                   "(proto/xbar/v1/kernels.proto)")
      ->required();
  deploy->add_option("--name", da.name, "deployment name (default: the file name)");
  deploy
      ->add_option("--remap", da.remap,
                   "auto: place around the recorded stuck devices and compensate them; "
                   "naive: identity placement")
      ->check(CLI::IsMember({"auto", "naive"}))
      ->capture_default_str();
  deploy->add_option("--arrays", da.arrays, "arrays it may use, e.g. 0,2 (default: all)")
      ->delimiter(',');
  deploy->add_flag("--replace", da.replace,
                   "take arrays held by other deployments (those become stale)");
  deploy->add_option("--tol", da.tol_uS, "program-verify tolerance in uS (default: the daemon's)");
  deploy->add_option("--max-rounds", da.max_rounds,
                     "program-verify rounds per array (default: the daemon's)");
  deploy->add_option("--max-nrmse", da.max_nrmse,
                     "read-back NRMSE above which the deployment is degraded (default 0.5)");
  deploy->add_flag("--detach", da.detach,
                   "start it and return: print the operation id (xbarctl watch ID follows it)");
  deploy->footer(footer_with(
      "Progress (stages, a bar per array) goes to stderr. Exit 0 when the deployment is ready,\n"
      "1 when degraded or failed, 6 when the arrays are held by another deployment (--replace).\n"
      "The call's deadline is --timeout when given, else 600 s. --json: the Deployment without\n"
      "its 64x64 matrices (xbarctl --json deployment ID --full has them) and \"operation\".\n"
      "--detach: prints the operation id and returns; xbard goes on (xbarctl watch ID).\n"
      "Examples:\n  xbarctl deploy configs/kernels/example.json\n"
      "  xbarctl deploy configs/kernels/example-2bit.json --name q2 --arrays 0,1,2 --replace\n"
      "  xbarctl --json --quiet deploy kernels.json --remap naive > report.json\n"
      "  xbarctl deploy configs/kernels/example.json --replace --detach"));
}

void DeployCommands::Impl::add_list(CLI::App& app) {
  list = app.add_subcommand("deployments", "the deployments recorded for the chip, newest first");
  list->add_flag("--archived", list_archived,
                 "also the deployments retention archived (kept without their matrices)");
  list->add_option("--limit", list_limit, "only the newest N (default: all of them)")
      ->check(CLI::Range(1u, 1000000u));
  list->footer(footer_with(
      "Reads every page of ListDeployments (or up to --limit deployments). Old failed, stale\n"
      "and lost deployments beyond the daemon's retention (keep_inactive, default 20 per chip)\n"
      "are archived and shown only with --archived, their state marked \"(archived)\".\n"
      "--json: one ListDeploymentsResponse holding the deployments of every page read\n"
      "(protobuf JSON mapping, .proto field names; archived ones have archived_at_ms).\n"
      "Examples:\n  xbarctl deployments\n  xbarctl deployments --archived --limit 100\n"
      "  xbarctl --json deployments | jq -r '.deployments[] | select(.state == \"ready\") | .id'"));
}

void DeployCommands::Impl::add_show(CLI::App& app) {
  show = app.add_subcommand("deployment", "one deployment's full report");
  show->add_option("ID", show_id, "deployment id (dep-...)")->required();
  show->add_flag("--full", show_full,
                 "--json: include the 64x64 targets and read-backs of every placement");
  show->footer(
      footer_with("Exit 4 when there is no such deployment.\n"
                  "Examples:\n  xbarctl deployment dep-0123456789ab\n"
                  "  xbarctl --json deployment dep-0123456789ab --full > dep.json"));
}

void DeployCommands::Impl::add_undeploy(CLI::App& app) {
  undeploy = app.add_subcommand(
      "undeploy", "forget a deployment: its arrays become free (no pulses, conductances stay)");
  undeploy->add_option("ID", undeploy_id, "deployment id (dep-...)")->required();
  undeploy->footer(footer_with(
      "Exit 4 when there is no such deployment.\nExamples:\n  xbarctl undeploy dep-0123456789ab"));
}

void DeployCommands::Impl::add_map(CLI::App& app) {
  map = app.add_subcommand(
      "map", "draw a deployment as programmed: one heat map per array with stuck devices");
  map->add_option("--deployment,-d", ma.id, "deployment id (dep-...)")->required();
  map->add_option("--png", ma.png, "write the map as a PNG");
  map->add_option("--csv", ma.csv,
                  "write the 64x64 read-back (targets with --targets) of each placement, uS");
  map->add_flag("--targets", ma.targets, "draw the targets instead of the read-back");
  map->add_option("--cell", ma.cell_px, "pixels per device (2..64)")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  map->footer(footer_with(
      "One panel per placement, by array, viridis over the deployment's conductance window.\n"
      "Outlined: stuck-high devices red, stuck-low blue (the recorded fault map); thin light\n"
      "lines around the input rows, the state block and the output columns where the remap put\n"
      "them; ticks in the margins mark the physical rows fed by the input and the physical\n"
      "columns read as outputs.\n"
      "Examples:\n  xbarctl map --deployment dep-0123456789ab --png dep.png\n"
      "  xbarctl map -d dep-0123456789ab --png targets.png --targets --csv targets.csv"));
}

DeployCommands::~DeployCommands() = default;

std::optional<int> DeployCommands::run(const Session& session) const {
  const Impl& m = *impl_;
  auto stub = v1::KernelService::NewStub(session.channel());
  if (*m.deploy) return m.run_deploy(session, *stub);
  if (*m.list) return m.run_list(session, *stub);
  if (*m.show) return m.run_show(session, *stub);
  if (*m.undeploy) return m.run_undeploy(session, *stub);
  if (*m.map) return m.run_map(session);
  return std::nullopt;
}

int DeployCommands::Impl::run_deploy(const Session& session, v1::KernelService::Stub& stub) const {
  auto ks = load_kernel_set(da.file);
  if (!ks) {
    std::cerr << "xbarctl: " << ks.error() << "\n";
    return kUsage;
  }
  v1::DeployKernelRequest req;
  *req.mutable_kernel_set() = std::move(*ks);
  set_deploy_options(
      &req,
      da.name.empty() ? std::filesystem::path(da.file).stem().string().substr(0, 64) : da.name,
      da.remap, da.arrays, da.replace, da.tol_uS, da.max_rounds, da.max_nrmse);

  auto ctx = session.context(kLongCallS);
  if (da.detach) request_detach(*ctx);
  auto reader = stub.DeployKernel(ctx.get(), req);
  v1::DeployKernelResponse msg;
  bool got = reader->Read(&msg);
  if (auto rc = after_first_message(session, *ctx, *reader, got, da.detach)) return *rc;
  return finish_deploy_stream(session, *reader, msg, got, operation_id(*ctx));
}

int DeployCommands::Impl::run_list(const Session& session, v1::KernelService::Stub& stub) const {
  // Every page (AIP-158), each its own call with the --timeout deadline, merged into one
  // response; up to --limit deployments.
  constexpr uint32_t kMaxPageSize = 1000;  // the daemon's maximum (kernels.proto)
  v1::ListDeploymentsResponse resp;
  v1::ListDeploymentsRequest req;
  req.set_include_archived(list_archived);
  std::set<std::string> tokens_seen;
  for (;;) {
    // The daemon's default page size (50), or what is left of --limit.
    if (list_limit != 0) {
      const uint32_t left = list_limit - static_cast<uint32_t>(resp.deployments_size());
      req.set_page_size(std::min(kMaxPageSize, left));
    }
    v1::ListDeploymentsResponse page;
    auto ctx = session.context();
    const grpc::Status s = stub.ListDeployments(ctx.get(), req, &page);
    if (!s.ok()) return session.fail(s);
    for (auto& d : *page.mutable_deployments()) *resp.add_deployments() = std::move(d);
    if (page.next_page_token().empty()) break;
    if (list_limit != 0 && static_cast<uint32_t>(resp.deployments_size()) >= list_limit) break;
    if (!tokens_seen.insert(page.next_page_token()).second) {
      std::cerr << "xbarctl: the daemon handed out the same page token twice; stopping\n";
      return kFailed;
    }
    req.set_page_token(page.next_page_token());
  }
  if (session.json()) {
    std::cout << proto_json(resp) << "\n";
    return kOk;
  }
  if (resp.deployments().empty()) {
    std::cout << "no deployments\n";
    return kOk;
  }
  struct Row {
    std::string id, name, state, created, arrays, nrmse;
  };
  std::vector<Row> rows = {{"ID", "NAME", "STATE", "CREATED", "ARRAYS", "WORST NRMSE"}};
  for (const auto& d : resp.deployments()) {
    std::string arrays;
    for (const auto& p : d.placements())
      arrays += fmt::format("{}{}", arrays.empty() ? "" : ",", p.array());
    rows.push_back({d.id(), d.name(),
                    d.archived_at_ms() != 0 ? d.state() + " (archived)" : d.state(),
                    local_time(d.created_at_ms()), arrays.empty() ? "-" : arrays,
                    worst_nrmse(d) > 0 || d.state_code() == v1::DEPLOYMENT_STATE_READY
                        ? nrmse_str(worst_nrmse(d))
                        : "-"});
  }
  size_t w[5] = {};
  for (const auto& r : rows) {
    w[0] = std::max(w[0], r.id.size());
    w[1] = std::max(w[1], r.name.size());
    w[2] = std::max(w[2], r.state.size());
    w[3] = std::max(w[3], r.created.size());
    w[4] = std::max(w[4], r.arrays.size());
  }
  for (const auto& r : rows) {
    std::cout << fmt::format("{:<{}}  {:<{}}  {:<{}}  {:<{}}  {:<{}}  {}\n", r.id, w[0], r.name,
                             w[1], r.state, w[2], r.created, w[3], r.arrays, w[4], r.nrmse);
  }
  return kOk;
}

int DeployCommands::Impl::run_show(const Session& session, v1::KernelService::Stub& stub) const {
  v1::GetDeploymentRequest req;
  req.set_id(show_id);
  v1::Deployment dep;
  auto ctx = session.context();
  const grpc::Status s = stub.GetDeployment(ctx.get(), req, &dep);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    std::cout << proto_json(show_full ? dep : without_matrices(dep)) << "\n";
  } else {
    std::cout << format_deployment(dep);
  }
  return kOk;
}

int DeployCommands::Impl::run_undeploy(const Session& session,
                                       v1::KernelService::Stub& stub) const {
  v1::DeleteDeploymentRequest req;
  req.set_id(undeploy_id);
  v1::DeleteDeploymentResponse resp;
  auto ctx = session.context();
  const grpc::Status s = stub.DeleteDeployment(ctx.get(), req, &resp);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    Json j;
    j["id"] = undeploy_id;
    j["deleted"] = true;
    std::cout << dump(j) << "\n";
  } else {
    std::cout << fmt::format(
        "deleted deployment {}: its arrays are free (no pulses: they keep their conductances)\n",
        undeploy_id);
  }
  return kOk;
}

namespace {

// Fetches the deployment `id` and the board's fault map; the exit code when a call failed.
std::optional<int> fetch_deployment_and_faults(const Session& session, const std::string& id,
                                               v1::Deployment* dep, v1::FaultMap* faults) {
  {
    auto kernels = v1::KernelService::NewStub(session.channel());
    v1::GetDeploymentRequest req;
    req.set_id(id);
    auto ctx = session.context();
    const grpc::Status s = kernels->GetDeployment(ctx.get(), req, dep);
    if (!s.ok()) return session.fail(s);
  }
  {
    auto arrays = v1::ArrayService::NewStub(session.channel());
    auto ctx = session.context();
    const grpc::Status s = arrays->GetFaultMap(ctx.get(), {}, faults);
    if (!s.ok()) return session.fail(s);
  }
  return std::nullopt;
}

// The deployment's placements in array order: the panels left to right.
std::vector<const v1::Placement*> placements_by_array(const v1::Deployment& dep) {
  std::vector<const v1::Placement*> order;
  for (const auto& p : dep.placements()) order.push_back(&p);
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return a->array() < b->array(); });
  return order;
}

// One captioned panel per placement of `order`.
std::expected<std::vector<KernelPanel>, std::string> map_panels(
    const v1::Deployment& dep, const std::vector<const v1::Placement*>& order,
    const v1::FaultMap& faults, bool targets) {
  std::vector<KernelPanel> panels;
  for (const auto* p : order) {
    auto panel = kernel_panel(*p, faults, targets);
    if (!panel) return std::unexpected(panel.error());
    const std::string name = kernel_name(dep, p->kernel());
    panel->caption = fmt::format("array {}: kernel {}{}, {} states", p->array(), p->kernel(),
                                 name.empty() ? "" : " \"" + name + "\"", p->states());
    panels.push_back(std::move(*panel));
  }
  return panels;
}

std::expected<void, std::string> write_map_png(const v1::Deployment& dep,
                                               const std::vector<KernelPanel>& panels,
                                               const MapArgs& ma, double g_min_uS,
                                               double g_max_uS) {
  const std::string title = fmt::format(
      "deployment {}{} ({}): {}", dep.id(), dep.name().empty() ? "" : " \"" + dep.name() + "\"",
      dep.state(), ma.targets ? "the targets asked for" : "the conductances read back");
  return write_kernel_map_png(ma.png, panels,
                              {.g_min_uS = g_min_uS,
                               .g_max_uS = g_max_uS,
                               .cell_px = ma.cell_px,
                               .framed = true,
                               .title = title});
}

// Each panel's 64x64 values, a comment line naming it before each block.
std::expected<void, std::string> write_map_csv(const v1::Deployment& dep,
                                               const std::vector<const v1::Placement*>& order,
                                               const std::vector<KernelPanel>& panels,
                                               const MapArgs& ma) {
  std::ofstream out(ma.csv);
  if (!out) return std::unexpected("--csv " + ma.csv + ": cannot write");
  for (size_t i = 0; i < panels.size(); ++i) {
    out << fmt::format(
        "{}# deployment {}, kernel {} \"{}\" -> array {}: {} in uS, physical rows top to "
        "bottom, cols left to right\n",
        i ? "\n" : "", dep.id(), order[i]->kernel(), kernel_name(dep, order[i]->kernel()),
        order[i]->array(), ma.targets ? "targets" : "read-back");
    for (int r = 0; r < kSide; ++r) {
      for (int c = 0; c < kSide; ++c)
        out << (c ? "," : "") << fmt::format("{:.3f}", panels[i].g_uS(r, c));
      out << "\n";
    }
  }
  if (!out.flush()) return std::unexpected("--csv " + ma.csv + ": cannot write");
  return {};
}

void print_map_json(const v1::Deployment& dep, const std::vector<const v1::Placement*>& order,
                    const std::vector<KernelPanel>& panels, const MapArgs& ma, double g_min_uS,
                    double g_max_uS) {
  Json items = Json::array();
  for (size_t i = 0; i < panels.size(); ++i) {
    Json item;
    item["kernel"] = order[i]->kernel();
    item["array"] = order[i]->array();
    item["states"] = order[i]->states();
    item["stuck_high"] = panels[i].stuck_high.size();
    item["stuck_low"] = panels[i].stuck_low.size();
    items.push_back(std::move(item));
  }
  Json j;
  j["deployment"] = dep.id();
  j["values"] = ma.targets ? "targets" : "readback";
  j["g_min_uS"] = json_number(g_min_uS);
  j["g_max_uS"] = json_number(g_max_uS);
  j["png"] = ma.png.empty() ? Json(nullptr) : Json(ma.png);
  j["csv"] = ma.csv.empty() ? Json(nullptr) : Json(ma.csv);
  j["panels"] = std::move(items);
  std::cout << dump(j) << "\n";
}

void print_map_text(const v1::Deployment& dep, const std::vector<const v1::Placement*>& order,
                    const std::vector<KernelPanel>& panels, const MapArgs& ma, double g_min_uS,
                    double g_max_uS) {
  size_t stuck = 0;
  for (const auto& k : panels) stuck += k.stuck_high.size() + k.stuck_low.size();
  std::string arrays;
  for (const auto* p : order) arrays += fmt::format("{}{}", arrays.empty() ? "" : ", ", p->array());
  std::cout << fmt::format(
      "deployment {} ({}): {} {}{}, {}, viridis {:g}..{:g} uS, {} stuck device{} outlined\n",
      dep.id(), dep.state(), order.size() == 1 ? "array" : "arrays", arrays,
      order.size() == 1 ? "" : " left to right", ma.targets ? "targets" : "read-back", g_min_uS,
      g_max_uS, stuck, stuck == 1 ? "" : "s");
  if (!ma.png.empty()) std::cout << "wrote " << ma.png << "\n";
  if (!ma.csv.empty()) std::cout << "wrote " << ma.csv << "\n";
}

}  // namespace

int DeployCommands::Impl::run_map(const Session& session) const {
  if (ma.png.empty() && ma.csv.empty()) {
    std::cerr << "xbarctl: map: give --png F and/or --csv F\n";
    return kUsage;
  }
  v1::Deployment dep;
  v1::FaultMap faults;
  if (auto rc = fetch_deployment_and_faults(session, ma.id, &dep, &faults)) return *rc;
  if (dep.placements().empty()) {
    std::cerr << "xbarctl: deployment " << dep.id() << " has no placements (state " << dep.state()
              << ")\n";
    return kFailed;
  }
  const std::vector<const v1::Placement*> order = placements_by_array(dep);
  auto panels = map_panels(dep, order, faults, ma.targets);
  if (!panels) {
    std::cerr << "xbarctl: " << panels.error() << "\n";
    return kFailed;
  }
  const auto [g_min, g_max] = deployment_window_uS(dep);
  if (!ma.png.empty()) {
    if (auto w = write_map_png(dep, *panels, ma, g_min, g_max); !w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  if (!ma.csv.empty()) {
    if (auto w = write_map_csv(dep, order, *panels, ma); !w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  if (session.json()) {
    print_map_json(dep, order, *panels, ma, g_min, g_max);
  } else {
    print_map_text(dep, order, *panels, ma, g_min, g_max);
  }
  return kOk;
}

}  // namespace xbar::client
