// xbarctl: the lab technician's command line for xbard.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <vector>

#include "deploy_cmds.h"
#include "heatmap.h"
#include "model_cmds.h"
#include "xbar/v1/arrays.grpc.pb.h"
#include "xbar/v1/board.grpc.pb.h"

namespace {

// Exit codes (docs/cli.md): stable, for scripts.
enum Exit : int {
  kOk = 0,
  kFailed = 1,       // any other error
  kUsage = 2,        // bad flags or an argument the daemon rejected (INVALID_ARGUMENT)
  kUnavailable = 3,  // cannot reach xbard, or xbard cannot reach the board
  kNotFound = 4,
  kTimeout = 5,
  kConflict = 6,  // refused in the present state (e.g. the arrays hold another deployment)
};

int exit_for(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kUsage;
    case grpc::StatusCode::UNAVAILABLE:
      return kUnavailable;
    case grpc::StatusCode::NOT_FOUND:
      return kNotFound;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kTimeout;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return kConflict;
    default:
      return kFailed;
  }
}

int fail(const std::string& addr, const grpc::Status& s) {
  std::cerr << "xbarctl: " << s.error_message();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE)
    std::cerr << " (is xbard running at " << addr << "?)";
  std::cerr << "\n";
  return exit_for(s);
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

struct Global {
  std::string addr;
  bool json = false;
  double timeout_s = 30;
};

std::unique_ptr<grpc::ClientContext> context(const Global& g) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(g.timeout_s * 1000)));
  return ctx;
}

