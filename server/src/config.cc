#include "config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

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
  return n.Scalar();
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

std::string DaemonConfig::board_uri() const {
  if (backend == "sim") {
    return fmt::format("sim:profile={},seed={},noise_seed={}", profile, seed, noise_seed);
  }
  if (backend == "socket") return address;
  return serial.empty() ? "usb:" : "usb:serial=" + serial;
}

std::expected<DaemonConfig, std::string> parse_config(const std::string& yaml_text,
                                                      const std::string& origin) {
  auto fail = [&](const std::string& m) { return Err(fmt::format("{}: {}", origin, m)); };
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return fail(fmt::format("YAML syntax error at line {}: {}", e.mark.line + 1, e.msg));
  }
  DaemonConfig c;
  if (root.IsNull()) return c;
  if (auto r = check_keys(root, "<top>", {"listen", "board", "state_dir", "log_level"}); !r) {
    return fail(r.error());
  }
  auto str = [&](const YAML::Node& n, const std::string& key,
                 std::string& out) -> std::expected<void, std::string> {
    if (!n) return {};
    auto v = get_string(n, key);
    if (!v) return Err(v.error());
    out = *v;
    return {};
  };
  if (auto r = str(root["listen"], "listen", c.listen); !r) return fail(r.error());
  if (auto r = str(root["state_dir"], "state_dir", c.state_dir); !r) return fail(r.error());
  if (auto r = str(root["log_level"], "log_level", c.log_level); !r) return fail(r.error());
  if (const YAML::Node b = root["board"]) {
    if (auto r = check_keys(b, "board",
                            {"backend", "profile", "seed", "noise_seed", "address", "serial"});
        !r) {
      return fail(r.error());
    }
    if (auto r = str(b["backend"], "board.backend", c.backend); !r) return fail(r.error());
    if (auto r = str(b["profile"], "board.profile", c.profile); !r) return fail(r.error());
    if (auto r = str(b["address"], "board.address", c.address); !r) return fail(r.error());
    if (auto r = str(b["serial"], "board.serial", c.serial); !r) return fail(r.error());
    for (auto [key, out] : {std::pair{"seed", &c.seed}, {"noise_seed", &c.noise_seed}}) {
      if (!b[key]) continue;
      auto v = get_u64(b[key], std::string("board.") + key);
      if (!v) return fail(v.error());
      *out = *v;
    }
  }
  if (c.backend != "sim" && c.backend != "socket" && c.backend != "usb") {
    return fail(fmt::format("board.backend: '{}' is not one of sim, socket, usb", c.backend));
  }
  if (c.backend == "socket" && !c.address.starts_with("tcp:") && !c.address.starts_with("unix:")) {
    return fail(fmt::format("board.address: '{}': backend socket needs tcp:HOST:PORT or unix:PATH",
                            c.address));
  }
  if (c.listen.find(':') == std::string::npos && !c.listen.starts_with("unix:")) {
    return fail(fmt::format("listen: '{}': expected HOST:PORT or unix:PATH", c.listen));
  }
  static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  if (!kLevels.contains(c.log_level)) {
    return fail(fmt::format(
        "log_level: '{}': allowed trace, debug, info, warn, error, critical, off", c.log_level));
  }
  return c;
}

std::expected<DaemonConfig, std::string> load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Err(fmt::format("config {}: cannot open", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

}  // namespace xbar::server
