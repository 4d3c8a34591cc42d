#include "config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "xbar/base/error.h"  // XBAR_RETURN_IF_ERROR

namespace xbar::server {

namespace {

using Err = std::unexpected<std::string>;

std::string describe(const YAML::Node& n) {
  if (n.IsMap()) return "a mapping";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "nothing";
  return fmt::format("'{}'", n.Scalar());
}

std::expected<std::string, std::string> get_string(const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) return Err(fmt::format("{}: expected a string, got {}", key, describe(n)));
  // Addresses, paths and names: a control character (a stray CR from a Windows editor, a tab)
  // is never meant, and would not survive the file being written back (found by config_fuzz).
  const std::string& v = n.Scalar();
  for (size_t i = 0; i < v.size(); ++i) {
    const auto ch = static_cast<unsigned char>(v[i]);
    if (ch < 0x20 || ch == 0x7f) {
      return Err(fmt::format("{}: control character 0x{:02x} at byte {}: not allowed", key, ch, i));
    }
  }
  return v;
}

std::expected<uint64_t, std::string> get_u64(const YAML::Node& n, const std::string& key) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() <= 19) {
      return std::stoull(s);
    }
  }
  return Err(fmt::format("{}: expected an unsigned integer, got {}", key, describe(n)));
}

std::expected<void, std::string> check_keys(const YAML::Node& n, const std::string& where,
                                            const std::set<std::string>& allowed) {
  if (!n.IsMap()) return Err(fmt::format("{}: expected a mapping, got {}", where, describe(n)));
  for (const auto& kv : n) {
    const std::string k = kv.first.Scalar();
    if (!allowed.contains(k)) {
      std::string names;
      for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
      return Err(fmt::format("{}{}: unknown key (allowed: {})", where == "<top>" ? "" : where + ".",
                             k, names));
    }
  }
  return {};
}

}  // namespace

std::expected<std::optional<uint64_t>, std::string> parse_keep_inactive(const std::string& text,
                                                                        const std::string& key) {
  if (text == "all") return std::nullopt;
  constexpr uint64_t kMax = 1'000'000;
  if (!text.empty() && text.size() <= 7 &&
      text.find_first_not_of("0123456789") == std::string::npos) {
    const uint64_t v = std::stoull(text);
    if (v <= kMax) return v;
  }
  return Err(fmt::format(
      "{}: '{}': allowed 0..{} (inactive deployments kept whole per chip), or all (retention off)",
      key, text, kMax));
}

std::string DaemonConfig::board_uri() const {
  if (backend == "sim") {
    return fmt::format("sim:profile={},seed={},noise_seed={}", profile, seed, noise_seed);
  }
  if (backend == "socket") return address;
  return serial.empty() ? "usb:" : "usb:serial=" + serial;
}

