// xbarctl: the lab technician's command line for xbard (docs/xbarctl.md).
#include <CLI/CLI.hpp>
#include <iostream>

#include "bench_cmds.h"
#include "board_cmds.h"
#include "cli.h"
#include "deploy_cmds.h"
#include "matrix_cmds.h"
#include "model_cmds.h"
#include "operation_cmds.h"

namespace {

constexpr const char* kFooter =
    "Exit codes (stable, for scripts):\n"
    "  0 ok\n"
    "  1 failed (also: a deployment that is not ready, a cancelled run)\n"
    "  2 usage, unreadable input, or an argument xbard rejected (INVALID_ARGUMENT)\n"
    "  3 xbard unreachable (or TLS handshake failed), or xbard cannot reach the board\n"
    "  4 not found (NOT_FOUND: e.g. no such deployment or operation)\n"
    "  5 timeout (DEADLINE_EXCEEDED: --timeout ran out)\n"
    "  6 refused in the present state (FAILED_PRECONDITION: e.g. arrays held by another\n"
    "    deployment without --replace, a deployment without a model)\n"
    "  7 not allowed (UNAUTHENTICATED: missing or wrong token; PERMISSION_DENIED)\n"
    "Environment: XBAR_SERVER (or XBAR_ADDR) for --server, XBAR_TOKEN for --token.\n"
    "Every command has --help with examples; docs/xbarctl.md has all of them.\n"
    "Examples:\n"
    "  xbarctl info\n"
    "  xbarctl --server unix:/run/xbard/xbard.sock status\n"
    "  xbarctl --server lab-pc:50051 --tls-ca ca.pem --token-file ~/.xbar-token bench\n"
    "  xbarctl read --array 0 --png a0.png\n"
    "  xbarctl deploy-model model.json --detach && xbarctl operations --running\n"
    "  XBAR_SERVER=lab-pc:50051 xbarctl --json status";

}  // namespace

int main(int argc, char** argv) {
  using namespace xbar::client;
  CLI::App app{"xbarctl: command line for the xbar daemon (xbard)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options are accepted after the command too
  GlobalOptions options;
  add_global_options(app, options);

  const BoardCommands board_cmds(app);    // info, status, read, program, scan, faults
  const DeployCommands kernel_cmds(app);  // deploy, deployments, deployment, undeploy, map
  const ModelCommands model_cmds(app);    // deploy-model, infer, stream
  const MatrixCommands matrix_cmds(app);  // matrix deploy, multiply, capacity
  const BenchCommands bench_cmds(app);    // bench
  const OperationCommands op_cmds(app);   // operations, operation, watch, cancel
  app.footer(kFooter);                    // after the subcommands: they would inherit it

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  options.timeout_given = app.get_option("--timeout")->count() > 0;
  auto session = Session::open(options);
  if (!session) {
    std::cerr << "xbarctl: " << session.error() << "\n";
    return kUsage;
  }
  if (auto rc = board_cmds.run(*session)) return *rc;
  if (auto rc = kernel_cmds.run(*session)) return *rc;
  if (auto rc = model_cmds.run(*session)) return *rc;
  if (auto rc = matrix_cmds.run(*session)) return *rc;
  if (auto rc = bench_cmds.run(*session)) return *rc;
  if (auto rc = op_cmds.run(*session)) return *rc;
  return kUsage;
}
