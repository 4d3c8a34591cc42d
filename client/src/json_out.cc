#include "json_out.h"

#include <fmt/format.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <charconv>
#include <cmath>

namespace xbar::client {

namespace {

// The double nearest to the decimal `text` (which fmt wrote: always a valid number).
double parse_decimal(const std::string& text) {
  double v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

}  // namespace

Json json_number(double v) {
  if (!std::isfinite(v)) return nullptr;
  // Exactly representable as an integer: below 2^53 every whole double is.
  if (v == std::trunc(v) && std::abs(v) < 9007199254740992.0) return static_cast<int64_t>(v);
  return v;
}

Json json_number(float v) {
  if (!std::isfinite(v)) return nullptr;
  // fmt's shortest form of the float, read back as a double: the double nearest to that
  // decimal, which nlohmann prints as the same short decimal.
  return json_number(parse_decimal(fmt::format("{}", v)));
}

Json json_fixed(double v, int decimals) {
  if (!std::isfinite(v)) return nullptr;
  return parse_decimal(fmt::format("{:.{}f}", v, decimals));
}

std::string proto_json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) return "{}";
  return out;
}

Json proto_value(const google::protobuf::Message& m) {
  Json v = Json::parse(proto_json(m), nullptr, /*allow_exceptions=*/false);
  return v.is_discarded() ? Json::object() : v;
}

std::string dump(const Json& doc) {
  // Strings carry the user's bytes (paths, ids, the server address) and need not be UTF-8;
  // dump() throws on invalid UTF-8 by default, which would end a command that otherwise
  // succeeded. `replace` writes U+FFFD for each invalid byte sequence instead, and the
  // output stays JSON. ensure_ascii = false: valid UTF-8 is printed as it is, not as \u
  // escapes.
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace xbar::client
