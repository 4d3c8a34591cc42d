// xbard: the daemon that owns one xbar board and serves the xbar.v1 gRPC API.
// main() only parses flags, builds the pieces and runs.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <mutex>
#include <thread>

#include "array_service.h"
#include "board_service.h"
#include "chip_record.h"
#include "config.h"
#include "kernel_service.h"
#include "model_service.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xbard: the xbar daemon (gRPC xbar.v1 in front of one crossbar board)"};
  std::string config_path;
  std::string listen, board_uri, log_level, state_dir;
  app.add_option("-c,--config", config_path, "YAML config (see configs/xbard.yaml)");
  app.add_option("--listen", listen, "gRPC address HOST:PORT (overrides the config)");
  app.add_option("--board", board_uri,
                 "board URI (overrides the config): sim:profile=typical,seed=7 | "
                 "tcp:HOST:PORT | unix:PATH | usb:serial=S");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option(
      "--state-dir", state_dir,
      "directory of the durable chip record (overrides the config; default ./xbar-state)");
  app.footer(
      "With no config: the embedded twin (profile typical) on 127.0.0.1:50051.\n"
      "Examples:\n  xbard\n  xbard --board sim:profile=imssa,seed=3\n"
      "  xbard --config /etc/xbar/xbard.yaml\n  xbard --board tcp:127.0.0.1:7700 --listen "
      "127.0.0.1:50052");
  CLI11_PARSE(app, argc, argv);

  xbar::server::DaemonConfig cfg;
  if (!config_path.empty()) {
    auto c = xbar::server::load_config_file(config_path);
    if (!c) {
      std::cerr << "xbard: " << c.error() << "\n";
      return 2;
    }
    cfg = *c;
  }
  if (!listen.empty()) cfg.listen = listen;
  if (!log_level.empty()) cfg.log_level = log_level;
  if (!state_dir.empty()) cfg.state_dir = state_dir;
  const std::string uri = board_uri.empty() ? cfg.board_uri() : board_uri;
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ xbard: %v");

  auto board = xbar::Board::open(uri);
  if (!board) {
    spdlog::error("cannot open board '{}': {}", uri, board.error().message);
    return 3;
  }
  const xbar::BoardInfo& info = (*board)->info();
  spdlog::info("board {} ({} {}x{} arrays, firmware {}) via {} [{}]", info.serial, info.arrays,
               info.rows, info.cols, info.firmware_version, info.backend, info.link);

  auto record = xbar::server::ChipRecord::open(cfg.state_dir);
  if (!record) {
    spdlog::error("chip record: {}", record.error().message);
    return 3;
  }
  if (auto t = (*record)->touch_chip(
          {info.serial, info.firmware_version, info.arrays, info.rows, info.cols});
      !t) {
    spdlog::error("chip record: {}", t.error().message);
    return 3;
  }
  spdlog::info("chip record {}", (*record)->path().string());

  std::mutex board_mu;
  xbar::server::BoardServiceImpl service(**board, board_mu);
  xbar::server::ArrayServiceImpl arrays(**board, **record, board_mu, cfg.program_verify);
  xbar::server::KernelServiceImpl kernels(**board, **record, board_mu, cfg.program_verify);
  xbar::server::ModelServiceImpl models(**board, **record, board_mu, kernels);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(cfg.listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  builder.RegisterService(&arrays);
  builder.RegisterService(&kernels);
  builder.RegisterService(&models);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    spdlog::error("cannot listen on {}", cfg.listen);
    return 4;
  }
  // Ready: the board answered INFO. (Verification of deployed state comes with the chip record.)
  server->GetHealthCheckService()->SetServingStatus("xbar.v1.BoardService", true);
  spdlog::info("serving xbar.v1 on {} (port {})", cfg.listen, bound_port);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::thread waiter([&] {
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    spdlog::info("shutting down");
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  server->Wait();
  g_stop = true;
  waiter.join();
  return 0;
}
