// Shared by the libFuzzer targets in tests/fuzz: a property check that stops the run with a
// message (libFuzzer then saves the input as crash-*), and a reader for the targets'
// structured inputs (little-endian, reads past the end give 0 and set `short_read`).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

namespace xbar::fuzz {

[[noreturn]] inline void property_failed(const char* file, int line, const char* cond,
                                         const std::string& detail) {
  std::fprintf(stderr, "\n==== property violated at %s:%d: %s\n     %s\n", file, line, cond,
               detail.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace xbar::fuzz

/// FUZZ_CHECK(cond, detail): `detail` is a std::string (e.g. fmt::format(...)), only built on
/// failure.
#define FUZZ_CHECK(cond, detail)                                                     \
  do {                                                                               \
    if (!(cond)) ::xbar::fuzz::property_failed(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

namespace xbar::fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : b_(data, size) {}
  explicit Input(std::span<const uint8_t> b) : b_(b) {}

  template <typename T>
  requires std::is_arithmetic_v<T> T get() {
    T v{};
    if (b_.size() - pos_ < sizeof(T)) {
      short_read = true;
      pos_ = b_.size();
      return v;
    }
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  /// Up to n bytes (fewer at the end).
  std::span<const uint8_t> bytes(size_t n) {
    n = std::min(n, b_.size() - pos_);
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::span<const uint8_t> rest() { return bytes(b_.size() - pos_); }
  size_t remaining() const { return b_.size() - pos_; }
  bool empty() const { return pos_ == b_.size(); }

  bool short_read = false;

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace xbar::fuzz
