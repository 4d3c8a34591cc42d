// xbarctl's --json output: a small writer (no JSON library is a dependency; protobuf's JSON
// mapping covers the messages that are printed whole).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace google::protobuf {
class Message;
}

namespace xbar::client {

/// A JSON string literal: quotes, backslashes and control characters escaped, invalid UTF-8
/// replaced by U+FFFD (paths and names are the user's bytes; the output must stay JSON).
std::string json_quote(std::string_view s);

/// A number: shortest round-trip form; NaN and infinities (not JSON) as null.
std::string json_number(double v);
std::string json_number(float v);

/// A message in the protobuf JSON mapping with the .proto field names and every field printed
/// (zeros and empty lists included), as the hand-written documents spell their keys.
std::string proto_json(const google::protobuf::Message& m);

/// Writes one compact JSON document, keys in the order written.
///
///   JsonWriter w;
///   w.begin_object().field("array", 0).key("g_uS").begin_array().value(1.5).end_array()
///    .end_object();
///   std::cout << w.text() << "\n";
class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);
  JsonWriter& null();
  /// A number with `decimals` digits after the point (null when not finite).
  JsonWriter& fixed(double v, int decimals);
  /// An encoded JSON value, inserted as is (e.g. proto_json()).
  JsonWriter& raw(std::string_view json);

  template <typename T>
  JsonWriter& value(const T& v) {
    separate();
    if constexpr (std::is_same_v<T, bool>) {
      out_ += v ? "true" : "false";
    } else if constexpr (std::is_integral_v<T>) {
      out_ += std::to_string(v);
    } else if constexpr (std::is_floating_point_v<T>) {
      out_ += json_number(v);
    } else {
      out_ += json_quote(std::string_view(v));
    }
    return *this;
  }
  template <typename T>
  JsonWriter& field(std::string_view k, const T& v) {
    return key(k).value(v);
  }
  /// A list of numbers or strings.
  template <typename Range>
  JsonWriter& array(const Range& values) {
    begin_array();
    for (const auto& v : values) value(v);
    return end_array();
  }

  const std::string& text() const { return out_; }

 private:
  void separate();
  std::string out_;
  std::vector<bool> has_items_;  // per open object/array
  bool after_key_ = false;
};

}  // namespace xbar::client
