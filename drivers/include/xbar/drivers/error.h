// Driver-layer errors: codes plus a message that names the field, the value and the allowed
// range. Converted to grpc::Status only in server/.
#pragma once

#include <expected>
#include <string>
#include <string_view>

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
