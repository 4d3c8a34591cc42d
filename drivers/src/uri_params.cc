#include "xbar/drivers/uri_params.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

namespace xbar {

Result<std::map<std::string, std::string>> parse_uri_params(
    const std::string& uri, const std::string& params, std::initializer_list<std::string> allowed) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < params.size()) {
    size_t end = params.find(',', pos);
    if (end == std::string::npos) end = params.size();
    const std::string kv = params.substr(pos, end - pos);
    pos = end + 1;
    if (kv.empty()) continue;
    const auto eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    if (eq == std::string::npos) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("board URI '{}': '{}' needs a value (key=value)", uri, kv));
    }
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("board URI '{}': unknown key '{}' (allowed: {})", uri, key,
                                    fmt::join(allowed, ", ")));
    }
    out[key] = kv.substr(eq + 1);
  }
  return out;
}

std::string uri_params_of(const std::string& uri, std::string_view scheme) {
  return uri.size() > scheme.size() + 1 ? uri.substr(scheme.size() + 1) : std::string();
}

Result<uint64_t> parse_uri_u64(const std::string& uri, const std::string& key,
                               const std::string& value) {
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || p != value.data() + value.size()) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("board URI '{}': {} = '{}': expected an unsigned integer", uri, key, value));
  }
  return out;
}

Result<double> parse_uri_number(const std::string& uri, const std::string& key,
                                const std::string& value, double lo, double hi,
                                std::string_view what) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !(v >= lo && v <= hi)) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("board URI '{}': {} = '{}': allowed {}..{} ({})", uri, key, value,
                                  lo, hi, what));
  }
  return v;
}

}  // namespace xbar
