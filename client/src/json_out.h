// What xbarctl's --json prints: documents built as nlohmann::ordered_json (keys stay in the
// order written, the order docs/xbarctl.md lists them), numbers printed as they always were,
// and protobuf's JSON mapping for the API's messages.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace google::protobuf {
class Message;
}

namespace xbar::client {

using Json = nlohmann::ordered_json;

/// A number; null when it is not finite (NaN and infinities are not JSON). Whole values print
/// as integers ("7", not "7.0").
Json json_number(double v);

/// A float as its shortest decimal ("0.2", not 0.20000000298023224, the double it widens to).
Json json_number(float v);

/// `v` rounded to `decimals` digits after the point (12.34567, 3 -> 12.346); null when it is
/// not finite.
Json json_fixed(double v, int decimals);

/// A list of numbers, each as json_number() prints it.
template <typename Range>
Json json_numbers(const Range& values) {
  Json out = Json::array();
  for (const auto& v : values) out.push_back(json_number(v));
  return out;
}

/// A message in the protobuf JSON mapping with the .proto field names and every field printed
/// (zeros and empty lists included), as the other documents spell their keys; "{}" when the
/// message cannot be printed.
std::string proto_json(const google::protobuf::Message& m);

/// proto_json() as a value, to nest in a document.
Json proto_value(const google::protobuf::Message& m);

/// A document as printed on stdout: one compact line (no newline).
std::string dump(const Json& doc);

}  // namespace xbar::client
