#include "xbar/twin/profile.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <variant>

#include "builtin_profiles.h"

namespace xbar::twin {

namespace {

// A schema node binds a YAML key either to a field of ChipProfile or to a nested mapping.
struct Node;
using Schema = std::map<std::string, Node>;
using Binding = std::variant<double*, int*, uint32_t*, bool*, std::string*, Range*,
                             std::vector<double>*, FaultPopulation*, Schema>;
struct Node {
  Binding b;
};

std::string kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return fmt::format("'{}'", n.Scalar());
  }
}

std::expected<double, std::string> as_number(const YAML::Node& n, const std::string& key) {
  if (n.IsScalar()) {
    try {
      const double v = n.as<double>();
      if (std::isfinite(v)) return v;
    } catch (const YAML::Exception&) {
    }
  }
  return std::unexpected(fmt::format("{}: expected a finite number, got {}", key, kind_of(n)));
}

std::expected<Range, std::string> as_range(const YAML::Node& n, const std::string& key) {
  if (!n.IsSequence() || n.size() != 2) {
    return std::unexpected(fmt::format("{}: expected a list [lo, hi], got {}", key, kind_of(n)));
  }
  auto lo = as_number(n[0], key + "[0]");
  if (!lo) return std::unexpected(lo.error());
  auto hi = as_number(n[1], key + "[1]");
  if (!hi) return std::unexpected(hi.error());
  if (*lo > *hi) return std::unexpected(fmt::format("{}: lo {} > hi {}", key, *lo, *hi));
  return Range{*lo, *hi};
}

std::expected<void, std::string> bind(const YAML::Node& n, Binding& b, const std::string& key);

std::expected<void, std::string> bind_map(const YAML::Node& n, Schema& schema,
                                          const std::string& prefix) {
  if (!n.IsMap()) {
    return std::unexpected(fmt::format("{}: expected a mapping, got {}",
                                       prefix.empty() ? "<top>" : prefix, kind_of(n)));
  }
  for (const auto& kv : n) {
    // A null, list or mapping key ("? [a]: 1") has no name; as<std::string>() would throw.
    if (!kv.first.IsScalar()) {
      return std::unexpected(fmt::format("{}: expected a key name, got {}",
                                         prefix.empty() ? "<top>" : prefix, kind_of(kv.first)));
    }
    const std::string k = kv.first.Scalar();
    const std::string full = prefix.empty() ? k : prefix + "." + k;
    auto it = schema.find(k);
    if (it == schema.end()) {
      std::string allowed;
      for (const auto& [name, _] : schema) allowed += (allowed.empty() ? "" : ", ") + name;
      return std::unexpected(fmt::format("{}: unknown key (allowed here: {})", full, allowed));
    }
    if (auto r = bind(kv.second, it->second.b, full); !r) return r;
  }
  return {};
}

// One value per kind of field: the YAML node `n` at `key` parsed into *p, or why it cannot be.
std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key,
                                            double* p) {
  auto v = as_number(n, key);
  if (!v) return std::unexpected(v.error());
  *p = *v;
  return {};
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key, int* p) {
  auto v = as_number(n, key);
  if (!v) return std::unexpected(v.error());
  if (*v != std::floor(*v) || std::abs(*v) > 1e9) {
    return std::unexpected(fmt::format("{}: expected an integer, got {}", key, *v));
  }
  *p = static_cast<int>(*v);
  return {};
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key,
                                            uint32_t* p) {
  auto v = as_number(n, key);
  if (!v) return std::unexpected(v.error());
  if (*v != std::floor(*v) || *v < 0 || *v > 4e9) {
    return std::unexpected(fmt::format("{}: expected a non-negative integer, got {}", key, *v));
  }
  *p = static_cast<uint32_t>(*v);
  return {};
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key, bool* p) {
  try {
    if (n.IsScalar()) {
      *p = n.as<bool>();
      return {};
    }
  } catch (const YAML::Exception&) {
  }
  return std::unexpected(fmt::format("{}: expected true or false, got {}", key, kind_of(n)));
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key,
                                            std::string* p) {
  if (!n.IsScalar()) {
    return std::unexpected(fmt::format("{}: expected a string, got {}", key, kind_of(n)));
  }
  *p = n.Scalar();
  return {};
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key, Range* p) {
  auto r = as_range(n, key);
  if (!r) return std::unexpected(r.error());
  *p = *r;
  return {};
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key,
                                            std::vector<double>* p) {
  if (!n.IsSequence()) {
    return std::unexpected(fmt::format("{}: expected a list of numbers, got {}", key, kind_of(n)));
  }
  std::vector<double> out;
  for (size_t i = 0; i < n.size(); ++i) {
    auto v = as_number(n[i], fmt::format("{}[{}]", key, i));
    if (!v) return std::unexpected(v.error());
    out.push_back(*v);
  }
  *p = std::move(out);
  return {};
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key,
                                            FaultPopulation* p) {
  FaultPopulation f;
  Range count{0, 0};
  Schema s{{"fraction", {&f.fraction}}, {"count_per_array", {&count}}};
  if (auto r = bind_map(n, s, key); !r) return r;
  if (n["fraction"] && n["count_per_array"]) {
    return std::unexpected(
        fmt::format("{}: give either fraction or count_per_array, not both", key));
  }
  // Bounded before the casts to int (1e10 was undefined behaviour); validate_profile then
  // limits it to the array's size.
  if (count.lo < 0 || count.lo != std::floor(count.lo) || count.hi != std::floor(count.hi) ||
      count.hi > 1e9) {
    return std::unexpected(
        fmt::format("{}.count_per_array: expected two integers in 0..1000000000", key));
  }
  f.count_lo = static_cast<int>(count.lo);
  f.count_hi = static_cast<int>(count.hi);
  *p = f;
  return {};
}

