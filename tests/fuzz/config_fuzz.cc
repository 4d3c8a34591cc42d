// YAML configuration: xbard's config (server/src/config.cc parse_config, configs/xbard.yaml)
// and the twin's chip profiles (twin/src/profile.cc parse_profile_yaml,
// configs/profiles/*.yaml, `--board sim:profile=PATH`). Every input is given to both parsers.
//
// Properties:
//  - parse_config: an accepted config satisfies every documented range (listen, backend and
//    address, log level, busy policy, queue, idle timeout, retention, program-verify window);
//    written back as YAML with every key (yaml-cpp's emitter) it parses to the same config (strings
//    that are not UTF-8 excepted: the emitter replaces them); a rejection's message starts with the
//    origin.
//  - parse_profile_yaml: an accepted profile passes validate_profile, and everything the twin's
//    INFO reply carries of it (Firmware's constructor: millivolts in u16/i16, gains in u32 ohms,
//    the pulse width step in u16 ns) fits its field: the host does every unit conversion from
//    INFO (docs/protocol.md §4.2), so a value that wraps is a wrong board.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <limits>

#include "config.h"
#include "fuzz_util.h"
#include "xbar/twin/profile.h"

using namespace xbar;

namespace {

std::string emit(const server::DaemonConfig& c) {
  const ProgramVerifyConfig& p = c.program_verify;
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e << YAML::BeginMap;
  e << YAML::Key << "listen" << YAML::Value << c.listen;
  e << YAML::Key << "board" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "backend" << YAML::Value << c.backend;
  e << YAML::Key << "profile" << YAML::Value << c.profile;
  e << YAML::Key << "seed" << YAML::Value << c.seed;
  e << YAML::Key << "noise_seed" << YAML::Value << c.noise_seed;
  e << YAML::Key << "address" << YAML::Value << c.address;
  e << YAML::Key << "serial" << YAML::Value << c.serial;
  e << YAML::EndMap;
  e << YAML::Key << "state_dir" << YAML::Value << c.state_dir;
  e << YAML::Key << "log_level" << YAML::Value << c.log_level;
  e << YAML::Key << "metrics_listen" << YAML::Value << c.metrics_listen;
  e << YAML::Key << "security" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "token_file" << YAML::Value << c.token_file;
  e << YAML::Key << "tls_cert" << YAML::Value << c.tls_cert;
  e << YAML::Key << "tls_key" << YAML::Value << c.tls_key;
  e << YAML::Key << "tls_client_ca" << YAML::Value << c.tls_client_ca;
  e << YAML::EndMap;
  e << YAML::Key << "scheduling" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "busy_policy" << YAML::Value << c.busy_policy;
  e << YAML::Key << "max_queue" << YAML::Value << c.max_queue;
  e << YAML::Key << "stream_idle_timeout_s" << YAML::Value << c.stream_idle_timeout_s;
  e << YAML::EndMap;
  e << YAML::Key << "retention" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "keep_inactive" << YAML::Value
    << (c.keep_inactive ? std::to_string(*c.keep_inactive) : std::string("all"));
  e << YAML::EndMap;
  e << YAML::Key << "program_verify" << YAML::Value << YAML::BeginMap;
  auto num = [&](const char* k, double v) { e << YAML::Key << k << YAML::Value << v; };
  num("tol_uS", p.tol_uS);
  num("tol_rel", p.tol_rel);
  num("verify_margin_uS", p.verify_margin_uS);
  num("reopen_margin_uS", p.reopen_margin_uS);
  num("max_rounds", p.max_rounds);
  num("max_wait_reads", p.max_wait_reads);
  num("max_retries", p.max_retries);
  num("verify_n_avg", p.verify.n_avg);
  num("verify_settle_ms", p.verify.settle_ms);
  num("verify_gain_index", p.verify.gain_index);
  num("target_min_uS", p.target_min_uS);
  num("target_max_uS", p.target_max_uS);
  num("set_v_V", p.set_v_V);
  num("set_compliance_uS_per_V", p.set_compliance_uS_per_V);
  num("set_gate_threshold_V", p.set_gate_threshold_V);
  num("reset_gate_V", p.reset_gate_V);
  num("reset_rate_per_V", p.reset_rate_per_V);
  num("reset_v_threshold_V", p.reset_v_threshold_V);
  num("width_ns", p.width_ns);
  num("reset_width_ns", p.reset_width_ns);
  e << YAML::EndMap;
  e << YAML::EndMap;
  return e.c_str();
}

std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

// yaml-cpp hands invalid UTF-8 through as it is; its emitter writes U+FFFD instead. Such a
// config (not YAML, strictly) is not expected to survive being written back.
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

bool all_utf8(const server::DaemonConfig& c) {
  for (const std::string* s : {&c.listen, &c.backend, &c.profile, &c.address, &c.serial,
                               &c.state_dir, &c.log_level, &c.metrics_listen, &c.token_file,
                               &c.tls_cert, &c.tls_key, &c.tls_client_ca, &c.busy_policy}) {
    if (!valid_utf8(*s)) return false;
  }
  return true;
}

// The first field that differs ("" if none), with both values.
std::string difference(const server::DaemonConfig& a, const server::DaemonConfig& b) {
  const ProgramVerifyConfig &p = a.program_verify, &q = b.program_verify;
  const std::pair<const char*, std::pair<std::string, std::string>> strings[] = {
      {"listen", {a.listen, b.listen}},
      {"board.backend", {a.backend, b.backend}},
      {"board.profile", {a.profile, b.profile}},
      {"board.address", {a.address, b.address}},
      {"board.serial", {a.serial, b.serial}},
      {"state_dir", {a.state_dir, b.state_dir}},
      {"log_level", {a.log_level, b.log_level}},
      {"metrics_listen", {a.metrics_listen, b.metrics_listen}},
      {"security.token_file", {a.token_file, b.token_file}},
      {"security.tls_cert", {a.tls_cert, b.tls_cert}},
      {"security.tls_key", {a.tls_key, b.tls_key}},
      {"security.tls_client_ca", {a.tls_client_ca, b.tls_client_ca}},
      {"scheduling.busy_policy", {a.busy_policy, b.busy_policy}}};
  for (const auto& [name, v] : strings) {
    if (v.first != v.second) {
      return fmt::format("{}: '{}' became '{}'", name, escaped(v.first), escaped(v.second));
    }
  }
  if (a.keep_inactive != b.keep_inactive) {
    auto text = [](const std::optional<uint64_t>& k) {
      return k ? std::to_string(*k) : std::string("all");
    };
    return fmt::format("retention.keep_inactive: {} became {}", text(a.keep_inactive),
                       text(b.keep_inactive));
  }
  const std::pair<const char*, std::pair<double, double>> numbers[] = {
      {"board.seed", {static_cast<double>(a.seed), static_cast<double>(b.seed)}},
      {"board.noise_seed", {static_cast<double>(a.noise_seed), static_cast<double>(b.noise_seed)}},
      {"scheduling.max_queue",
       {static_cast<double>(a.max_queue), static_cast<double>(b.max_queue)}},
      {"scheduling.stream_idle_timeout_s", {a.stream_idle_timeout_s, b.stream_idle_timeout_s}},
      {"tol_uS", {p.tol_uS, q.tol_uS}},
      {"tol_rel", {p.tol_rel, q.tol_rel}},
      {"verify_margin_uS", {p.verify_margin_uS, q.verify_margin_uS}},
      {"reopen_margin_uS", {p.reopen_margin_uS, q.reopen_margin_uS}},
      {"max_rounds", {p.max_rounds, q.max_rounds}},
      {"max_wait_reads", {p.max_wait_reads, q.max_wait_reads}},
      {"max_retries", {p.max_retries, q.max_retries}},
      {"verify_n_avg", {p.verify.n_avg, q.verify.n_avg}},
      {"verify_settle_ms", {p.verify.settle_ms, q.verify.settle_ms}},
      {"verify_gain_index", {p.verify.gain_index, q.verify.gain_index}},
      {"target_min_uS", {p.target_min_uS, q.target_min_uS}},
      {"target_max_uS", {p.target_max_uS, q.target_max_uS}},
      {"set_v_V", {p.set_v_V, q.set_v_V}},
      {"set_compliance_uS_per_V", {p.set_compliance_uS_per_V, q.set_compliance_uS_per_V}},
      {"set_gate_threshold_V", {p.set_gate_threshold_V, q.set_gate_threshold_V}},
      {"reset_gate_V", {p.reset_gate_V, q.reset_gate_V}},
      {"reset_rate_per_V", {p.reset_rate_per_V, q.reset_rate_per_V}},
      {"reset_v_threshold_V", {p.reset_v_threshold_V, q.reset_v_threshold_V}},
      {"width_ns", {p.width_ns, q.width_ns}},
      {"reset_width_ns", {p.reset_width_ns, q.reset_width_ns}}};
  for (const auto& [name, v] : numbers) {
    if (v.first != v.second) return fmt::format("{}: {} became {}", name, v.first, v.second);
  }
  return "";
}

void check_config(const std::string& text) {
  auto c = server::parse_config(text, "fuzz.yaml");
  if (!c) {
    FUZZ_CHECK(c.error().starts_with("fuzz.yaml: "), "config error without origin: " + c.error());
    return;
  }
  const ProgramVerifyConfig& p = c->program_verify;
  FUZZ_CHECK(c->backend == "sim" || c->backend == "socket" || c->backend == "usb", c->backend);
  FUZZ_CHECK(
      c->backend != "socket" || c->address.starts_with("tcp:") || c->address.starts_with("unix:"),
      c->address);
  FUZZ_CHECK(c->listen.find(':') != std::string::npos, c->listen);
  FUZZ_CHECK(c->busy_policy == "wait" || c->busy_policy == "refuse", c->busy_policy);
  FUZZ_CHECK(c->max_queue >= 1 && c->max_queue <= 1'000'000, std::to_string(c->max_queue));
  FUZZ_CHECK(c->stream_idle_timeout_s >= 0.1 && c->stream_idle_timeout_s <= 86400,
             std::to_string(c->stream_idle_timeout_s));
  FUZZ_CHECK(!c->keep_inactive || *c->keep_inactive <= 1'000'000,
             "retention.keep_inactive = " + std::to_string(*c->keep_inactive));
  FUZZ_CHECK(c->tls_cert.empty() == c->tls_key.empty(), "tls_cert without tls_key");
  FUZZ_CHECK(c->tls_client_ca.empty() || !c->tls_cert.empty(), "tls_client_ca without TLS");
  FUZZ_CHECK(p.target_min_uS < p.target_max_uS && p.tol_uS > 0 && p.max_rounds >= 1 &&
                 p.max_retries >= 1 && p.max_wait_reads >= 1 && p.verify.n_avg >= 1 &&
                 p.verify.n_avg <= 64 && p.verify.gain_index >= 0 && p.verify.gain_index <= 7 &&
                 p.verify.settle_ms >= 0 && p.width_ns >= 1 && p.reset_width_ns >= 1,
             "program_verify outside its documented ranges");
  FUZZ_CHECK(!c->board_uri().empty(), "empty board URI");

  if (!all_utf8(*c)) return;
  const std::string again_text = emit(*c);
  auto again = server::parse_config(again_text, "emitted");
  FUZZ_CHECK(again.has_value(),
             "an accepted config, written back, is refused: " + again.error() + "\n" + again_text);
  const std::string diff = difference(*c, *again);
  FUZZ_CHECK(diff.empty(), "config -> YAML -> config changed " + diff + "\n" + again_text);
}

// Does lround(v * 1000) fit [lo, hi] (Firmware's to_mV and its i16 cast)?
bool mV_fits(double v, double lo, double hi) {
  const double mV = std::round(v * 1000.0);
  return std::isfinite(mV) && mV >= lo && mV <= hi;
}

void check_profile(const std::string& text) {
  auto p = twin::parse_profile_yaml(text, "fuzz.yaml");
  if (!p) {
    FUZZ_CHECK(p.error().starts_with("fuzz.yaml"), "profile error without origin: " + p.error());
    return;
  }
  auto v = twin::validate_profile(*p);
  FUZZ_CHECK(v.has_value(), "parse_profile_yaml returned a profile validate_profile refuses: " +
                                (v ? std::string() : v.error()));
  // What Firmware::Firmware writes into InfoReply.
  for (double g : p->tia_gains_ohm) {
    FUZZ_CHECK(g >= 1 && g <= 4294967295.0,
               fmt::format("tia gain {} ohm does not fit INFO's u32 ohms", g));
  }
  const std::pair<const char*, double> u16_mV[] = {{"adc.v_lo_V", p->adc_v_lo_V},
                                                   {"adc.v_hi_V", p->adc_v_hi_V},
                                                   {"tia.v_ref_V", p->tia_v_ref_V},
                                                   {"read.v_read_V", p->v_read_V},
                                                   {"read.gate_V", p->read_gate_V},
                                                   {"pulse.set_v_V lo", p->set_v_V.lo},
                                                   {"pulse.set_v_V hi", p->set_v_V.hi},
                                                   {"pulse.set_gate_V lo", p->set_gate_V.lo},
                                                   {"pulse.set_gate_V hi", p->set_gate_V.hi},
                                                   {"pulse.reset_v_V lo", p->reset_v_V.lo},
                                                   {"pulse.reset_v_V hi", p->reset_v_V.hi},
                                                   {"pulse.reset_gate_V lo", p->reset_gate_V.lo},
                                                   {"pulse.reset_gate_V hi", p->reset_gate_V.hi}};
  for (const auto& [name, volts] : u16_mV) {
    FUZZ_CHECK(mV_fits(volts, 0, 65535),
               fmt::format("{} = {} V does not fit INFO's u16 millivolts", name, volts));
  }
  FUZZ_CHECK(mV_fits(p->dac_v_min_V, -32768, 32767) && mV_fits(p->dac_v_max_V, -32768, 32767),
             fmt::format("dac.v_min_V/v_max_V = {}/{} V do not fit INFO's i16 millivolts",
                         p->dac_v_min_V, p->dac_v_max_V));
  FUZZ_CHECK(p->width_step_ns <= 65535,
             fmt::format("pulse.width_step_ns = {} does not fit INFO's u16", p->width_step_ns));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(xbar::fuzz::as_text(data, size));
  check_config(text);
  check_profile(text);
  return 0;
}