namespace {

using Status = std::expected<void, std::string>;

// A string setting: left as it was when absent.
Status read_string(const YAML::Node& n, const std::string& key, std::string& out) {
  if (!n) return {};
  auto v = get_string(n, key);
  if (!v) return Err(v.error());
  out = *v;
  return {};
}

// A number in [lo, hi], as a double.
std::expected<double, std::string> read_number(const YAML::Node& v, const std::string& key,
                                               double lo, double hi) {
  double x = 0;
  try {
    if (!v.IsScalar()) throw YAML::Exception(YAML::Mark::null_mark(), "");
    x = v.as<double>();
  } catch (const YAML::Exception&) {
    return Err(fmt::format("{}: expected a number, got {}", key, describe(v)));
  }
  if (!(x >= lo && x <= hi)) return Err(fmt::format("{} = {}: allowed {}..{}", key, x, lo, hi));
  return x;
}

Status parse_security(const YAML::Node& s, DaemonConfig& c) {
  XBAR_RETURN_IF_ERROR(
      check_keys(s, "security", {"token_file", "tls_cert", "tls_key", "tls_client_ca"}));
  for (auto [key, out] : {std::pair{"token_file", &c.token_file},
                          {"tls_cert", &c.tls_cert},
                          {"tls_key", &c.tls_key},
                          {"tls_client_ca", &c.tls_client_ca}}) {
    XBAR_RETURN_IF_ERROR(read_string(s[key], std::string("security.") + key, *out));
  }
  return {};
}

Status parse_scheduling(const YAML::Node& s, DaemonConfig& c) {
  XBAR_RETURN_IF_ERROR(
      check_keys(s, "scheduling", {"busy_policy", "max_queue", "stream_idle_timeout_s"}));
  XBAR_RETURN_IF_ERROR(read_string(s["busy_policy"], "scheduling.busy_policy", c.busy_policy));
  if (s["max_queue"]) {
    auto v = get_u64(s["max_queue"], "scheduling.max_queue");
    if (!v) return Err(v.error());
    if (*v < 1 || *v > 1'000'000) {
      return Err(fmt::format("scheduling.max_queue = {}: allowed 1..1000000", *v));
    }
    c.max_queue = *v;
  }
  if (const YAML::Node t = s["stream_idle_timeout_s"]) {
    auto x = read_number(t, "scheduling.stream_idle_timeout_s", 0.1, 86400);
    if (!x) return Err(x.error());
    c.stream_idle_timeout_s = *x;
  }
  return {};
}

Status parse_retention(const YAML::Node& s, DaemonConfig& c) {
  XBAR_RETURN_IF_ERROR(check_keys(s, "retention", {"keep_inactive"}));
  if (const YAML::Node k = s["keep_inactive"]) {
    if (!k.IsScalar()) {
      return Err(
          fmt::format("retention.keep_inactive: expected a count or all, got {}", describe(k)));
    }
    auto v = parse_keep_inactive(k.Scalar(), "retention.keep_inactive");
    if (!v) return Err(v.error());
    c.keep_inactive = *v;
  }
  return {};
}

Status parse_board(const YAML::Node& b, DaemonConfig& c) {
  XBAR_RETURN_IF_ERROR(
      check_keys(b, "board", {"backend", "profile", "seed", "noise_seed", "address", "serial"}));
  XBAR_RETURN_IF_ERROR(read_string(b["backend"], "board.backend", c.backend));
  XBAR_RETURN_IF_ERROR(read_string(b["profile"], "board.profile", c.profile));
  XBAR_RETURN_IF_ERROR(read_string(b["address"], "board.address", c.address));
  XBAR_RETURN_IF_ERROR(read_string(b["serial"], "board.serial", c.serial));
  for (auto [key, out] : {std::pair{"seed", &c.seed}, {"noise_seed", &c.noise_seed}}) {
    if (!b[key]) continue;
    auto v = get_u64(b[key], std::string("board.") + key);
    if (!v) return Err(v.error());
    *out = *v;
  }
  return {};
}

Status parse_program_verify(const YAML::Node& pv, ProgramVerifyConfig& p) {
  struct Num {
    const char* key;
    double* out;
    double lo, hi;
  };
  double n_avg = p.verify.n_avg, settle_ms = p.verify.settle_ms, gain = p.verify.gain_index;
  double max_rounds = p.max_rounds, max_retries = p.max_retries, max_wait = p.max_wait_reads;
  const Num nums[] = {
      {"tol_uS", &p.tol_uS, 1e-3, 100},
      {"tol_rel", &p.tol_rel, 0, 1},
      {"verify_margin_uS", &p.verify_margin_uS, 0, 50},
      {"reopen_margin_uS", &p.reopen_margin_uS, 0, 50},
      {"max_rounds", &max_rounds, 1, 1000},
      {"max_wait_reads", &max_wait, 1, 100},
      {"max_retries", &max_retries, 1, 100},
      {"verify_n_avg", &n_avg, 1, 64},
      {"verify_settle_ms", &settle_ms, 0, 10000},
      {"verify_gain_index", &gain, 0, 7},
      {"target_min_uS", &p.target_min_uS, 0, 1e4},
      {"target_max_uS", &p.target_max_uS, 0, 1e4},
      {"set_v_V", &p.set_v_V, 0, 10},
      {"set_compliance_uS_per_V", &p.set_compliance_uS_per_V, 1, 1e4},
      {"set_gate_threshold_V", &p.set_gate_threshold_V, 0, 5},
      {"reset_gate_V", &p.reset_gate_V, 0, 10},
      {"reset_rate_per_V", &p.reset_rate_per_V, 1e-3, 100},
      {"reset_v_threshold_V", &p.reset_v_threshold_V, 0, 5},
      {"width_ns", &p.width_ns, 1, 1e6},
      {"reset_width_ns", &p.reset_width_ns, 1, 1e6},
  };
  std::set<std::string> keys;
  for (const Num& n : nums) keys.insert(n.key);
  XBAR_RETURN_IF_ERROR(check_keys(pv, "program_verify", keys));
  for (const Num& n : nums) {
    const YAML::Node v = pv[n.key];
    if (!v) continue;
    auto x = read_number(v, std::string("program_verify.") + n.key, n.lo, n.hi);
    if (!x) return Err(x.error());
    *n.out = *x;
  }
  p.max_rounds = static_cast<int>(max_rounds);
  p.max_retries = static_cast<int>(max_retries);
  p.max_wait_reads = static_cast<int>(max_wait);
  p.verify.n_avg = static_cast<int>(n_avg);
  p.verify.settle_ms = static_cast<int>(settle_ms);
  p.verify.gain_index = static_cast<int>(gain);
  if (p.target_max_uS <= p.target_min_uS) {
    return Err("program_verify.target_max_uS must be > target_min_uS");
  }
  return {};
}

Status parse_sections(const YAML::Node& root, DaemonConfig& c) {
  XBAR_RETURN_IF_ERROR(check_keys(root, "<top>",
                                  {"listen", "board", "state_dir", "log_level", "program_verify",
                                   "metrics_listen", "security", "scheduling", "retention"}));
  XBAR_RETURN_IF_ERROR(read_string(root["listen"], "listen", c.listen));
  XBAR_RETURN_IF_ERROR(read_string(root["state_dir"], "state_dir", c.state_dir));
  XBAR_RETURN_IF_ERROR(read_string(root["log_level"], "log_level", c.log_level));
  XBAR_RETURN_IF_ERROR(read_string(root["metrics_listen"], "metrics_listen", c.metrics_listen));
  // A section may hold only comments (null).
  if (const YAML::Node s = root["security"]; s && !s.IsNull()) {
    XBAR_RETURN_IF_ERROR(parse_security(s, c));
  }
  if (const YAML::Node s = root["scheduling"]; s && !s.IsNull()) {
    XBAR_RETURN_IF_ERROR(parse_scheduling(s, c));
  }
  if (const YAML::Node s = root["retention"]; s && !s.IsNull()) {
    XBAR_RETURN_IF_ERROR(parse_retention(s, c));
  }
  if (const YAML::Node b = root["board"]) XBAR_RETURN_IF_ERROR(parse_board(b, c));
  if (const YAML::Node pv = root["program_verify"]) {
    XBAR_RETURN_IF_ERROR(parse_program_verify(pv, c.program_verify));
  }
  return check_settings(c);
}

}  // namespace

