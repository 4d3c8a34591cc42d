// Checks every request gets before its handler does anything: things the generated code lets
// through because proto3 cannot say them.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

namespace xbar::server {

/// INVALID_ARGUMENT naming the field (its path from the request, e.g. "options.remap") when
/// any enum field, at any depth, holds a number its enum does not define. proto3 enums are
/// open: a client built from a newer (or hand-edited) proto can send 7 where only 0..2 exist,
/// and the generated code keeps it. Every closed set in the API is an enum, so this one walk
/// covers all of them, including enums added later.
grpc::Status check_enums(const google::protobuf::Message& request);

}  // namespace xbar::server
