#include "status.h"

namespace xbar::server {

grpc::Status to_status(const Error& e) {
  using grpc::StatusCode;
  StatusCode code = StatusCode::INTERNAL;
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      code = StatusCode::INVALID_ARGUMENT;
      break;
    case ErrorCode::kNotFound:
      code = StatusCode::NOT_FOUND;
      break;
    case ErrorCode::kPermissionDenied:
      code = StatusCode::PERMISSION_DENIED;
      break;
    case ErrorCode::kUnavailable:
    case ErrorCode::kRestarted:  // transient: the caller may retry (the board is back)
      code = StatusCode::UNAVAILABLE;
      break;
    case ErrorCode::kTimeout:
      code = StatusCode::DEADLINE_EXCEEDED;
      break;
    case ErrorCode::kUnsupported:
      code = StatusCode::UNIMPLEMENTED;
      break;
    case ErrorCode::kBusy:
      code = StatusCode::RESOURCE_EXHAUSTED;
      break;
    case ErrorCode::kCancelled:
      code = StatusCode::CANCELLED;
      break;
    case ErrorCode::kFailedPrecondition:
      code = StatusCode::FAILED_PRECONDITION;
      break;
    case ErrorCode::kProtocol:    // malformed reply from the board
    case ErrorCode::kBoardError:  // the board's own error reply
    case ErrorCode::kInternal:
      code = StatusCode::INTERNAL;
      break;
  }
  return {code, e.message};
}

}  // namespace xbar::server