std::expected<DaemonConfig, std::string> parse_config(const std::string& yaml_text,
                                                      const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return Err(fmt::format("{}: YAML syntax error at line {}: {}", origin, e.mark.line + 1, e.msg));
  }
  DaemonConfig c;
  if (root.IsNull()) return c;
  if (auto r = parse_sections(root, c); !r) return Err(fmt::format("{}: {}", origin, r.error()));
  return c;
}

std::expected<void, std::string> check_settings(const DaemonConfig& c) {
  if (c.backend != "sim" && c.backend != "socket" && c.backend != "usb") {
    return Err(fmt::format("board.backend: '{}' is not one of sim, socket, usb", c.backend));
  }
  if (c.backend == "socket" && !c.address.starts_with("tcp:") && !c.address.starts_with("unix:")) {
    return Err(fmt::format("board.address: '{}': backend socket needs tcp:HOST:PORT or unix:PATH",
                           c.address));
  }
  if (c.listen.find(':') == std::string::npos && !c.listen.starts_with("unix:")) {
    return Err(fmt::format("listen: '{}': expected HOST:PORT or unix:PATH", c.listen));
  }
  static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  if (!kLevels.contains(c.log_level)) {
    return Err(fmt::format(
        "log_level: '{}': allowed trace, debug, info, warn, error, critical, off", c.log_level));
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return Err(
        "security.tls_cert and security.tls_key (--tls-cert, --tls-key): give both or "
        "neither");
  }
  if (!c.tls_client_ca.empty() && c.tls_cert.empty()) {
    return Err(
        "security.tls_client_ca (--tls-client-ca): needs tls_cert and tls_key (mTLS is "
        "TLS first)");
  }
  if (c.busy_policy != "wait" && c.busy_policy != "refuse") {
    return Err(fmt::format("scheduling.busy_policy (--busy-policy): '{}': allowed wait, refuse",
                           c.busy_policy));
  }
  return {};
}

std::expected<DaemonConfig, std::string> load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Err(fmt::format("config {}: cannot open", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

}  // namespace xbar::server
