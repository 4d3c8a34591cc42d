// xbar-fwsim: the board's twin as a process, serving protocol v1 on a TCP or Unix socket.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "socket_server.h"
#include "xbar/twin/firmware.h"
#include "xbar/twin/profile.h"

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
  app.footer(
      "Examples:\n  xbar-fwsim --profile imssa --seed 7 --listen tcp:127.0.0.1:7700\n"
      "  xbar-fwsim --listen unix:/tmp/xbar.sock\n  xbard --board tcp:127.0.0.1:7700");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  auto profile = xbar::twin::load_profile(profile_name);
  if (!profile) {
    std::cerr << "xbar-fwsim: " << profile.error() << "\n";
    return 2;
  }
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
