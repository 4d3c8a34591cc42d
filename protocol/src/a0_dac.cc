#include <fmt/format.h>

#include <cmath>

#include "xbar/a0/dac.h"

namespace xbar::a0 {

SpanLimits span_limits(DacSpan s) {
  switch (s) {
    case DacSpan::k0To5V:
      return {0, 5};
    case DacSpan::k0To10V:
      return {0, 10};
    case DacSpan::kPlusMinus5V:
      return {-5, 5};
    case DacSpan::kPlusMinus10V:
      return {-10, 10};
    case DacSpan::kPlusMinus2_5V:
      return {-2.5, 2.5};
  }
  return {0, 0};
}

std::expected<uint16_t, std::string> dac_code(double v_V, DacSpan s, std::string_view field) {
  const SpanLimits l = span_limits(s);
  if (!(v_V >= l.lo_V && v_V <= l.hi_V)) {  // NaN fails too
    return std::unexpected(
        fmt::format("{} = {} V: allowed {}..{} V (the DAC's span)", field, v_V, l.lo_V, l.hi_V));
  }
  return static_cast<uint16_t>(std::floor((v_V - l.lo_V) / (l.hi_V - l.lo_V) * 65535.0));
}

double dac_volts(uint16_t code, DacSpan s) {
  const SpanLimits l = span_limits(s);
  return l.lo_V + (l.hi_V - l.lo_V) * code / 65535.0;
}

}  // namespace xbar::a0