std::expected<void, std::string> bind_value(const YAML::Node& n, const std::string& key,
                                            Schema& s) {
  return bind_map(n, s, key);
}

std::expected<void, std::string> bind(const YAML::Node& n, Binding& b, const std::string& key) {
  return std::visit([&](auto& target) { return bind_value(n, key, target); }, b);
}

Schema make_schema(ChipProfile& p) {
  return Schema{
      {"name", {&p.name}},
      {"geometry", {Schema{{"arrays", {&p.arrays}}, {"rows", {&p.rows}}, {"cols", {&p.cols}}}}},
      {"read", {Schema{{"v_read_V", {&p.v_read_V}}, {"gate_V", {&p.read_gate_V}}}}},
      {"tia", {Schema{{"gains_ohm", {&p.tia_gains_ohm}}, {"v_ref_V", {&p.tia_v_ref_V}}}}},
      {"adc",
       {Schema{{"bits", {&p.adc_bits}}, {"v_lo_V", {&p.adc_v_lo_V}}, {"v_hi_V", {&p.adc_v_hi_V}}}}},
      {"dac",
       {Schema{
           {"bits", {&p.dac_bits}}, {"v_min_V", {&p.dac_v_min_V}}, {"v_max_V", {&p.dac_v_max_V}}}}},
      {"pulse",
       {Schema{{"width_step_ns", {&p.width_step_ns}},
               {"width_max_code", {&p.width_max_code}},
               {"set_v_V", {&p.set_v_V}},
               {"set_gate_V", {&p.set_gate_V}},
               {"reset_v_V", {&p.reset_v_V}},
               {"reset_gate_V", {&p.reset_gate_V}}}}},
      {"device",
       {Schema{{"g_floor_uS", {&p.g_floor_uS}},
               {"g_ceiling_uS", {&p.g_ceiling_uS}},
               {"initial_g_median_uS", {&p.initial_g_median_uS}},
               {"initial_g_sigma_log", {&p.initial_g_sigma_log}},
               {"width_ref_ns", {&p.width_ref_ns}},
               {"width_exponent", {&p.width_exponent}},
               {"set",
                {Schema{{"v_threshold_V", {&p.set_v_threshold_V}},
                        {"v_threshold_sigma_V", {&p.set_v_threshold_sigma_V}},
                        {"rate_per_V", {&p.set_rate_per_V}},
                        {"compliance_uS_per_V", {&p.compliance_uS_per_V}},
                        {"gate_threshold_V", {&p.compliance_gate_threshold_V}}}}},
               {"reset",
                {Schema{{"v_threshold_V", {&p.reset_v_threshold_V}},
                        {"v_threshold_sigma_V", {&p.reset_v_threshold_sigma_V}},
                        {"rate_per_V", {&p.reset_rate_per_V}}}}}}}},
      {"variation",
       {Schema{{"d2d_sigma_rel", {&p.d2d_sigma_rel}},
               {"c2c_sigma_rel", {&p.c2c_sigma_rel}},
               {"c2c_sigma_abs_uS", {&p.c2c_sigma_abs_uS}}}}},
      {"relaxation",
       {Schema{{"enabled", {&p.relaxation}},
               {"tau_s", {&p.relax_tau_s}},
               {"sigma_mid_uS", {&p.relax_sigma_mid_uS}},
               {"sigma_other_uS", {&p.relax_sigma_other_uS}},
               {"mid_window_uS", {&p.relax_mid_window_uS}}}}},
      {"read_noise",
       {Schema{{"enabled", {&p.read_noise}},
               {"slope", {&p.fluc_slope}},
               {"offset", {&p.fluc_offset}},
               {"g_cap_uS", {&p.fluc_g_cap_uS}},
               {"sigma_cap_uS", {&p.fluc_sigma_cap_uS}},
               {"vmm", {&p.vmm_noise}}}}},
      {"faults",
       {Schema{{"stuck_high", {&p.stuck_high}},
               {"stuck_low", {&p.stuck_low}},
               {"slow", {&p.slow}},
               {"stuck_high_g_uS", {&p.stuck_high_g_uS}},
               {"stuck_low_g_uS", {&p.stuck_low_g_uS}},
               {"slow_rate_factor", {&p.slow_rate_factor}}}}},
      {"timing",
       {Schema{{"read_row_us", {&p.read_row_us}},
               {"pulse_overhead_us", {&p.pulse_overhead_us}},
               {"vmm_plane_us", {&p.vmm_plane_us}}}}},
  };
}

}  // namespace

