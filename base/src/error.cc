#include "xbar/base/error.h"

namespace xbar {

std::string_view error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kPermissionDenied:
      return "permission denied";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kProtocol:
      return "protocol error";
    case ErrorCode::kBoardError:
      return "board error";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kFailedPrecondition:
      return "failed precondition";
    case ErrorCode::kRestarted:
      return "board restarted";
    case ErrorCode::kInternal:
      return "internal error";
  }
  return "error";
}

}  // namespace xbar
