// Driver-layer errors: codes plus a message that names the field, the value and the allowed
// range. Converted to grpc::Status only in server/.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace xbar {

enum class ErrorCode {
  kInvalidArgument,     // caller's value out of range (message names field and range)
  kNotFound,            // no such board / serial / file
  kPermissionDenied,    // OS refused access (e.g. /dev/bus/usb node without the udev rule)
  kUnavailable,         // board unplugged, connection refused or closed
  kTimeout,             // no reply within the deadline (after retries)
  kProtocol,            // malformed or unexpected reply from the board
  kBoardError,          // the board answered with an error reply (message carries its text)
  kUnsupported,         // the board does not implement this (e.g. SIM_* on a real board)
  kBusy,                // the board is running a loop
  kCancelled,           // stopped by the caller
  kFailedPrecondition,  // not possible in the present state (e.g. a deployment without a model)
  kRestarted,           // the board restarted mid-operation (volatile state lost, conductances
                        // kept); whether a pulse batch in flight was applied is unknown
  kInternal,
};

std::string_view error_code_name(ErrorCode c);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

template <typename T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> make_error(ErrorCode code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}

}  // namespace xbar

// Propagating an error out of a function that returns a Result<U> (any U). Before these, the
// tree spelled it out by hand after each call, `if (!x) return std::unexpected(x.error());`
// (over 250 times, 95 in the chip record alone); the macros say it in one line and cannot
// name the wrong variable.
//
//   XBAR_RETURN_IF_ERROR(txn.begin(what));         // any Result<T>; the value is dropped
//   XBAR_TRY(stmt, Stmt::prepare(db, sql, what));  // declares `auto stmt = ...;` (the Result)
//   stmt->bind(1, serial);                         // so *stmt / stmt-> are usable after it
//
// Both return std::unexpected(error) from the enclosing function when the expression failed.
// XBAR_TRY declares `var` in the enclosing scope: write it as a statement of its own, never as
// the body of an unbraced if or loop.
#define XBAR_RETURN_IF_ERROR(expr)                             \
  do {                                                         \
    if (auto xbar_result_ = (expr); !xbar_result_)             \
      return std::unexpected(std::move(xbar_result_).error()); \
  } while (false)

// NOLINTBEGIN(bugprone-macro-parentheses): `var` is the name XBAR_TRY declares.
#define XBAR_TRY(var, expr) \
  auto var = (expr);        \
  if (!(var)) return std::unexpected(std::move(var).error())
// NOLINTEND(bugprone-macro-parentheses)