std::expected<void, std::string> validate_profile(const ChipProfile& p) {
  auto fail = [](std::string m) { return std::unexpected(std::move(m)); };
  if (p.arrays < 1 || p.arrays > 8)
    return fail(fmt::format("geometry.arrays = {}: allowed 1..8", p.arrays));
  if (p.rows < 1 || p.rows > 255)
    return fail(fmt::format("geometry.rows = {}: allowed 1..255", p.rows));
  if (p.cols < 1 || p.cols > 255)
    return fail(fmt::format("geometry.cols = {}: allowed 1..255", p.cols));
  if (p.tia_gains_ohm.empty() || p.tia_gains_ohm.size() > 8) {
    return fail(fmt::format("tia.gains_ohm: {} gains, allowed 1..8", p.tia_gains_ohm.size()));
  }
  // What INFO carries must fit its fields (docs/protocol.md §4.2): whole ohms in a u32,
  // millivolts in a u16 (the DAC's range in an i16), the width step in a u16. The host does every
  // conversion from INFO; a value that wrapped would describe another board.
  for (size_t i = 0; i < p.tia_gains_ohm.size(); ++i) {
    if (!(p.tia_gains_ohm[i] >= 1 && p.tia_gains_ohm[i] <= 4294967295.0)) {
      return fail(
          fmt::format("tia.gains_ohm[{}] = {}: allowed 1..4294967295 ohm", i, p.tia_gains_ohm[i]));
    }
  }
  for (auto [name, v] : {std::pair{"adc.v_lo_V", p.adc_v_lo_V},
                         {"adc.v_hi_V", p.adc_v_hi_V},
                         {"tia.v_ref_V", p.tia_v_ref_V},
                         {"read.v_read_V", p.v_read_V},
                         {"read.gate_V", p.read_gate_V}}) {
    if (!(std::round(v * 1000) >= 0 && std::round(v * 1000) <= 65535)) {
      return fail(fmt::format("{} = {}: allowed 0..65.535 V", name, v));
    }
  }
  for (auto [name, v] : {std::pair{"dac.v_min_V", p.dac_v_min_V}, {"dac.v_max_V", p.dac_v_max_V}}) {
    if (!(std::round(v * 1000) >= -32768 && std::round(v * 1000) <= 32767)) {
      return fail(fmt::format("{} = {}: allowed -32.768..32.767 V", name, v));
    }
  }
  if (p.width_step_ns > 65535) {
    return fail(fmt::format("pulse.width_step_ns = {}: allowed 1..65535", p.width_step_ns));
  }
  if (p.adc_bits < 4 || p.adc_bits > 16)
    return fail(fmt::format("adc.bits = {}: allowed 4..16", p.adc_bits));
  if (!(p.adc_v_hi_V > p.adc_v_lo_V)) return fail("adc: v_hi_V must be > v_lo_V");
  if (p.dac_bits < 8 || p.dac_bits > 16)
    return fail(fmt::format("dac.bits = {}: allowed 8..16", p.dac_bits));
  if (!(p.dac_v_max_V > p.dac_v_min_V)) return fail("dac: v_max_V must be > v_min_V");
  if (p.width_step_ns == 0) return fail("pulse.width_step_ns must be > 0");
  if (p.width_max_code == 0 || p.width_max_code > 65535)
    return fail("pulse.width_max_code: allowed 1..65535");
  for (auto [name, r] : {std::pair{"pulse.set_v_V", p.set_v_V},
                         {"pulse.set_gate_V", p.set_gate_V},
                         {"pulse.reset_v_V", p.reset_v_V},
                         {"pulse.reset_gate_V", p.reset_gate_V}}) {
    if (r.lo < p.dac_v_min_V || r.hi > p.dac_v_max_V || r.lo < 0) {
      return fail(fmt::format("{}: [{}, {}] must lie in [0, dac.v_max_V = {}]", name, r.lo, r.hi,
                              p.dac_v_max_V));
    }
  }
  if (!(p.g_floor_uS > 0) || !(p.g_ceiling_uS > p.g_floor_uS)) {
    return fail("device: need 0 < g_floor_uS < g_ceiling_uS");
  }
  if (!(p.width_ref_ns > 0)) return fail("device.width_ref_ns must be > 0");
  if (!(p.relax_tau_s > 0)) return fail("relaxation.tau_s must be > 0");
  if (p.vmm_noise != "per_column" && p.vmm_noise != "per_device") {
    return fail(
        fmt::format("read_noise.vmm = '{}': allowed per_column or per_device", p.vmm_noise));
  }
  const double total = p.stuck_high.fraction + p.stuck_low.fraction + p.slow.fraction;
  for (auto [name, f] : {std::pair{"faults.stuck_high", p.stuck_high},
                         {"faults.stuck_low", p.stuck_low},
                         {"faults.slow", p.slow}}) {
    if (f.fraction < 0 || f.fraction > 1)
      return fail(fmt::format("{}.fraction = {}: allowed 0..1", name, f.fraction));
    if (f.count_hi > p.rows * p.cols)
      return fail(fmt::format("{}.count_per_array: at most {}", name, p.rows * p.cols));
  }
  if (total > 1) return fail(fmt::format("faults: fractions add up to {} > 1", total));
  if (!(p.slow_rate_factor > 0 && p.slow_rate_factor <= 1))
    return fail("faults.slow_rate_factor: allowed (0, 1]");
  if (p.read_row_us < 0 || p.pulse_overhead_us < 0 || p.vmm_plane_us < 0)
    return fail("timing: values must be >= 0");
  return {};
}