int cmd_info(const Global& g, xbar::v1::BoardService::Stub& stub) {
  xbar::v1::BoardInfo info;
  auto ctx = context(g);
  grpc::Status s = stub.GetBoardInfo(ctx.get(), {}, &info);
  if (!s.ok()) return fail(g.addr, s);
  if (g.json) {
    std::string gains, fs;
    for (int i = 0; i < info.tia_gains_ohm_size(); ++i) {
      gains += fmt::format("{}{}", i ? "," : "", info.tia_gains_ohm(i));
      fs += fmt::format("{}{:.4g}", i ? "," : "", info.full_scale_us(i));
    }
    std::cout << fmt::format(
        "{{\"serial\":\"{}\",\"firmware_version\":\"{}\",\"protocol_version\":{},"
        "\"backend\":\"{}\",\"link\":\"{}\",\"simulated\":{},\"arrays\":{},\"rows\":{},"
        "\"cols\":{},\"adc_bits\":{},\"adc_v_lo_V\":{},\"adc_v_hi_V\":{},\"tia_v_ref_V\":{},"
        "\"tia_gains_ohm\":[{}],\"full_scale_uS\":[{}],\"v_read_V\":{},\"dac_bits\":{},"
        "\"dac_v_min_V\":{},\"dac_v_max_V\":{},\"width_step_ns\":{},\"width_max_ns\":{}}}\n",
        json_escape(info.serial()), json_escape(info.firmware_version()), info.protocol_version(),
        info.backend(), json_escape(info.link()), info.simulated() ? "true" : "false",
        info.arrays(), info.rows(), info.cols(), info.adc_bits(), info.adc_v_lo_v(),
        info.adc_v_hi_v(), info.tia_v_ref_v(), gains, fs, info.v_read_v(), info.dac_bits(),
        info.dac_v_min_v(), info.dac_v_max_v(), info.width_step_ns(), info.width_max_ns());
    return kOk;
  }
  std::cout << fmt::format("board      {}{}\n", info.serial(),
                           info.simulated() ? " (simulated twin)" : "");
  std::cout << fmt::format("firmware   {} (protocol v{})\n", info.firmware_version(),
                           info.protocol_version());
  std::cout << fmt::format("backend    {} [{}]\n", info.backend(), info.link());
  std::cout << fmt::format("arrays     {} of {}x{} (rows x cols)\n", info.arrays(), info.rows(),
                           info.cols());
  std::cout << fmt::format("read       {} V on selected rows\n", info.v_read_v());
  std::cout << fmt::format("ADC        {}-bit, {:.2f}..{:.2f} V window, TIA reference {:.2f} V\n",
                           info.adc_bits(), info.adc_v_lo_v(), info.adc_v_hi_v(),
                           info.tia_v_ref_v());
  std::cout << "TIA gains ";
  for (int i = 0; i < info.tia_gains_ohm_size(); ++i) {
    std::cout << fmt::format(" [{}] {:g} ohm (0..{:.1f} uS)", i, info.tia_gains_ohm(i),
                             info.full_scale_us(i));
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

int cmd_status(const Global& g, xbar::v1::BoardService::Stub& stub) {
  xbar::v1::BoardStatus st;
  auto ctx = context(g);
  grpc::Status s = stub.GetBoardStatus(ctx.get(), {}, &st);
  if (!s.ok()) return fail(g.addr, s);
  if (g.json) {
    std::cout << fmt::format(
        "{{\"uptime_ns\":{},\"ops_executed\":{},\"pulses_applied\":{},"
        "\"replays_served\":{},\"last_error\":{}}}\n",
        st.uptime_ns(), st.ops_executed(), st.pulses_applied(), st.replays_served(),
        st.last_error());
  } else {
    std::cout << fmt::format("uptime {:.6f} s, {} ops, {} pulses, {} replays, last error {}\n",
                             st.uptime_ns() * 1e-9, st.ops_executed(), st.pulses_applied(),
                             st.replays_served(), st.last_error());
  }
  return kOk;
}

struct ReadArgs {
  uint32_t array = 0;
  int gain = -1;
  uint32_t avg = 1;
  std::string csv, png;
  double png_max_uS = 0;
};

int cmd_read(const Global& g, xbar::v1::BoardService::Stub& stub, const ReadArgs& a) {
  xbar::v1::ReadConductancesRequest req;
  req.set_array(a.array);
  if (a.gain >= 0) req.set_gain_index(static_cast<uint32_t>(a.gain));
  req.set_n_avg(a.avg);
  auto ctx = context(g);
  auto reader = stub.ReadConductances(ctx.get(), req);
  xbar::v1::ConductanceChunk chunk;
  Eigen::MatrixXd g_uS;
  uint32_t saturated = 0, gain = 0;
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
    saturated += chunk.saturated();
    gain = chunk.gain_index();
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return fail(g.addr, s);
  if (g_uS.size() == 0) {
    std::cerr << "xbarctl: the daemon sent no data\n";
    return kFailed;
  }
  std::vector<double> v(g_uS.data(), g_uS.data() + g_uS.size());
  std::sort(v.begin(), v.end());
  const double median = v[v.size() / 2], mean = g_uS.mean();
  if (!a.csv.empty()) {
    std::ofstream out(a.csv);
    if (!out) {
      std::cerr << "xbarctl: --csv " << a.csv << ": cannot write\n";
      return kFailed;
    }
    out << "# array " << a.array << ", conductance in uS, rows top to bottom, cols left to right\n";
    for (int r = 0; r < g_uS.rows(); ++r) {
      for (int c = 0; c < g_uS.cols(); ++c)
        out << (c ? "," : "") << fmt::format("{:.3f}", g_uS(r, c));
      out << "\n";
    }
  }
  if (!a.png.empty()) {
    auto w =
        xbar::client::write_heatmap_png(a.png, g_uS, {.g_min_uS = 0, .g_max_uS = a.png_max_uS});
    if (!w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  if (g.json) {
    std::cout << fmt::format(
        "{{\"array\":{},\"rows\":{},\"cols\":{},\"gain_index\":{},\"n_avg\":{},"
        "\"min_uS\":{:.3f},\"median_uS\":{:.3f},\"mean_uS\":{:.3f},\"max_uS\":{:.3f},"
        "\"saturated\":{},\"g_uS\":[",
        a.array, g_uS.rows(), g_uS.cols(), gain, a.avg, v.front(), median, mean, v.back(),
        saturated);
    for (int r = 0; r < g_uS.rows(); ++r) {
      std::cout << (r ? ",[" : "[");
      for (int c = 0; c < g_uS.cols(); ++c)
        std::cout << (c ? "," : "") << fmt::format("{:.3f}", g_uS(r, c));
      std::cout << "]";
    }
    std::cout << "]}\n";
  } else {
    std::cout << fmt::format("array {}: {}x{} devices, gain index {}, {} read(s) averaged\n",
                             a.array, g_uS.rows(), g_uS.cols(), gain, a.avg);
    std::cout << fmt::format("conductance uS: min {:.2f}  median {:.2f}  mean {:.2f}  max {:.2f}\n",
                             v.front(), median, mean, v.back());
    std::cout << fmt::format("saturated (at ADC full scale): {}\n", saturated);
    if (!a.csv.empty()) std::cout << "wrote " << a.csv << "\n";
    if (!a.png.empty()) std::cout << "wrote " << a.png << "\n";
  }
  return kOk;
}

struct ProgramArgs {
  uint32_t array = 0;
  std::string target_csv;
  std::string random;  // "LO:HI"
  uint64_t seed = 1;
  double tol_uS = 4;
  uint32_t max_rounds = 0;  // 0: the daemon's default
  bool skip_known_faults = false;
  std::string csv_out, png_out;
};

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

int cmd_program(const Global& g, const std::shared_ptr<grpc::Channel>& channel,
                const ProgramArgs& a) {
  xbar::v1::ProgramArrayRequest req;
  req.set_array(a.array);
  int rows = 64, cols = 64;
  if (!a.target_csv.empty()) {
    auto t = read_target_csv(a.target_csv, &rows, &cols);
    if (!t) {
      std::cerr << "xbarctl: " << t.error() << "\n";
      return kUsage;
    }
    for (float x : *t) req.add_target_us(x);
  } else {
    double lo = 0, hi = 0;
    if (std::sscanf(a.random.c_str(), "%lf:%lf", &lo, &hi) != 2 || !(lo < hi)) {
      std::cerr << "xbarctl: give --target F.csv or --random LO:HI (uS), e.g. --random 7:200\n";
      return kUsage;
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
  auto stub = xbar::v1::ArrayService::NewStub(channel);
  auto ctx = context(g);
  auto reader = stub->ProgramArray(ctx.get(), req);
  xbar::v1::ProgramArrayResponse msg;
  xbar::v1::ProgramReport report;
  bool have_report = false;
  const bool tty = isatty(STDERR_FILENO) && !g.json;
  while (reader->Read(&msg)) {
    if (msg.has_round()) {
      const auto& r = msg.round();
      const int total = rows * cols;
      const int width = 30;
      const int done =
          total ? static_cast<int>(width * (r.converged() + r.abandoned()) / total) : 0;
      const std::string bar = std::string(done, '#') + std::string(width - done, '.');
      const std::string line =
          fmt::format("round {:>3}/{} [{}] converged {:>4} pending {:>4} abandoned {:>3}",
                      r.round(), r.max_rounds(), bar, r.converged(), r.pending(), r.abandoned());
      if (tty) {
        std::cerr << "\r" << line << std::flush;
      } else if (!g.json) {
        std::cerr << line << "\n";
      }
    } else if (msg.has_report()) {
      report = msg.report();
      have_report = true;
    }
  }
  if (tty) std::cerr << "\n";
  grpc::Status s = reader->Finish();
  if (!s.ok()) return fail(g.addr, s);
  if (!have_report) {
    std::cerr << "xbarctl: the daemon sent no report\n";
    return kFailed;
  }
  Eigen::MatrixXd final_uS(rows, cols);
  for (int i = 0; i < rows * cols && i < report.final_us_size(); ++i) {
    final_uS(i / cols, i % cols) = report.final_us(i);
  }
  if (!a.csv_out.empty()) {
    std::ofstream out(a.csv_out);
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) out << (c ? "," : "") << fmt::format("{:.3f}", final_uS(r, c));
      out << "\n";
    }
  }
  if (!a.png_out.empty()) {
    if (auto w = xbar::client::write_heatmap_png(a.png_out, final_uS); !w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  if (g.json) {
    std::cout << fmt::format(
        "{{\"array\":{},\"within_tol_pct\":{:.3f},\"tol_uS\":{},\"error_sigma_uS\":{:.3f},"
        "\"rounds\":{},\"transactions\":{},\"pulses_per_device_mean\":{:.3f},"
        "\"pulses_per_device_p99\":{},\"abandoned\":{},\"skipped\":{},\"cancelled\":{},"
        "\"pulse_time_ms\":{:.3f}}}\n",
        a.array, report.within_tol_pct(), a.tol_uS, report.error_sigma_us(), report.rounds(),
        report.transactions(), report.pulses_per_device_mean(), report.pulses_per_device_p99(),
        report.abandoned_size(), report.skipped(), report.cancelled() ? "true" : "false",
        report.pulse_time_ms());
  } else {
    std::cout << fmt::format("array {}: {:.2f} % within ±{} uS (sigma of final error {:.2f} uS)\n",
                             a.array, report.within_tol_pct(), a.tol_uS, report.error_sigma_us());
    std::cout << fmt::format("{} rounds, {} board transactions, {:.1f} ms of pulses\n",
                             report.rounds(), report.transactions(), report.pulse_time_ms());
    std::cout << fmt::format("pulses per device: mean {:.2f}, p99 {}\n",
                             report.pulses_per_device_mean(), report.pulses_per_device_p99());
    std::cout << fmt::format("abandoned {} (recorded in the fault map), skipped {}{}\n",
                             report.abandoned_size(), report.skipped(),
                             report.cancelled() ? ", CANCELLED" : "");
  }
  return report.cancelled() ? kFailed : kOk;
}

struct ScanArgs {
  uint32_t array = 0;
  bool quick = false;
  bool destructive = false;
  bool yes = false;
  std::string png;
};

int cmd_scan(const Global& g, const std::shared_ptr<grpc::Channel>& channel, const ScanArgs& a) {
  if (a.destructive && !a.yes) {
    std::cerr << "xbarctl: --destructive leaves array " << a.array
              << " hard-RESET and loses what it holds; add --yes to confirm\n";
    return kUsage;
  }
  auto stub = xbar::v1::ArrayService::NewStub(channel);
  xbar::v1::ScanFaultsRequest req;
  req.set_array(a.array);
  req.set_quick(a.quick);
  req.set_destructive(a.destructive);
  auto ctx = context(g);
  auto reader = stub->ScanFaults(ctx.get(), req);
  xbar::v1::ScanFaultsResponse msg;
  xbar::v1::ScanReport rep;
  bool have = false;
  const bool tty = isatty(STDERR_FILENO) && !g.json;
  while (reader->Read(&msg)) {
    if (msg.has_phase() && !g.json) {
      const auto& p = msg.phase();
      std::string line = fmt::format("{:<8} stuck-high {:>3} stuck-low {:>3} transactions {:>3}",
                                     p.phase(), p.stuck_high(), p.stuck_low(), p.transactions());
      if (p.has_restore()) {
        line += fmt::format("  restore round {:>2}: converged {:>4} pending {:>4}",
                            p.restore().round(), p.restore().converged(), p.restore().pending());
      }
      std::cerr << (tty ? "\r" : "") << line << (tty ? "" : "\n") << std::flush;
    } else if (msg.has_report()) {
      rep = msg.report();
      have = true;
    }
  }
  if (tty) std::cerr << "\n";
  grpc::Status s = reader->Finish();
  if (!s.ok()) return fail(g.addr, s);
  if (!have) {
    std::cerr << "xbarctl: the daemon sent no report\n";
    return kFailed;
  }
  const auto& map_values = a.quick ? rep.read_us() : rep.after_reset_us();
  if (!a.png.empty() && map_values.size() == 64 * 64) {
    Eigen::MatrixXd m(64, 64);
    for (int i = 0; i < 64 * 64; ++i) m(i / 64, i % 64) = map_values[i];
    if (auto w = xbar::client::write_heatmap_png(a.png, m); !w) {
      std::cerr << "xbarctl: " << w.error() << "\n";
      return kFailed;
    }
  }
  if (g.json) {
    std::cout << fmt::format(
        "{{\"array\":{},\"quick\":{},\"stuck_high\":{},\"stuck_low\":{},"
        "\"destructive\":{},\"disturbed\":{},\"cancelled\":{},"
        "\"restore_within_tol_pct\":{:.3f},\"restore_rms_error_uS\":{:.3f},"
        "\"transactions\":{},\"board_time_ms\":{:.3f},\"faults\":[",
        rep.array(), rep.quick(), rep.stuck_high(), rep.stuck_low(), rep.destructive(),
        rep.disturbed(), rep.cancelled(), rep.restore_within_tol_pct(), rep.restore_rms_error_us(),
        rep.transactions(), rep.board_time_ms());
    for (int i = 0; i < rep.faults_size(); ++i) {
      const auto& f = rep.faults(i);
      std::cout << (i ? "," : "")
                << fmt::format("{{\"row\":{},\"col\":{},\"kind\":\"{}\",\"g_uS\":{:.3f}}}", f.row(),
                               f.col(), f.kind(), f.g_us());
    }
    std::cout << "]}\n";
  } else {
    std::cout << fmt::format("array {}: {} stuck-high, {} stuck-low{}\n", rep.array(),
                             rep.stuck_high(), rep.stuck_low(),
                             rep.quick() ? " suspected (read-only check)" : "");
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
    if (!a.png.empty()) std::cout << "wrote " << a.png << "\n";
  }
  return rep.cancelled() ? kFailed : kOk;
}

int cmd_faults(const Global& g, const std::shared_ptr<grpc::Channel>& channel, int array) {
  auto stub = xbar::v1::ArrayService::NewStub(channel);
  xbar::v1::GetFaultMapRequest req;
  if (array >= 0) req.set_array(static_cast<uint32_t>(array));
  xbar::v1::FaultMap map;
  auto ctx = context(g);
  grpc::Status s = stub->GetFaultMap(ctx.get(), req, &map);
  if (!s.ok()) return fail(g.addr, s);
  if (g.json) {
    std::cout << "{\"serial\":\"" << json_escape(map.serial()) << "\",\"faults\":[";
    for (int i = 0; i < map.faults_size(); ++i) {
      const auto& f = map.faults(i);
      std::cout << (i ? "," : "")
                << fmt::format(
                       "{{\"array\":{},\"row\":{},\"col\":{},\"kind\":\"{}\",\"method\":\"{}\","
                       "\"found_at_ms\":{}{}}}",
                       f.array(), f.row(), f.col(), f.kind(), f.method(), f.found_at_ms(),
                       f.has_g_us() ? fmt::format(",\"g_uS\":{:.3f}", f.g_us()) : "");
    }
    std::cout << "]}\n";
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

int main(int argc, char** argv) {
  CLI::App app{"xbarctl: command line for the xbar daemon (xbard)"};
  app.require_subcommand(1);
  Global g;
  const char* env = std::getenv("XBAR_ADDR");
  g.addr = env && *env ? env : "127.0.0.1:50051";
  app.add_option("--addr", g.addr,
                 "xbard address HOST:PORT (default $XBAR_ADDR or 127.0.0.1:50051)");
  app.add_flag("--json", g.json, "machine-readable JSON on stdout");
  app.add_option("--timeout", g.timeout_s, "seconds before a call is abandoned")
      ->capture_default_str();
  app.footer(
      "Exit codes: 0 ok, 1 failed, 2 usage or invalid argument, 3 daemon/board unavailable,\n"
      "4 not found, 5 timeout, 6 refused in the present state.\nExamples:\n  xbarctl info\n  "
      "xbarctl read --array 0 --png a0.png\n"
      "  XBAR_ADDR=lab-pc:50051 xbarctl --json status");

  auto* info = app.add_subcommand("info", "board serial, geometry, ADC/DAC facts and backend");
  info->footer("Example: xbarctl info --json");
  auto* status = app.add_subcommand("status", "board uptime and counters");
  ReadArgs ra;
  auto* read =
      app.add_subcommand("read", "read one array's conductances (uS); CSV and PNG heat map");
  read->add_option("--array,-a", ra.array, "array index (0..2)")->required();
  read->add_option("--gain", ra.gain, "TIA gain index (default 2: 30 kOhm)");
  read->add_option("--avg", ra.avg, "reads averaged per device (1..64)")->capture_default_str();
  read->add_option("--csv", ra.csv, "write the map as CSV (rows x cols, uS)");
  read->add_option("--png", ra.png, "write a heat map PNG");
  read->add_option("--png-max", ra.png_max_uS,
                   "heat map colour scale top in uS (default: map max)");
  read->footer("Example: xbarctl read --array 1 --avg 8 --csv a1.csv --png a1.png");

  ProgramArgs pa;
  auto* program = app.add_subcommand("program", "program-verify an array to target conductances");
  program->add_option("--array,-a", pa.array, "array index (0..2)")->required();
  program->add_option("--target", pa.target_csv, "CSV of rows x cols targets in uS");
  program->add_option("--random", pa.random,
                      "random targets uniform in LO:HI uS instead, e.g. 7:200");
  program->add_option("--seed", pa.seed, "seed for --random")->capture_default_str();
  program->add_option("--tol", pa.tol_uS, "tolerance in uS")->capture_default_str();
  program
      ->add_option("--max-rounds", pa.max_rounds,
                   "rounds of pulse + verify (0 = the daemon's default)")
      ->capture_default_str();
  program->add_flag("--skip-known-faults", pa.skip_known_faults,
                    "leave recorded stuck devices alone");
  program->add_option("--csv", pa.csv_out, "write the final read-back as CSV");
  program->add_option("--png", pa.png_out, "write the final read-back as a heat map PNG");
  program->footer(
      "Examples:\n  xbarctl program --array 0 --target weights.csv --tol 4\n"
      "  xbarctl program --array 1 --random 7:200 --png a1.png");
  ScanArgs sa;
  auto* scan = app.add_subcommand("scan", "find stuck devices (active scan, restores the array)");
  scan->add_option("--array,-a", sa.array, "array index (0..2)")->required();
  scan->add_flag("--quick", sa.quick, "read-only check: one averaged read, no pulses");
  scan->add_flag("--destructive", sa.destructive, "skip the restore (array content is lost)");
  scan->add_flag("--yes", sa.yes, "confirm --destructive");
  scan->add_option("--png", sa.png, "heat map of the read after the hard RESET (quick: the read)");
  scan->footer(
      "Examples:\n  xbarctl scan --array 0 --png scan0.png\n  xbarctl scan --array 2 --quick");
  int faults_array = -1;
  auto* faults = app.add_subcommand("faults", "the chip's recorded fault map");
  faults->add_option("--array,-a", faults_array, "only this array");
  const xbar::client::DeployCommands kernel_cmds(app);  // deploy, deployments, ..., map
  const xbar::client::ModelCommands model_cmds(app);    // deploy-model, infer

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  auto channel = grpc::CreateChannel(g.addr, grpc::InsecureChannelCredentials());
  auto stub = xbar::v1::BoardService::NewStub(channel);
  if (*info) return cmd_info(g, *stub);
  if (*status) return cmd_status(g, *stub);
  if (*read) return cmd_read(g, *stub, ra);
  if (*program) return cmd_program(g, channel, pa);
  if (*faults) return cmd_faults(g, channel, faults_array);
  if (*scan) return cmd_scan(g, channel, sa);
  if (auto rc = kernel_cmds.run({g.addr, g.json, g.timeout_s}, channel,
                                [&](const grpc::Status& s) { return fail(g.addr, s); }))
    return *rc;
  if (auto rc = model_cmds.run({g.addr, g.json, g.timeout_s}, channel,
                               [&](const grpc::Status& s) { return fail(g.addr, s); }))
    return *rc;
  return kUsage;
}
