// The one parser of "HOST:PORT" addresses (xbard's metrics endpoint, the socket transport's
// tcp: URIs, xbar-fwsim's --listen): IPv4 and names as HOST:PORT, IPv6 as [ADDRESS]:PORT.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace xbar {

struct HostPort {
  std::string host;  // empty for ":PORT" (the caller decides: any address, or an error)
  uint16_t port = 0;
};

/// "HOST:PORT", "[V6]:PORT" or ":PORT"; the port is decimal 0..65535. The error quotes `s` and
/// says what was expected.
std::expected<HostPort, std::string> parse_host_port(std::string_view s);

}  // namespace xbar
