// The one place where driver errors become gRPC status codes.
#pragma once

#include <grpcpp/grpcpp.h>

#include "xbar/drivers/error.h"

namespace xbar::server {

grpc::Status to_status(const Error& e);
inline grpc::Status invalid_argument(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

}  // namespace xbar::server
