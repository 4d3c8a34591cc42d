// The one place where driver errors become gRPC status codes.
#pragma once

#include <grpcpp/grpcpp.h>

#include "xbar/base/error.h"

namespace xbar::server {

grpc::Status to_status(const Error& e);
inline grpc::Status invalid_argument(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}
/// A chip-record error: NOT_FOUND and INVALID_ARGUMENT as themselves, anything else (a disk
/// or database failure) INTERNAL, prefixed "chip record: ".
inline grpc::Status record_status(const Error& e) {
  if (e.code == ErrorCode::kNotFound || e.code == ErrorCode::kInvalidArgument) return to_status(e);
  return {grpc::StatusCode::INTERNAL, "chip record: " + e.message};
}

}  // namespace xbar::server