std::expected<ChipProfile, std::string> parse_profile_yaml(const std::string& yaml_text,
                                                           const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return std::unexpected(
        fmt::format("{}: YAML syntax error at line {}: {}", origin, e.mark.line + 1, e.msg));
  }
  ChipProfile p;
  Schema s = make_schema(p);
  if (auto r = bind_map(root, s, ""); !r) {
    return std::unexpected(fmt::format("{}: {}", origin, r.error()));
  }
  if (auto r = validate_profile(p); !r)
    return std::unexpected(fmt::format("{}: {}", origin, r.error()));
  return p;
}

std::vector<std::string> builtin_profile_names() {
  std::vector<std::string> names;
  for (const auto& bp : kBuiltinProfiles) names.emplace_back(bp.name);
  return names;
}

std::expected<ChipProfile, std::string> load_profile(const std::string& name_or_path) {
  const bool is_path = name_or_path.find('/') != std::string::npos ||
                       name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml");
  if (is_path) {
    std::ifstream in(name_or_path);
    if (!in) return std::unexpected(fmt::format("profile file {}: cannot open", name_or_path));
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_profile_yaml(ss.str(), name_or_path);
  }
  for (const auto& bp : kBuiltinProfiles) {
    if (bp.name == name_or_path)
      return parse_profile_yaml(std::string(bp.yaml), std::string(bp.name));
  }
  std::string names;
  for (const auto& n : builtin_profile_names()) names += (names.empty() ? "" : ", ") + n;
  return std::unexpected(fmt::format(
      "profile '{}': unknown (built-in: {}; or give a path to a .yaml file)", name_or_path, names));
}

}  // namespace xbar::twin
