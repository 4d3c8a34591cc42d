// Board::open: the URI picks the transport (libiio's idea: one API, backends by prefix).
#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <map>

#include "xbar/drivers/board.h"
#include "xbar/drivers/inprocess_transport.h"
#include "xbar/drivers/socket_transport.h"
#include "xbar/drivers/usb_transport.h"
#include "xbar/fwsim/profile.h"

namespace xbar {

namespace {

/// Parses "k=v,k=v" into a map, rejecting keys outside `allowed`.
Result<std::map<std::string, std::string>> parse_params(
    const std::string& uri, const std::string& params, std::initializer_list<std::string> allowed) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < params.size()) {
    size_t end = params.find(',', pos);
    if (end == std::string::npos) end = params.size();
    const std::string kv = params.substr(pos, end - pos);
    pos = end + 1;
    if (kv.empty()) continue;
    const auto eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    if (eq == std::string::npos) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("board URI '{}': '{}' needs a value (key=value)", uri, kv));
    }
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string names;
      for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
      return make_error(
          ErrorCode::kInvalidArgument,
          fmt::format("board URI '{}': unknown key '{}' (allowed: {})", uri, key, names));
    }
    out[key] = kv.substr(eq + 1);
  }
  return out;
}

Result<uint64_t> parse_u64(const std::string& uri, const std::string& key, const std::string& v) {
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("board URI '{}': {} = '{}': expected an unsigned integer", uri, key, v));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Board>> Board::open(const std::string& uri) {
  if (uri == "sim" || uri.starts_with("sim:")) {
    auto params =
        parse_params(uri, uri.size() > 4 ? uri.substr(4) : "",
                     {"profile", "seed", "noise_seed", "stuck", "adc_bits", "link_drop_request",
                      "link_corrupt_request", "link_drop_reply", "link_corrupt_reply", "link_dup",
                      "link_delay", "link_restart", "link_unplug", "link_unplug_ms", "link_seed"});
    if (!params) return std::unexpected(params.error());
    const std::string profile_name = params->contains("profile") ? (*params)["profile"] : "typical";
    auto profile = fwsim::load_profile(profile_name);
    if (!profile) return make_error(ErrorCode::kInvalidArgument, profile.error());
    fwsim::FirmwareOptions opts;
    if (params->contains("seed")) {
      auto s = parse_u64(uri, "seed", (*params)["seed"]);
      if (!s) return std::unexpected(s.error());
      opts.chip_seed = *s;
    }
    if (params->contains("noise_seed")) {
      auto s = parse_u64(uri, "noise_seed", (*params)["noise_seed"]);
      if (!s) return std::unexpected(s.error());
      opts.noise_seed = *s;
    }
    if (params->contains("stuck")) {
      // Replaces the profile's stuck devices by a fraction of all devices, half stuck-high and
      // half stuck-low (0: the same chip without stuck devices, for comparisons).
      const std::string& v = (*params)["stuck"];
      char* end = nullptr;
      const double f = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(f >= 0 && f <= 0.5)) {
        return make_error(
            ErrorCode::kInvalidArgument,
            fmt::format("board URI '{}': stuck = '{}': allowed 0..0.5 (a fraction)", uri, v));
      }
      profile->stuck_high = {f / 2, 0, 0};
      profile->stuck_low = {f / 2, 0, 0};
    }
    if (params->contains("adc_bits")) {
      // The converter at another resolution (e.g. 16: "full resolution" for parity tests).
      auto bits = parse_u64(uri, "adc_bits", (*params)["adc_bits"]);
      if (!bits) return std::unexpected(bits.error());
      if (*bits < 4 || *bits > 20) {
        return make_error(ErrorCode::kInvalidArgument,
                          fmt::format("board URI '{}': adc_bits = {}: allowed 4..20", uri, *bits));
      }
      profile->adc_bits = static_cast<int>(*bits);
    }
    // The link's faults (docs/protocol.md §4.12): probabilities per frame, 0..0.5.
    const std::pair<const char*, uint16_t wire::LinkFaults::*> link_keys[] = {
        {"link_drop_request", &wire::LinkFaults::drop_request},
        {"link_corrupt_request", &wire::LinkFaults::corrupt_request},
        {"link_drop_reply", &wire::LinkFaults::drop_reply},
        {"link_corrupt_reply", &wire::LinkFaults::corrupt_reply},
        {"link_dup", &wire::LinkFaults::duplicate_reply},
        {"link_delay", &wire::LinkFaults::delay_reply},
        {"link_restart", &wire::LinkFaults::restart},
        {"link_unplug", &wire::LinkFaults::unplug}};
    for (const auto& [key, field] : link_keys) {
      if (!params->contains(key)) continue;
      const std::string& v = (*params)[key];
      char* end = nullptr;
      const double p = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(p >= 0 && p <= 0.5)) {
        return make_error(
            ErrorCode::kInvalidArgument,
            fmt::format("board URI '{}': {} = '{}': allowed 0..0.5 (a probability)", uri, key, v));
      }
      opts.link.*field = static_cast<uint16_t>(std::lround(p * 65536));
    }
    if (params->contains("link_unplug_ms")) {
      auto ms = parse_u64(uri, "link_unplug_ms", (*params)["link_unplug_ms"]);
      if (!ms) return std::unexpected(ms.error());
      if (*ms > 60000) {
        return make_error(
            ErrorCode::kInvalidArgument,
            fmt::format("board URI '{}': link_unplug_ms = {}: allowed 0..60000", uri, *ms));
      }
      opts.link.unplug_ms = static_cast<uint16_t>(*ms);
    } else if (opts.link.unplug) {
      opts.link.unplug_ms = 200;  // a USB board re-enumerates in about that time
    }
    if (params->contains("link_seed")) {
      auto s = parse_u64(uri, "link_seed", (*params)["link_seed"]);
      if (!s) return std::unexpected(s.error());
      opts.link.seed = *s;
    }
    auto fw = std::make_shared<fwsim::Firmware>(std::move(*profile), opts);
    return connect(std::make_unique<InProcessTransport>(std::move(fw)));
  }
  if (uri.starts_with("tcp:") || uri.starts_with("unix:")) {
    auto t = SocketTransport::connect(uri);
    if (!t) return std::unexpected(t.error());
    return connect(std::move(*t));
  }
  if (uri == "usb" || uri.starts_with("usb:")) {
    auto params = parse_params(uri, uri.size() > 4 ? uri.substr(4) : "", {"serial"});
    if (!params) return std::unexpected(params.error());
    UsbSelector sel;
    if (params->contains("serial")) sel.serial = (*params)["serial"];
    auto t = UsbTransport::open(sel);
    if (!t) return std::unexpected(t.error());
    return connect(std::move(*t));
  }
  return make_error(
      ErrorCode::kInvalidArgument,
      fmt::format("board URI '{}': expected sim:[profile=P,seed=N,noise_seed=N,stuck=F,adc_bits=B,"
                  "link_*=P,link_unplug_ms=MS,link_seed=N], "
                  "tcp:HOST:PORT, unix:PATH or usb:[serial=S]",
                  uri));
}

}  // namespace xbar
