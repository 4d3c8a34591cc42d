#include "board_cmds.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <vector>

#include "cli.h"
#include "heatmap.h"
#include "json_out.h"
#include "operation_cmds.h"
#include "progress.h"
#include "xbar/v1/arrays.grpc.pb.h"
#include "xbar/v1/board.grpc.pb.h"

namespace xbar::client {

namespace {

struct ReadArgs {
  uint32_t array = 0;
  int gain = -1;
  uint32_t avg = 1;
  std::string csv, png;
  double png_max_uS = 0;
};

struct ProgramArgs {
  uint32_t array = 0;
  std::string target_csv;
  std::string random;  // "LO:HI"
  uint64_t seed = 1;
  double tol_uS = 4;
  uint32_t max_rounds = 0;  // 0: the daemon's default
  bool skip_known_faults = false;
  std::string csv_out, png_out;
  bool detach = false;
};

struct ScanArgs {
  uint32_t array = 0;
  bool quick = false;
  bool destructive = false;
  bool yes = false;
  std::string png;
  bool detach = false;
};

// Share of a program-verify round's devices that are done (converged or given up on).
double round_fraction(const v1::ProgramRound& r) {
  const double total = r.converged() + r.pending() + r.abandoned();
  return total > 0 ? (r.converged() + r.abandoned()) / total : 0;
}

std::string round_detail(const v1::ProgramRound& r) {
  return fmt::format("round {}/{}: converged {} pending {} abandoned {}", r.round(), r.max_rounds(),
                     r.converged(), r.pending(), r.abandoned());
}

void write_info_json(const v1::BoardInfo& info) {
  auto range = [](const v1::VoltageRange& v) {
    Json r;
    r["lo_V"] = json_number(v.lo_v());
    r["hi_V"] = json_number(v.hi_v());
    return r;
  };
  Json j;
  j["serial"] = info.serial();
  j["firmware_version"] = info.firmware_version();
  j["protocol_version"] = info.protocol_version();
  j["backend"] = info.backend();
  j["link"] = info.link();
  j["simulated"] = info.simulated();
  j["arrays"] = info.arrays();
  j["rows"] = info.rows();
  j["cols"] = info.cols();
  j["adc_bits"] = info.adc_bits();
  j["adc_v_lo_V"] = json_number(info.adc_v_lo_v());
  j["adc_v_hi_V"] = json_number(info.adc_v_hi_v());
  j["tia_v_ref_V"] = json_number(info.tia_v_ref_v());
  j["tia_gains_ohm"] = json_numbers(info.tia_gains_ohm());
  j["full_scale_uS"] = json_numbers(info.full_scale_us());
  j["v_read_V"] = json_number(info.v_read_v());
  j["dac_bits"] = info.dac_bits();
  j["dac_v_min_V"] = json_number(info.dac_v_min_v());
  j["dac_v_max_V"] = json_number(info.dac_v_max_v());
  j["width_step_ns"] = info.width_step_ns();
  j["width_max_ns"] = info.width_max_ns();
  j["set_V"] = range(info.set_v());
  j["set_gate_V"] = range(info.set_gate());
  j["reset_V"] = range(info.reset_v());
  j["reset_gate_V"] = range(info.reset_gate());
  j["max_read_avg"] = info.max_read_avg();
  std::cout << dump(j) << "\n";
}

int cmd_info(const Session& session) {
  auto stub = v1::BoardService::NewStub(session.channel());
  v1::BoardInfo info;
  auto ctx = session.context();
  const grpc::Status s = stub->GetBoardInfo(ctx.get(), {}, &info);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    write_info_json(info);
    return kOk;
  }
  std::cout << fmt::format("board      {}{}\n", info.serial(),
                           info.simulated() ? " (simulated twin)" : "");
  std::cout << fmt::format("firmware   {} (protocol v{})\n", info.firmware_version(),
                           info.protocol_version());
  std::cout << fmt::format("backend    {} [{}]\n", info.backend(), info.link());
  std::cout << fmt::format("arrays     {} of {}x{} (rows x cols)\n", info.arrays(), info.rows(),
                           info.cols());
  std::cout << fmt::format("read       {} V on selected rows, up to {} reads averaged\n",
                           info.v_read_v(), info.max_read_avg());
  std::cout << fmt::format("ADC        {}-bit, {:.2f}..{:.2f} V window, TIA reference {:.2f} V\n",
                           info.adc_bits(), info.adc_v_lo_v(), info.adc_v_hi_v(),
                           info.tia_v_ref_v());
  std::cout << "TIA gains ";
  for (int i = 0; i < info.tia_gains_ohm_size(); ++i) {
    std::cout << fmt::format(" [{}] {:g} ohm (0..{:.1f} uS)", i, info.tia_gains_ohm(i),
                             i < info.full_scale_us_size() ? info.full_scale_us(i) : 0.0);
  }
  std::cout << "\n";
  std::cout << fmt::format("DAC        {}-bit over {:+g}..{:+g} V\n", info.dac_bits(),
                           info.dac_v_min_v(), info.dac_v_max_v());
  std::cout << fmt::format(
      "pulses     {} ns steps up to {} ns; SET {:.2f}..{:.2f} V gate {:.2f}..{:.2f} V; "
      "RESET {:.2f}..{:.2f} V gate {:.2f}..{:.2f} V\n",
      info.width_step_ns(), info.width_max_ns(), info.set_v().lo_v(), info.set_v().hi_v(),
      info.set_gate().lo_v(), info.set_gate().hi_v(), info.reset_v().lo_v(), info.reset_v().hi_v(),
      info.reset_gate().lo_v(), info.reset_gate().hi_v());
  return kOk;
}

int cmd_status(const Session& session) {
  auto stub = v1::BoardService::NewStub(session.channel());
  v1::BoardStatus st;
  auto ctx = session.context();
  const grpc::Status s = stub->GetBoardStatus(ctx.get(), {}, &st);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    Json j;
    j["uptime_ns"] = st.uptime_ns();
    j["ops_executed"] = st.ops_executed();
    j["pulses_applied"] = st.pulses_applied();
    j["replays_served"] = st.replays_served();
    j["last_error"] = st.last_error();
    std::cout << dump(j) << "\n";
  } else {
    std::cout << fmt::format("uptime {:.6f} s, {} ops, {} pulses, {} replays, last error {}\n",
                             st.uptime_ns() * 1e-9, st.ops_executed(), st.pulses_applied(),
                             st.replays_served(), st.last_error());
  }
  return kOk;
}

