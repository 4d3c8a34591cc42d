// xbarctl's operation commands (OperationService, proto/xbar/v1/operations.proto): operations,
// operation, watch and cancel; and what the long commands (program, scan, deploy,
// deploy-model) share about their operation: its id, --detach, the "operation" JSON field.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "cli.h"
#include "json_out.h"

namespace CLI {
class App;
}

namespace xbar::client {

/// The operation id xbard announced for a call (initial metadata `x-operation-id`): valid
/// once the first Read() returned; empty when the daemon sent none.
std::string operation_id(const grpc::ClientContext& ctx);

/// Asks for an operation that outlives its call (metadata `x-xbar-detach: 1`).
void request_detach(grpc::ClientContext& ctx);

/// The value of a document's `"operation"` key: the id, or null when unknown.
Json operation_value(const std::string& operation);

/// `object` (e.g. proto_value()) with `"operation": ID` as its first key.
Json with_operation(const Json& object, const std::string& operation);

/// The line a long command prints on stderr when its operation has started (not --quiet).
void announce_operation(const Session& session, const std::string& operation);

/// What --detach prints on stdout: `operation ID started; follow with: xbarctl watch ID`, or
/// with --json `{"operation": ID}`. Exit code 0, or 1 when xbard announced no id.
int print_detached(const Session& session, const std::string& operation);

/// The start of a long call whose first Read() returned `got`. With `detach`: ends the call
/// without stopping the operation (xbard goes on with it) and returns the exit code (the
/// call's failure when it ended before any message). Otherwise announces the operation on
/// stderr and returns nullopt: the caller reads on.
template <typename Reader>
std::optional<int> after_first_message(const Session& session, grpc::ClientContext& ctx,
                                       Reader& reader, bool got, bool detach) {
  const std::string op = operation_id(ctx);
  if (!detach) {
    announce_operation(session, op);
    return std::nullopt;
  }
  if (!got) {
    // Over before its first message (refused, bad input): the call's own status.
    const grpc::Status s = reader.Finish();
    if (!s.ok()) return session.fail(s);
  } else {
    ctx.TryCancel();  // the call goes away; the detached operation does not
    (void)reader.Finish();
  }
  return print_detached(session, op);
}

class OperationCommands {
 public:
  /// Registers the subcommands on `app` (which must outlive this object).
  explicit OperationCommands(CLI::App& app);
  ~OperationCommands();
  OperationCommands(const OperationCommands&) = delete;
  OperationCommands& operator=(const OperationCommands&) = delete;

  /// Runs the subcommand that was parsed and returns its exit code; nullopt when none of these
  /// was given.
  std::optional<int> run(const Session& session) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xbar::client
