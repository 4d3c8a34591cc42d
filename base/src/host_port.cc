#include "xbar/base/host_port.h"

#include <fmt/format.h>

#include <charconv>

namespace xbar {

std::expected<HostPort, std::string> parse_host_port(std::string_view s) {
  std::string_view host;
  std::string_view port;
  if (s.starts_with('[')) {
    const auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return std::unexpected(fmt::format("'{}': expected [ADDRESS]:PORT", s));
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      return std::unexpected(fmt::format("'{}': expected HOST:PORT", s));
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return std::unexpected(fmt::format("'{}': write an IPv6 address as [ADDRESS]:PORT", s));
    }
  }
  unsigned value = 0;
  const auto [end, err] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || err != std::errc{} || end != port.data() + port.size() || value > 65535) {
    return std::unexpected(fmt::format("'{}': port must be 0..65535", s));
  }
  return HostPort{std::string(host), static_cast<uint16_t>(value)};
}

}  // namespace xbar