// An array's conductances as ReadConductances streams them (chunks of rows).
struct ArrayRead {
  Eigen::MatrixXd g_uS;  // empty when the daemon sent no data
  uint32_t saturated = 0, gain = 0;
};

std::expected<ArrayRead, grpc::Status> read_conductances(const Session& session,
                                                         const ReadArgs& a) {
  auto stub = v1::BoardService::NewStub(session.channel());
  v1::ReadConductancesRequest req;
  req.set_array(a.array);
  if (a.gain >= 0) req.set_gain_index(static_cast<uint32_t>(a.gain));
  req.set_n_avg(a.avg);
  auto ctx = session.context();
  auto reader = stub->ReadConductances(ctx.get(), req);
  v1::ConductanceChunk chunk;
  ArrayRead out;
  Eigen::MatrixXd& g_uS = out.g_uS;
  while (reader->Read(&chunk)) {
    if (g_uS.size() == 0) g_uS.setZero(64, chunk.cols());
    if (chunk.first_row() + chunk.rows() > static_cast<uint32_t>(g_uS.rows())) {
      g_uS.conservativeResize(chunk.first_row() + chunk.rows(), chunk.cols());
    }
    for (uint32_t r = 0; r < chunk.rows(); ++r) {
      for (uint32_t c = 0; c < chunk.cols(); ++c) {
        g_uS(chunk.first_row() + r, c) = chunk.g_us(static_cast<int>(r * chunk.cols() + c));
      }
    }
    out.saturated += chunk.saturated();
    out.gain = chunk.gain_index();
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return std::unexpected(s);
  return out;
}

struct ReadStats {
  double min_uS = 0, median_uS = 0, mean_uS = 0, max_uS = 0;
};

ReadStats read_stats(const Eigen::MatrixXd& g_uS) {
  std::vector<double> v(g_uS.data(), g_uS.data() + g_uS.size());
  std::sort(v.begin(), v.end());
  return {.min_uS = v.front(),
          .median_uS = v[v.size() / 2],
          .mean_uS = g_uS.mean(),
          .max_uS = v.back()};
}

std::expected<void, std::string> write_read_csv(const ReadArgs& a, const Eigen::MatrixXd& g_uS) {
  std::ofstream out(a.csv);
  if (!out) return std::unexpected("--csv " + a.csv + ": cannot write");
  out << "# array " << a.array << ", conductance in uS, rows top to bottom, cols left to right\n";
  for (int r = 0; r < g_uS.rows(); ++r) {
    for (int c = 0; c < g_uS.cols(); ++c)
      out << (c ? "," : "") << fmt::format("{:.3f}", g_uS(r, c));
    out << "\n";
  }
  return {};
}

std::expected<void, std::string> write_read_png(const ReadArgs& a, const ArrayRead& read) {
  return write_heatmap_png(
      a.png, read.g_uS,
      {.g_min_uS = 0,
       .g_max_uS = a.png_max_uS,
       .title = fmt::format("array {}: conductance as read, {} read{} averaged, gain index {}",
                            a.array, a.avg, a.avg == 1 ? "" : "s", read.gain)});
}

void print_read_json(const ReadArgs& a, const ArrayRead& read, const ReadStats& st) {
  const Eigen::MatrixXd& g_uS = read.g_uS;
  Json j;
  j["array"] = a.array;
  j["rows"] = g_uS.rows();
  j["cols"] = g_uS.cols();
  j["gain_index"] = read.gain;
  j["n_avg"] = a.avg;
  j["min_uS"] = json_fixed(st.min_uS, 3);
  j["median_uS"] = json_fixed(st.median_uS, 3);
  j["mean_uS"] = json_fixed(st.mean_uS, 3);
  j["max_uS"] = json_fixed(st.max_uS, 3);
  j["saturated"] = read.saturated;
  if (!a.csv.empty()) j["csv"] = a.csv;
  if (!a.png.empty()) j["png"] = a.png;
  Json rows = Json::array();
  for (int r = 0; r < g_uS.rows(); ++r) {
    Json row = Json::array();
    for (int c = 0; c < g_uS.cols(); ++c) row.push_back(json_fixed(g_uS(r, c), 3));
    rows.push_back(std::move(row));
  }
  j["g_uS"] = std::move(rows);
  std::cout << dump(j) << "\n";
}

void print_read_text(const ReadArgs& a, const ArrayRead& read, const ReadStats& st) {
  std::cout << fmt::format("array {}: {}x{} devices, gain index {}, {} read(s) averaged\n", a.array,
                           read.g_uS.rows(), read.g_uS.cols(), read.gain, a.avg);
  std::cout << fmt::format("conductance uS: min {:.2f}  median {:.2f}  mean {:.2f}  max {:.2f}\n",
                           st.min_uS, st.median_uS, st.mean_uS, st.max_uS);
  std::cout << fmt::format("saturated (at ADC full scale): {}\n", read.saturated);
  if (!a.csv.empty()) std::cout << "wrote " << a.csv << "\n";
  if (!a.png.empty()) std::cout << "wrote " << a.png << "\n";
}

int cmd_read(const Session& session, const ReadArgs& a) {
  auto read = read_conductances(session, a);
  if (!read) return session.fail(read.error());
  if (read->g_uS.size() == 0) {
    std::cerr << "xbarctl: the daemon sent no data\n";
    return kFailed;
  }
  const ReadStats stats = read_stats(read->g_uS);
  if (!a.csv.empty()) {
    if (auto w = write_read_csv(a, read->g_uS); !w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  if (!a.png.empty()) {
    if (auto w = write_read_png(a, *read); !w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  if (session.json()) {
    print_read_json(a, *read, stats);
  } else {
    print_read_text(a, *read, stats);
  }
  return kOk;
}

// Reads a rows x cols CSV of conductances in uS ('#' lines are comments).
std::expected<std::vector<float>, std::string> read_target_csv(const std::string& path, int* rows,
                                                               int* cols) {
  std::ifstream in(path);
  if (!in) return std::unexpected("--target " + path + ": cannot open");
  std::vector<float> v;
  std::string line;
  *rows = 0;
  *cols = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string cell;
    int n = 0;
    while (std::getline(ss, cell, ',')) {
      try {
        size_t used = 0;
        v.push_back(std::stof(cell, &used));
      } catch (const std::exception&) {
        return std::unexpected(fmt::format("--target {}: row {}, column {}: '{}' is not a number",
                                           path, *rows, n, cell));
      }
      ++n;
    }
    if (*cols == 0) *cols = n;
    if (n != *cols) {
      return std::unexpected(
          fmt::format("--target {}: row {} has {} values, row 0 has {}", path, *rows, n, *cols));
    }
    ++*rows;
  }
  return v;
}

// The ProgramArray request: the targets from --target's CSV (its shape) or uniform in
// --random LO:HI (64x64), and the program-verify options.
std::expected<v1::ProgramArrayRequest, std::string> program_request(const ProgramArgs& a) {
  v1::ProgramArrayRequest req;
  req.set_array(a.array);
  int rows = 64, cols = 64;
  if (!a.target_csv.empty()) {
    auto t = read_target_csv(a.target_csv, &rows, &cols);
    if (!t) return std::unexpected(t.error());
    for (float x : *t) req.add_target_us(x);
  } else {
    double lo = 0, hi = 0;
    if (std::sscanf(a.random.c_str(), "%lf:%lf", &lo, &hi) != 2 || !(lo < hi)) {
      return std::unexpected("give --target F.csv or --random LO:HI (uS), e.g. --random 7:200");
    }
    std::mt19937_64 rng(a.seed);
    std::uniform_real_distribution<double> u(lo, hi);
    for (int i = 0; i < rows * cols; ++i) req.add_target_us(static_cast<float>(u(rng)));
  }
  req.set_rows(static_cast<uint32_t>(rows));
  req.set_cols(static_cast<uint32_t>(cols));
  req.set_tol_us(a.tol_uS);
  req.set_max_rounds(a.max_rounds);
  req.set_skip_known_faults(a.skip_known_faults);
  return req;
}

// The read-back after program-verify (rows x cols) as --csv and --png ask for.
std::expected<void, std::string> write_program_outputs(const ProgramArgs& a,
                                                       const v1::ProgramReport& report, int rows,
                                                       int cols) {
  Eigen::MatrixXd final_uS = Eigen::MatrixXd::Zero(rows, cols);
  for (int i = 0; i < rows * cols && i < report.final_us_size(); ++i) {
    final_uS(i / cols, i % cols) = report.final_us(i);
  }
  if (!a.csv_out.empty()) {
    std::ofstream out(a.csv_out);
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) out << (c ? "," : "") << fmt::format("{:.3f}", final_uS(r, c));
      out << "\n";
    }
    if (!out.flush()) return std::unexpected("--csv " + a.csv_out + ": cannot write");
  }
  if (!a.png_out.empty()) {
    const std::string title = fmt::format(
        "array {}: read-back after program-verify (tolerance {:g} µS)", a.array, a.tol_uS);
    return write_heatmap_png(a.png_out, final_uS, {.title = title});
  }
  return {};
}

int cmd_program(const Session& session, const ProgramArgs& a) {
  if (a.detach && (!a.csv_out.empty() || !a.png_out.empty())) {
    std::cerr << "xbarctl: --csv and --png need the result: not with --detach (xbarctl read "
                 "--csv/--png once it is done)\n";
    return kUsage;
  }
  auto req = program_request(a);
  if (!req) {
    std::cerr << "xbarctl: " << req.error() << "\n";
    return kUsage;
  }
  auto stub = v1::ArrayService::NewStub(session.channel());
  auto ctx = session.context(kLongCallS);
  if (a.detach) request_detach(*ctx);
  auto reader = stub->ProgramArray(ctx.get(), *req);
  v1::ProgramArrayResponse msg;
  bool got = reader->Read(&msg);
  if (auto rc = after_first_message(session, *ctx, *reader, got, a.detach)) return *rc;
  const std::string op = operation_id(*ctx);
  v1::ProgramReport report;
  bool have_report = false;
  {
    Progress progress(session.progress());
    const std::string task = fmt::format("program array {}", a.array);
    for (; got; got = reader->Read(&msg)) {
      if (show_program_message(progress, task, msg, &report)) have_report = true;
    }
  }
  const grpc::Status s = reader->Finish();
  // A cancelled program-verify ends CANCELLED after its report (what was done): shown, exit 1.
  const bool cancelled_with_report =
      s.error_code() == grpc::StatusCode::CANCELLED && have_report && report.cancelled();
  if (!s.ok() && !cancelled_with_report) return session.fail(s);
  if (!have_report) {
    std::cerr << "xbarctl: the daemon sent no report\n";
    return kFailed;
  }
  const auto rows = static_cast<int>(req->rows()), cols = static_cast<int>(req->cols());
  if (auto w = write_program_outputs(a, report, rows, cols); !w) {
    std::cerr << "xbarctl: " << w.error() << "\n";
    return kFailed;
  }
  return print_program_result(session, report, {a.array, a.tol_uS, a.csv_out, a.png_out, op});
}

// How far a scan is, from its phase (remember, set, reset, confirm, restore rounds, done).
double scan_fraction(const v1::ScanPhaseUpdate& p) {
  const std::string& ph = p.phase();
  if (ph == "remember") return 0.1;
  if (ph == "set") return 0.25;
  if (ph == "reset") return 0.4;
  if (ph == "confirm") return 0.5;
  if (ph == "restore") return 0.5 + 0.5 * round_fraction(p.restore());
  if (ph == "done") return 1;
  return 0;
}

int cmd_scan(const Session& session, const ScanArgs& a) {
  if (a.destructive && !a.yes) {
    std::cerr << "xbarctl: --destructive leaves array " << a.array
              << " hard-RESET and loses what it holds; add --yes to confirm\n";
    return kUsage;
  }
  if (a.detach && !a.png.empty()) {
    std::cerr << "xbarctl: --png needs the result: not with --detach\n";
    return kUsage;
  }
  auto stub = v1::ArrayService::NewStub(session.channel());
  v1::ScanFaultsRequest req;
  req.set_array(a.array);
  req.set_quick(a.quick);
  req.set_destructive(a.destructive);
  auto ctx = session.context(kLongCallS);
  if (a.detach) request_detach(*ctx);
  auto reader = stub->ScanFaults(ctx.get(), req);
  v1::ScanFaultsResponse msg;
  bool got = reader->Read(&msg);
  if (auto rc = after_first_message(session, *ctx, *reader, got, a.detach)) return *rc;
  const std::string op = operation_id(*ctx);
  v1::ScanReport rep;
  bool have = false;
  {
    Progress progress(session.progress());
    const std::string task = fmt::format("scan array {}", a.array);
    for (; got; got = reader->Read(&msg)) {
      if (show_scan_message(progress, task, msg, &rep)) have = true;
    }
  }
  const grpc::Status s = reader->Finish();
  // A cancelled scan ends CANCELLED after its report (what was done): shown, exit 1.
  const bool cancelled_with_report =
      s.error_code() == grpc::StatusCode::CANCELLED && have && rep.cancelled();
  if (!s.ok() && !cancelled_with_report) return session.fail(s);
  if (!have) {
    std::cerr << "xbarctl: the daemon sent no report\n";
    return kFailed;
  }
  const auto& map_values = a.quick ? rep.read_us() : rep.after_reset_us();
  const bool draw = !a.png.empty() && map_values.size() == 64 * 64;
  if (!a.png.empty() && !draw)
    std::cerr << "xbarctl: --png: the report carries no 64x64 read to draw (cancelled?)\n";
  if (draw) {
    Eigen::MatrixXd m(64, 64);
    for (int i = 0; i < 64 * 64; ++i) m(i / 64, i % 64) = map_values[i];
    const std::string title =
        a.quick ? fmt::format("array {}: read of the quick fault check", a.array)
                : fmt::format(
                      "array {}: read after the hard RESET of the fault scan ({} stuck-high, "
                      "{} stuck-low)",
                      a.array, rep.stuck_high(), rep.stuck_low());
    if (auto w = write_heatmap_png(a.png, m, {.title = title}); !w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  return print_scan_result(session, rep, draw ? a.png : std::string(), op);
}

int cmd_faults(const Session& session, int array) {
  auto stub = v1::ArrayService::NewStub(session.channel());
  v1::GetFaultMapRequest req;
  if (array >= 0) req.set_array(static_cast<uint32_t>(array));
  v1::FaultMap map;
  auto ctx = session.context();
  const grpc::Status s = stub->GetFaultMap(ctx.get(), req, &map);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    Json faults = Json::array();
    for (const auto& f : map.faults()) {
      Json one;
      one["array"] = f.array();
      one["row"] = f.row();
      one["col"] = f.col();
      one["kind"] = f.kind();
      one["method"] = f.method();
      one["found_at_ms"] = f.found_at_ms();
      if (f.has_g_us()) one["g_uS"] = json_fixed(f.g_us(), 3);
      faults.push_back(std::move(one));
    }
    Json j;
    j["serial"] = map.serial();
    j["faults"] = std::move(faults);
    std::cout << dump(j) << "\n";
    return kOk;
  }
  std::cout << fmt::format("chip {}: {} recorded faults\n", map.serial(), map.faults_size());
  for (const auto& f : map.faults()) {
    std::cout << fmt::format("  array {} row {:>2} col {:>2}  {:<10} by {:<14}{}\n", f.array(),
                             f.row(), f.col(), f.kind(), f.method(),
                             f.has_g_us() ? fmt::format(" at {:.1f} uS", f.g_us()) : "");
  }
  return kOk;
}

}  // namespace

bool show_program_message(Progress& progress, std::string_view task,
                          const v1::ProgramArrayResponse& msg, v1::ProgramReport* report) {
  if (msg.has_round()) {
    progress.bar(task, round_fraction(msg.round()), round_detail(msg.round()));
  } else if (msg.has_report()) {
    *report = msg.report();
    return true;
  }
  return false;
}

bool show_scan_message(Progress& progress, std::string_view task, const v1::ScanFaultsResponse& msg,
                       v1::ScanReport* report) {
  if (msg.has_phase()) {
    const auto& p = msg.phase();
    std::string detail = fmt::format("{}: stuck-high {} stuck-low {}, {} transactions", p.phase(),
                                     p.stuck_high(), p.stuck_low(), p.transactions());
    if (p.has_restore()) detail += ", restore " + round_detail(p.restore());
    progress.bar(task, scan_fraction(p), detail);
  } else if (msg.has_report()) {
    *report = msg.report();
    return true;
  }
  return false;
}

int print_program_result(const Session& session, const v1::ProgramReport& report,
                         const ProgramResultInfo& info) {
  if (session.json()) {
    Json j;
    j["operation"] = operation_value(info.operation);
    j["array"] = info.array ? Json(*info.array) : Json(nullptr);
    j["within_tol_pct"] = json_fixed(report.within_tol_pct(), 3);
    j["tol_uS"] = info.tol_uS ? json_number(*info.tol_uS) : Json(nullptr);
    j["error_sigma_uS"] = json_fixed(report.error_sigma_us(), 3);
    j["rounds"] = report.rounds();
    j["transactions"] = report.transactions();
    j["pulses_per_device_mean"] = json_fixed(report.pulses_per_device_mean(), 3);
    j["pulses_per_device_p99"] = report.pulses_per_device_p99();
    j["abandoned"] = report.abandoned_size();
    j["skipped"] = report.skipped();
    j["cancelled"] = report.cancelled();
    j["pulse_time_ms"] = json_fixed(report.pulse_time_ms(), 3);
    Json cells = Json::array();
    for (const auto& c : report.abandoned()) cells.push_back({{"row", c.row()}, {"col", c.col()}});
    j["abandoned_cells"] = std::move(cells);
    if (!info.csv.empty()) j["csv"] = info.csv;
    if (!info.png.empty()) j["png"] = info.png;
    std::cout << dump(j) << "\n";
  } else {
    std::cout << fmt::format("{}: {:.2f} % within {} (sigma of final error {:.2f} uS)\n",
                             info.array ? fmt::format("array {}", *info.array) : "program-verify",
                             report.within_tol_pct(),
                             info.tol_uS ? fmt::format("±{} uS", *info.tol_uS) : "tolerance",
                             report.error_sigma_us());
    std::cout << fmt::format("{} rounds, {} board transactions, {:.1f} ms of pulses\n",
                             report.rounds(), report.transactions(), report.pulse_time_ms());
    std::cout << fmt::format("pulses per device: mean {:.2f}, p99 {}\n",
                             report.pulses_per_device_mean(), report.pulses_per_device_p99());
    std::cout << fmt::format("abandoned {} (recorded in the fault map), skipped {}{}\n",
                             report.abandoned_size(), report.skipped(),
                             report.cancelled() ? ", CANCELLED" : "");
    if (!info.csv.empty()) std::cout << "wrote " << info.csv << "\n";
    if (!info.png.empty()) std::cout << "wrote " << info.png << "\n";
  }
  return report.cancelled() ? kFailed : kOk;
}

int print_scan_result(const Session& session, const v1::ScanReport& rep, const std::string& png,
                      const std::string& operation) {
  if (session.json()) {
    Json j;
    j["operation"] = operation_value(operation);
    j["array"] = rep.array();
    j["quick"] = rep.quick();
    j["stuck_high"] = rep.stuck_high();
    j["stuck_low"] = rep.stuck_low();
    j["destructive"] = rep.destructive();
    j["disturbed"] = rep.disturbed();
    j["cancelled"] = rep.cancelled();
    j["restore_within_tol_pct"] = json_fixed(rep.restore_within_tol_pct(), 3);
    j["restore_rms_error_uS"] = json_fixed(rep.restore_rms_error_us(), 3);
    j["transactions"] = rep.transactions();
    j["board_time_ms"] = json_fixed(rep.board_time_ms(), 3);
    j["rejected_candidates"] = rep.rejected_candidates();
    if (!png.empty()) j["png"] = png;
    Json faults = Json::array();
    for (const auto& f : rep.faults()) {
      Json one;
      one["row"] = f.row();
      one["col"] = f.col();
      one["kind"] = f.kind();
      one["g_uS"] = json_fixed(f.g_us(), 3);
      faults.push_back(std::move(one));
    }
    j["faults"] = std::move(faults);
    std::cout << dump(j) << "\n";
  } else {
    std::cout << fmt::format("array {}: {} stuck-high, {} stuck-low{}{}\n", rep.array(),
                             rep.stuck_high(), rep.stuck_low(),
                             rep.quick() ? " suspected (read-only check)" : "",
                             rep.cancelled() ? ", CANCELLED" : "");
    for (const auto& f : rep.faults()) {
      std::cout << fmt::format("  row {:>2} col {:>2}  {:<10} at {:.1f} uS\n", f.row(), f.col(),
                               f.kind(), f.g_us());
    }
    if (!rep.quick()) {
      std::cout << fmt::format("{} transactions, {:.1f} ms of board time; ", rep.transactions(),
                               rep.board_time_ms());
      if (rep.destructive()) {
        std::cout << "destructive: the array was left hard-RESET\n";
      } else {
        std::cout << fmt::format("restored: {:.2f} % within tolerance, rms error {:.2f} uS\n",
                                 rep.restore_within_tol_pct(), rep.restore_rms_error_us());
      }
    }
    if (!png.empty()) std::cout << "wrote " << png << "\n";
  }
  return rep.cancelled() ? kFailed : kOk;
}

struct BoardCommands::Impl {
  CLI::App *info = nullptr, *status = nullptr, *read = nullptr, *program = nullptr, *scan = nullptr,
           *faults = nullptr;
  ReadArgs ra;
  ProgramArgs pa;
  ScanArgs sa;
  int faults_array = -1;
};

BoardCommands::BoardCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.info = app.add_subcommand("info", "board serial, geometry, ADC/DAC facts and backend");
  m.info->footer(
      footer_with("Examples:\n  xbarctl info\n  xbarctl --json info | jq .serial\n"
                  "  xbarctl --server unix:/run/xbard/xbard.sock info"));

  m.status = app.add_subcommand("status", "board uptime and counters (operations, pulses)");
  m.status->footer(
      footer_with("Examples:\n  xbarctl status\n  xbarctl status --json --server lab-pc:50051"));

  m.read = app.add_subcommand("read", "read one array's conductances (uS); CSV and PNG heat map");
  m.read->add_option("--array,-a", m.ra.array, "array index (0..2)")->required();
  m.read->add_option("--gain", m.ra.gain, "TIA gain index (default 2: 30 kOhm)");
  m.read->add_option("--avg", m.ra.avg, "reads averaged per device (1..64)")->capture_default_str();
  m.read->add_option("--csv", m.ra.csv, "write the map as CSV (rows x cols, uS)");
  m.read->add_option("--png", m.ra.png,
                     "write a heat map PNG (viridis, 0 uS dark .. --png-max yellow)");
  m.read->add_option("--png-max", m.ra.png_max_uS,
                     "heat map colour scale top in uS (default: the map's max)");
  m.read->footer(
      footer_with("--json prints the statistics and the whole map (g_uS, rows of columns, uS).\n"
                  "Examples:\n  xbarctl read --array 1 --avg 8 --csv a1.csv --png a1.png\n"
                  "  xbarctl read -a 0 --png a0.png --png-max 250\n"
                  "  xbarctl --json read --array 2 --gain 3 --avg 16 > a2.json"));

  m.program = app.add_subcommand("program", "program-verify an array to target conductances");
  m.program->add_option("--array,-a", m.pa.array, "array index (0..2)")->required();
  m.program->add_option("--target", m.pa.target_csv, "CSV of rows x cols targets in uS");
  m.program->add_option("--random", m.pa.random,
                        "random targets uniform in LO:HI uS instead, e.g. 7:200");
  m.program->add_option("--seed", m.pa.seed, "seed for --random")->capture_default_str();
  m.program->add_option("--tol", m.pa.tol_uS, "tolerance in uS")->capture_default_str();
  m.program
      ->add_option("--max-rounds", m.pa.max_rounds,
                   "rounds of pulse + verify (0 = the daemon's default)")
      ->capture_default_str();
  m.program->add_flag("--skip-known-faults", m.pa.skip_known_faults,
                      "leave recorded stuck devices alone");
  m.program->add_option("--csv", m.pa.csv_out, "write the final read-back as CSV");
  m.program->add_option("--png", m.pa.png_out, "write the final read-back as a heat map PNG");
  m.program->add_flag("--detach", m.pa.detach,
                      "start it and return: print the operation id (xbarctl watch ID follows it)");
  m.program->footer(
      footer_with("Progress (a bar per round) goes to stderr, after the operation id; exit 1 when\n"
                  "the run was cancelled. --detach: xbard goes on without the call.\n"
                  "Examples:\n  xbarctl program --array 0 --target weights.csv --tol 4\n"
                  "  xbarctl program --array 1 --random 7:200 --png a1.png\n"
                  "  xbarctl --json --quiet program -a 2 --random 20:150 --csv a2.csv\n"
                  "  xbarctl program -a 0 --random 7:200 --detach"));

  m.scan = app.add_subcommand("scan", "find stuck devices (active scan, restores the array)");
  m.scan->add_option("--array,-a", m.sa.array, "array index (0..2)")->required();
  m.scan->add_flag("--quick", m.sa.quick, "read-only check: one averaged read, no pulses");
  m.scan->add_flag("--destructive", m.sa.destructive, "skip the restore (array content is lost)");
  m.scan->add_flag("--yes", m.sa.yes, "confirm --destructive");
  m.scan->add_option("--png", m.sa.png,
                     "heat map of the read after the hard RESET (--quick: of the read)");
  m.scan->add_flag("--detach", m.sa.detach,
                   "start it and return: print the operation id (xbarctl watch ID follows it)");
  m.scan->footer(footer_with(
      "Findings are recorded in the chip's fault map (xbarctl faults); --quick only suspects.\n"
      "Examples:\n  xbarctl scan --array 0 --png scan0.png\n  xbarctl scan --array 2 --quick\n"
      "  xbarctl scan -a 1 --destructive --yes\n  xbarctl scan -a 0 --detach"));

  m.faults = app.add_subcommand("faults", "the chip's recorded fault map");
  m.faults->add_option("--array,-a", m.faults_array, "only this array");
  m.faults->footer(
      footer_with("To draw the faults over a deployment's arrays: xbarctl map.\n"
                  "Examples:\n  xbarctl faults\n  xbarctl --json faults --array 2"));
}

BoardCommands::~BoardCommands() = default;

std::optional<int> BoardCommands::run(const Session& session) const {
  const Impl& m = *impl_;
  if (*m.info) return cmd_info(session);
  if (*m.status) return cmd_status(session);
  if (*m.read) return cmd_read(session, m.ra);
  if (*m.program) return cmd_program(session, m.pa);
  if (*m.scan) return cmd_scan(session, m.sa);
  if (*m.faults) return cmd_faults(session, m.faults_array);
  return std::nullopt;
}

}  // namespace xbar::client
