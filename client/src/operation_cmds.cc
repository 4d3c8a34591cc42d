#include "operation_cmds.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <vector>

#include "board_cmds.h"
#include "deploy_cmds.h"
#include "json_out.h"
#include "progress.h"
#include "xbar/status_names.h"
#include "xbar/v1/operations.grpc.pb.h"

namespace xbar::client {

namespace {

constexpr const char* kOperationIdKey = "x-operation-id";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string local_time(int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// Run time: until it finished, or until now while it runs.
std::string duration(const v1::Operation& op) {
  const int64_t end = op.finished_at_ms() > 0 ? op.finished_at_ms() : now_ms();
  const double s = std::max<int64_t>(0, end - op.started_at_ms()) / 1000.0;
  if (s < 60) return fmt::format("{:.1f} s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return fmt::format("{}h{:02}m", static_cast<int>(s) / 3600, static_cast<int>(s) / 60 % 60);
}

// "/xbar.v1.KernelService/DeployKernel" -> "DeployKernel".
std::string short_method(const std::string& m) {
  const size_t slash = m.rfind('/');
  return slash == std::string::npos ? m : m.substr(slash + 1);
}

std::string code_text(const v1::Operation& op) {
  return op.finished_at_ms() > 0 ? std::string(xbar::status_code_name(op.code())) : "-";
}

std::string format_operation(const v1::Operation& op) {
  std::string o = fmt::format("operation {}: {}{}\n", op.id(), op.state(),
                              op.cancel_requested() ? " (cancel requested)" : "");
  o += fmt::format("  method      {}{}\n", op.method(), op.detached() ? " (detached)" : "");
  if (op.finished_at_ms() > 0) {
    o += fmt::format("  status      {} ({}){}\n", xbar::status_code_name(op.code()), op.code(),
                     op.message().empty() ? "" : ": " + op.message());
  }
  o += fmt::format("  started     {}\n", local_time(op.started_at_ms()));
  o += fmt::format("  {:<11} {}\n", op.finished_at_ms() > 0 ? "finished" : "running for",
                   op.finished_at_ms() > 0
                       ? fmt::format("{} ({})", local_time(op.finished_at_ms()), duration(op))
                       : duration(op));
  o += fmt::format("  events      {}\n", op.events());
  o += fmt::format("  request id  {}\n", op.request_id().empty() ? "-" : op.request_id());
  return o;
}

}  // namespace

std::string operation_id(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerInitialMetadata();
  const auto it = md.find(kOperationIdKey);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

void request_detach(grpc::ClientContext& ctx) { ctx.AddMetadata("x-xbar-detach", "1"); }

Json operation_value(const std::string& operation) {
  return operation.empty() ? Json(nullptr) : Json(operation);
}

Json with_operation(const Json& object, const std::string& operation) {
  if (!object.is_object()) return object;
  Json out;
  out["operation"] = operation_value(operation);
  for (const auto& [key, value] : object.items()) out[key] = value;
  return out;
}

void announce_operation(const Session& session, const std::string& operation) {
  if (!session.progress() || operation.empty()) return;
  std::cerr << "operation " << operation << " started (xbarctl watch " << operation
            << " follows it from elsewhere)" << std::endl;
}

int print_detached(const Session& session, const std::string& operation) {
  if (operation.empty()) {
    std::cerr << "xbarctl: xbard announced no operation id (too old for --detach?); the "
                 "operation was not detached\n";
    return kFailed;
  }
  if (session.json()) {
    Json j;
    j["operation"] = operation;
    std::cout << dump(j) << "\n";
  } else {
    std::cout << fmt::format("operation {} started; follow with: xbarctl watch {}\n", operation,
                             operation);
  }
  return kOk;
}

struct OperationCommands::Impl {
  CLI::App *list = nullptr, *show = nullptr, *watch = nullptr, *cancel = nullptr;
  bool running_only = false;
  std::string id;

  int run_list(const Session& session, v1::OperationService::Stub& stub) const;
  int run_show(const Session& session, v1::OperationService::Stub& stub) const;
  int run_watch(const Session& session, v1::OperationService::Stub& stub) const;
  int run_cancel(const Session& session, v1::OperationService::Stub& stub) const;
};

OperationCommands::OperationCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.list = app.add_subcommand("operations",
                              "the daemon's long operations (program, scan, deploy), newest first");
  m.list->add_flag("--running", m.running_only, "only the running ones");
  m.list->footer(footer_with(
      "xbard keeps the last 200 finished operations in memory (not across a restart).\n"
      "--json: the ListOperationsResponse (protobuf JSON mapping, .proto field names).\n"
      "Examples:\n  xbarctl operations\n  xbarctl operations --running\n"
      "  xbarctl --json operations | jq -r '.operations[] | select(.state == \"failed\") | .id'"));

  m.show = app.add_subcommand("operation", "one operation's summary");
  m.show->add_option("ID", m.id, "operation id (op-...)")->required();
  m.show->footer(
      footer_with("Exit 4 when there is no such operation. --json: the xbar.v1.Operation.\n"
                  "Examples:\n  xbarctl operation op-0123456789ab\n"
                  "  xbarctl --json operation op-0123456789ab | jq -r .state"));

  m.watch = app.add_subcommand(
      "watch", "re-attach to an operation: its progress so far, then live, then its result");
  m.watch->add_option("ID", m.id, "operation id (op-...)")->required();
  m.watch->footer(footer_with(
      "Shows the progress as the command that started it does, then its result (--json: the\n"
      "same document). Exit code: the operation's final status as for that command (0 ok, 1 a\n"
      "deployment not ready or a cancelled run, 6 refused, ...); 4 when there is no such\n"
      "operation. Leaving (Ctrl-C, --timeout) does not stop the operation. The deadline is\n"
      "--timeout when given, else 600 s.\n"
      "Examples:\n  xbarctl watch op-0123456789ab\n"
      "  xbarctl --json --quiet watch op-0123456789ab | jq -r .state"));

  m.cancel = app.add_subcommand(
      "cancel", "ask a running operation to stop at its next round; prints the operation");
  m.cancel->add_option("ID", m.id, "operation id (op-...)")->required();
  m.cancel->footer(footer_with(
      "A finished operation is returned unchanged. Needs the token when xbard has one (exit 7\n"
      "without it); exit 4 when there is no such operation. --json: the xbar.v1.Operation.\n"
      "Examples:\n  xbarctl cancel op-0123456789ab\n"
      "  xbarctl --token-file ~/.xbar-token cancel op-0123456789ab && xbarctl watch "
      "op-0123456789ab"));
}

OperationCommands::~OperationCommands() = default;

std::optional<int> OperationCommands::run(const Session& session) const {
  const Impl& m = *impl_;
  if (!*m.list && !*m.show && !*m.watch && !*m.cancel) return std::nullopt;
  auto stub = v1::OperationService::NewStub(session.channel());
  if (*m.list) return m.run_list(session, *stub);
  if (*m.show) return m.run_show(session, *stub);
  if (*m.watch) return m.run_watch(session, *stub);
  return m.run_cancel(session, *stub);
}

int OperationCommands::Impl::run_list(const Session& session,
                                      v1::OperationService::Stub& stub) const {
  v1::ListOperationsRequest req;
  req.set_running_only(running_only);
  v1::ListOperationsResponse resp;
  auto ctx = session.context();
  const grpc::Status s = stub.ListOperations(ctx.get(), req, &resp);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    std::cout << proto_json(resp) << "\n";
    return kOk;
  }
  if (resp.operations().empty()) {
    std::cout << (running_only ? "no running operations\n" : "no operations\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "METHOD", "STATE", "CODE", "EVENTS", "STARTED", "DURATION", "REQUEST ID"}};
  for (const auto& op : resp.operations()) {
    rows.push_back(
        {op.id(), short_method(op.method()) + (op.detached() ? " (detached)" : ""),
         op.state() + (op.cancel_requested() && op.state_code() == v1::OPERATION_STATE_RUNNING
                           ? " (cancel)"
                           : ""),
         code_text(op), std::to_string(op.events()), local_time(op.started_at_ms()), duration(op),
         op.request_id().empty() ? "-" : op.request_id()});
  }
  std::vector<size_t> w(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], r[c].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      line += c + 1 < r.size() ? fmt::format("{:<{}}  ", r[c], w[c]) : r[c];
    }
    std::cout << line << "\n";
  }
  return kOk;
}

int OperationCommands::Impl::run_show(const Session& session,
                                      v1::OperationService::Stub& stub) const {
  v1::GetOperationRequest req;
  req.set_id(id);
  v1::Operation op;
  auto ctx = session.context();
  const grpc::Status s = stub.GetOperation(ctx.get(), req, &op);
  if (!s.ok()) return session.fail(s);
  std::cout << (session.json() ? proto_json(op) + "\n" : format_operation(op));
  return kOk;
}

int OperationCommands::Impl::run_cancel(const Session& session,
                                        v1::OperationService::Stub& stub) const {
  v1::CancelOperationRequest req;
  req.set_id(id);
  v1::Operation op;
  auto ctx = session.context();
  const grpc::Status s = stub.CancelOperation(ctx.get(), req, &op);
  if (!s.ok()) return session.fail(s);
  if (session.json()) {
    std::cout << proto_json(op) << "\n";
    return kOk;
  }
  if (op.finished_at_ms() > 0) {
    std::cout << "already finished, nothing to cancel\n";
  } else {
    std::cout << "cancel requested: it stops at its next round (xbarctl watch " << op.id()
              << " shows the end)\n";
  }
  std::cout << format_operation(op);
  return kOk;
}

int OperationCommands::Impl::run_watch(const Session& session,
                                       v1::OperationService::Stub& stub) const {
  v1::WatchOperationRequest req;
  req.set_id(id);
  auto ctx = session.context(kLongCallS);
  auto reader = stub.WatchOperation(ctx.get(), req);
  v1::OperationEvent e;
  v1::ProgramReport program;
  v1::ScanReport scan;
  v1::Deployment deployment;
  bool have_program = false, have_scan = false, have_deployment = false, have_finished = false;
  v1::Operation finished;
  {
    Progress progress(session.progress());
    while (reader->Read(&e)) {
      switch (e.kind_case()) {
        case v1::OperationEvent::kProgram:
          have_program |= show_program_message(progress, "program", e.program(), &program);
          break;
        case v1::OperationEvent::kScan:
          have_scan |= show_scan_message(progress, "scan", e.scan(), &scan);
          break;
        case v1::OperationEvent::kDeploy:
          have_deployment |= show_deploy_message(progress, e.deploy(), &deployment);
          break;
        case v1::OperationEvent::kFinished:
          finished = e.finished();
          have_finished = true;
          break;
        default:
          break;
      }
    }
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) {
    const int rc = session.fail(s);
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      std::cerr << "xbarctl: the operation goes on; xbarctl watch " << id << " again\n";
    return rc;
  }
  if (!have_finished) {
    std::cerr << "xbarctl: the watch ended before the operation did (xbarctl operation " << id
              << ")\n";
    return kFailed;
  }
  if (finished.code() != 0) {
    std::cerr << fmt::format("xbarctl: operation {} {}: {}{}\n", finished.id(), finished.state(),
                             xbar::status_code_name(finished.code()),
                             finished.message().empty() ? "" : ": " + finished.message());
    return exit_for(
        grpc::Status(static_cast<grpc::StatusCode>(finished.code()), finished.message()));
  }
  if (have_deployment) return print_deploy_result(session, deployment, finished.id());
  if (have_program) return print_program_result(session, program, {.operation = finished.id()});
  if (have_scan) return print_scan_result(session, scan, {}, finished.id());
  // Finished OK without a result message (not expected): the summary.
  std::cout << (session.json() ? proto_json(finished) + "\n" : format_operation(finished));
  return kOk;
}

}  // namespace xbar::client
