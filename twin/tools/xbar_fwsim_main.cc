// xbar-fwsim: the board's twin as a process, serving protocol v1 on a TCP or Unix socket, or,
// with --a0 --pty LINK, the A0 board's serial command set on a pseudo-terminal (docs/a0.md).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <functional>
#include <iostream>

#include "pty_server.h"
#include "socket_server.h"
#include "xbar/twin/firmware.h"
#include "xbar/twin/profile.h"

namespace {

struct A0Options {
  bool enabled = false;
  std::string pty_link;
  double time_scale = 1.0;
  xbar::twin::A0LinkFaults faults;
};

void add_a0_options(CLI::App& app, A0Options& a0) {
  app.add_flag("--a0", a0.enabled, "speak the A0 board's serial command set (needs --pty)");
  app.add_option("--pty", a0.pty_link, "create a pseudo-terminal and a symlink LINK to it")
      ->option_text("LINK");
  app.add_option("--time-scale", a0.time_scale,
                 "A0: device seconds per wall-clock second between commands (tests run the "
                 "devices' relaxation faster than real time)")
      ->check(CLI::Range(1e-3, 1e6))
      ->capture_default_str();
  app.add_option("--a0-drop-byte-every", a0.faults.drop_in_byte_every,
                 "A0 link fault: drop every Nth byte from the host (0: none)");
  app.add_option("--a0-drop-ack-every", a0.faults.drop_ack_every,
                 "A0 link fault: drop every Nth acknowledgement (0: none)");
}

void log_a0_counters(const xbar::twin::A0Board& board) {
  std::string by_code;
  for (const auto& [code, n] : board.commands_by_code()) by_code += fmt::format(" {}:{}", code, n);
  spdlog::info("A0 board: {} commands executed (by code{}), {} malformed, {} reads refused",
               board.commands_executed(), by_code, board.bad_commands(), board.bad_reads());
}

int run_a0(const xbar::twin::ChipProfile& profile, uint64_t seed, uint64_t noise_seed,
           const A0Options& a0) {
  if (a0.pty_link.empty()) {
    std::cerr << "xbar-fwsim: --a0 needs --pty LINK (the A0 board speaks over a serial port)\n";
    return 2;
  }
  xbar::twin::A0Board board(
      profile, {.chip_seed = seed, .noise_seed = noise_seed, .time_scale = a0.time_scale});
  boost::asio::io_context io;
  std::unique_ptr<xbar::twin::PtyServer> server;
  try {
    server = std::make_unique<xbar::twin::PtyServer>(io, board, a0.pty_link, a0.faults);
  } catch (const std::exception& e) {
    std::cerr << "xbar-fwsim: " << e.what() << "\n";
    return 2;
  }
  spdlog::info("A0 board (profile {}, chip seed {}, noise seed {}) on {} -> {}", profile.name, seed,
               noise_seed, a0.pty_link, server->slave_path());
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    spdlog::info("signal {}: shutting down", sig);
    io.stop();
  });
  // SIGUSR1 logs what the board has executed so far (bench/a0/compare.sh reads it per phase).
  boost::asio::signal_set usr1(io, SIGUSR1);
  std::function<void()> wait_usr1 = [&] {
    usr1.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      log_a0_counters(board);
      wait_usr1();
    });
  };
  wait_usr1();
  io.run();
  log_a0_counters(board);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xbar-fwsim: the xbar board's twin (protocol v1 over a socket)"};
  std::string profile_name = "typical";
  uint64_t seed = 1;
  uint64_t noise_seed = 1;
  std::string listen = "tcp:127.0.0.1:7700";
  std::string address_file;
  std::string log_level = "info";
  app.add_option("--profile", profile_name,
                 "chip profile: ideal, imssa, typical, harsh, or a path to a .yaml file")
      ->capture_default_str();
  app.add_option("--seed", seed, "chip seed: fixes the devices and faults (serial XS<seed hex>)")
      ->capture_default_str();
  app.add_option("--noise-seed", noise_seed, "fixes every noise draw")->capture_default_str();
  app.add_option("--listen", listen, "tcp:HOST:PORT (port 0 = any free port) or unix:PATH")
      ->capture_default_str();
  app.add_option("--address-file", address_file,
                 "write the bound address (with the real port) to this file once listening");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  A0Options a0;
  add_a0_options(app, a0);
  app.footer(
      "Examples:\n  xbar-fwsim --profile imssa --seed 7 --listen tcp:127.0.0.1:7700\n"
      "  xbar-fwsim --listen unix:/tmp/xbar.sock\n  xbard --board tcp:127.0.0.1:7700\n"
      "  xbar-fwsim --a0 --pty /tmp/a0-tty --profile imssa\n  xbard --board a0:/tmp/a0-tty");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  auto profile = xbar::twin::load_profile(profile_name);
  if (!profile) {
    std::cerr << "xbar-fwsim: " << profile.error() << "\n";
    return 2;
  }
  if (a0.enabled) return run_a0(*profile, seed, noise_seed, a0);
  xbar::twin::Firmware fw(*profile, {.chip_seed = seed, .noise_seed = noise_seed});
  boost::asio::io_context io;
  std::unique_ptr<xbar::twin::SocketServer> server;
  try {
    server = std::make_unique<xbar::twin::SocketServer>(io, fw, listen);
  } catch (const std::exception& e) {
    std::cerr << "xbar-fwsim: " << e.what() << "\n";
    return 2;
  }
  spdlog::info("board {} (profile {}, noise seed {}) listening on {}", fw.info().serial,
               profile->name, noise_seed, server->bound_address());
  if (!address_file.empty()) {
    std::ofstream(address_file) << server->bound_address() << "\n";
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    spdlog::info("signal {}: shutting down", sig);
    io.stop();
  });
  io.run();
  return 0;
}
