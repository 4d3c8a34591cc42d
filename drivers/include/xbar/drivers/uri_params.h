// The "key=value,key=value" parameters of board URIs (sim:..., usb:...), shared by the
// transports that take them; every error names the URI, the key and what is allowed.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>

#include "xbar/base/error.h"

namespace xbar {

/// "k=v,k=v" -> map; kInvalidArgument for a key outside `allowed` (listing them) or a key
/// without a value. Empty items are skipped.
Result<std::map<std::string, std::string>> parse_uri_params(
    const std::string& uri, const std::string& params, std::initializer_list<std::string> allowed);

/// The parameters after "scheme:" ("" for a bare "scheme").
std::string uri_params_of(const std::string& uri, std::string_view scheme);

/// `value` of `key` as an unsigned integer (all of it).
Result<uint64_t> parse_uri_u64(const std::string& uri, const std::string& key,
                               const std::string& value);

/// `value` of `key` as a number in [lo, hi]; `what` says what it is ("a probability").
Result<double> parse_uri_number(const std::string& uri, const std::string& key,
                                const std::string& value, double lo, double hi,
                                std::string_view what);

}  // namespace xbar
