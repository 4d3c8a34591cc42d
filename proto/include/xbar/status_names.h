// The canonical names of gRPC status codes (0 "OK" .. 16 "UNAUTHENTICATED"), shared by xbard's
// metrics labels and xbarctl's output; header-only and free of gRPC headers.
#pragma once

#include <array>
#include <string_view>

namespace xbar {

/// "UNKNOWN" outside 0..16.
constexpr std::string_view status_code_name(int code) {
  constexpr std::array<std::string_view, 17> kNames = {"OK",
                                                       "CANCELLED",
                                                       "UNKNOWN",
                                                       "INVALID_ARGUMENT",
                                                       "DEADLINE_EXCEEDED",
                                                       "NOT_FOUND",
                                                       "ALREADY_EXISTS",
                                                       "PERMISSION_DENIED",
                                                       "RESOURCE_EXHAUSTED",
                                                       "FAILED_PRECONDITION",
                                                       "ABORTED",
                                                       "OUT_OF_RANGE",
                                                       "UNIMPLEMENTED",
                                                       "INTERNAL",
                                                       "UNAVAILABLE",
                                                       "DATA_LOSS",
                                                       "UNAUTHENTICATED"};
  if (code < 0 || code >= static_cast<int>(kNames.size())) return "UNKNOWN";
  return kNames[static_cast<size_t>(code)];
}

}  // namespace xbar
