// Small helpers every file of the chip record's store uses: the clock, the "record is
// inconsistent" error, the serial check and a string's bytes. Internal to server/src/store/.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

#include "xbar/base/error.h"

namespace xbar::server::store {

/// Milliseconds since the Unix epoch.
inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// The file holds something its own constraints should have prevented.
inline Error corrupt(std::string_view what, std::string_view detail) {
  return Error{ErrorCode::kInternal, fmt::format("{}: record is inconsistent: {}", what, detail)};
}

/// 1..64 printable ASCII characters, no spaces.
inline Result<void> check_serial(std::string_view serial, std::string_view what) {
  if (serial.empty() || serial.size() > 64)
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: serial: length {} out of range 1..64", what, serial.size()));
  for (char c : serial)
    if (c < 0x21 || c > 0x7e)
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: serial: must be printable ASCII without spaces", what));
  return {};
}

inline std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace xbar::server::store
