// The twin's `sim:` board URI: a Firmware built from a chip profile and the URI's options,
// linked into this process (InProcessTransport). Registered with the driver layer's
// transport registry, so that only programs that link the twin can open one.
#include <fmt/format.h>

#include <cmath>

#include "xbar/drivers/transport_registry.h"
#include "xbar/drivers/uri_params.h"
#include "xbar/twin/inprocess_transport.h"
#include "xbar/twin/profile.h"

namespace xbar::twin {

namespace {

using Params = std::map<std::string, std::string>;

// The profile the URI names, with its `stuck` and `adc_bits` overrides.
Result<ChipProfile> sim_profile(const std::string& uri, Params& params) {
  auto profile = load_profile(params.contains("profile") ? params["profile"] : "typical");
  if (!profile) return make_error(ErrorCode::kInvalidArgument, profile.error());
  if (params.contains("stuck")) {
    // Replaces the profile's stuck devices by a fraction of all devices, half stuck-high and
    // half stuck-low (0: the same chip without stuck devices, for comparisons).
    auto f = parse_uri_number(uri, "stuck", params["stuck"], 0, 0.5, "a fraction");
    if (!f) return std::unexpected(f.error());
    profile->stuck_high = {*f / 2, 0, 0};
    profile->stuck_low = {*f / 2, 0, 0};
  }
  if (params.contains("adc_bits")) {
    // The converter at another resolution (e.g. 16: "full resolution" for parity tests).
    auto bits = parse_uri_u64(uri, "adc_bits", params["adc_bits"]);
    if (!bits) return std::unexpected(bits.error());
    if (*bits < 4 || *bits > 20) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("board URI '{}': adc_bits = {}: allowed 4..20", uri, *bits));
    }
    profile->adc_bits = static_cast<int>(*bits);
  }
  return std::move(*profile);
}

// The link's faults (docs/protocol.md §4.12): probabilities per frame, 0..0.5.
Result<void> sim_link_faults(const std::string& uri, Params& params, wire::LinkFaults& link) {
  const std::pair<const char*, uint16_t wire::LinkFaults::*> keys[] = {
      {"link_drop_request", &wire::LinkFaults::drop_request},
      {"link_corrupt_request", &wire::LinkFaults::corrupt_request},
      {"link_drop_reply", &wire::LinkFaults::drop_reply},
      {"link_corrupt_reply", &wire::LinkFaults::corrupt_reply},
      {"link_dup", &wire::LinkFaults::duplicate_reply},
      {"link_delay", &wire::LinkFaults::delay_reply},
      {"link_restart", &wire::LinkFaults::restart},
      {"link_unplug", &wire::LinkFaults::unplug}};
  for (const auto& [key, field] : keys) {
    if (!params.contains(key)) continue;
    auto p = parse_uri_number(uri, key, params[key], 0, 0.5, "a probability");
    if (!p) return std::unexpected(p.error());
    link.*field = static_cast<uint16_t>(std::lround(*p * 65536));
  }
  if (params.contains("link_unplug_ms")) {
    auto ms = parse_uri_u64(uri, "link_unplug_ms", params["link_unplug_ms"]);
    if (!ms) return std::unexpected(ms.error());
    if (*ms > 60000) {
      return make_error(
          ErrorCode::kInvalidArgument,
          fmt::format("board URI '{}': link_unplug_ms = {}: allowed 0..60000", uri, *ms));
    }
    link.unplug_ms = static_cast<uint16_t>(*ms);
  } else if (link.unplug) {
    link.unplug_ms = 200;  // a USB board re-enumerates in about that time
  }
  if (params.contains("link_seed")) {
    auto s = parse_uri_u64(uri, "link_seed", params["link_seed"]);
    if (!s) return std::unexpected(s.error());
    link.seed = *s;
  }
  return {};
}

Result<std::unique_ptr<Transport>> open_sim_uri(const std::string& uri) {
  auto params = parse_uri_params(
      uri, uri_params_of(uri, "sim"),
      {"profile", "seed", "noise_seed", "stuck", "adc_bits", "link_drop_request",
       "link_corrupt_request", "link_drop_reply", "link_corrupt_reply", "link_dup", "link_delay",
       "link_restart", "link_unplug", "link_unplug_ms", "link_seed"});
  if (!params) return std::unexpected(params.error());
  auto profile = sim_profile(uri, *params);
  if (!profile) return std::unexpected(profile.error());
  FirmwareOptions opts;
  for (auto [key, seed] : {std::pair{"seed", &opts.chip_seed}, {"noise_seed", &opts.noise_seed}}) {
    if (!params->contains(key)) continue;
    auto s = parse_uri_u64(uri, key, (*params)[key]);
    if (!s) return std::unexpected(s.error());
    *seed = *s;
  }
  if (auto link = sim_link_faults(uri, *params, opts.link); !link) {
    return std::unexpected(link.error());
  }
  auto fw = std::make_shared<Firmware>(std::move(*profile), opts);
  return std::unique_ptr<Transport>(std::make_unique<InProcessTransport>(std::move(fw)));
}

}  // namespace

XBAR_REGISTER_TRANSPORT(sim, "sim",
                        "sim:[profile=P,seed=N,noise_seed=N,stuck=F,adc_bits=B,link_*=P,"
                        "link_unplug_ms=MS,link_seed=N]",
                        open_sim_uri);

}  // namespace xbar::twin
