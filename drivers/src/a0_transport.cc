// The a0: transport (issue 20, docs/a0.md): the A0 DPE test board on its USB-CDC serial port,
// behind the same Transport as every other board. Protocol v1 frames go in; A0Bridge executes
// each as A0 commands on the port and the reply frame comes back from receive().
//
//   a0:/dev/ttyACM0                  a0:PATH[,key=value...]
//   a0:serial=S[,key=value...]       the port udev names /dev/serial/by-id/*_S-if*
//
// Keys (the configuration the host code leaves to the lab): serial_name (INFO's serial),
// v_read, v_ref, read_gate, set_v_max, set_gate_max, reset_v_max, reset_gate_max (volts),
// width_max (counter codes), timeout_ms, time_scale (twin only).
#include "xbar/drivers/a0_transport.h"

#include <fmt/format.h>

#include <deque>
#include <filesystem>

#include "xbar/drivers/transport.h"
#include "xbar/drivers/transport_registry.h"
#include "xbar/drivers/uri_params.h"

namespace xbar {

namespace {

constexpr const char* kUsage = "a0:PATH[,key=value...] or a0:serial=S[,key=value...]";

/// \context One thread at a time (ProtocolClient serialises its callers).
class A0Transport final : public Transport {
 public:
  A0Transport(std::unique_ptr<A0Link> link, A0Config config)
      : path_(link->name()), link_(std::move(link)), bridge_(*link_, std::move(config)) {}

  Result<void> start() { return bridge_.power_up(); }

  Result<void> send(std::span<const uint8_t> frame) override {
    auto reply = bridge_.execute(frame);
    if (!reply) return std::unexpected(reply.error());
    replies_.push_back(std::move(*reply));
    return {};
  }

  Result<std::vector<uint8_t>> receive(std::chrono::milliseconds) override {
    // The reply was built by send(): there is nothing to wait for.
    if (replies_.empty()) {
      return make_error(ErrorCode::kTimeout, fmt::format("a0 {}: no reply pending", path_));
    }
    std::vector<uint8_t> r = std::move(replies_.front());
    replies_.pop_front();
    return r;
  }

  std::string describe() const override {
    const A0Counters& c = bridge_.counters();
    return fmt::format("a0 {} ({} A0 commands, {} round trips so far)", path_, c.commands,
                       c.round_trips);
  }
  std::string kind() const override { return "a0"; }

  Result<void> reopen() override {
    replies_.clear();
    XBAR_RETURN_IF_ERROR(link_->reopen());
    return bridge_.power_up();
  }

 private:
  std::string path_;
  std::unique_ptr<A0Link> link_;
  A0Bridge bridge_;
  std::deque<std::vector<uint8_t>> replies_;
};

// udev's by-id names end in "_<ID_SERIAL_SHORT>-if<NN>" for USB serial devices.
Result<std::string> port_by_serial(const std::string& serial) {
  namespace fs = std::filesystem;
  const fs::path dir = "/dev/serial/by-id";
  std::error_code ec;
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find("_" + serial + "-if") != std::string::npos) found.push_back(e.path().string());
  }
  if (found.size() == 1) return found.front();
  if (found.empty()) {
    return make_error(ErrorCode::kNotFound,
                      fmt::format("a0:serial={}: no port in {} carries that serial{}", serial,
                                  dir.string(), ec ? " (" + ec.message() + ")" : ""));
  }
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("a0:serial={}: {} ports match ({}, ...): name one by path", serial,
                                found.size(), found.front()));
}

Result<void> apply_key(const std::string& uri, const std::string& k, const std::string& v,
                       A0Config& c) {
  auto number = [&](double& out, double lo, double hi, std::string_view what) -> Result<void> {
    auto x = parse_uri_number(uri, k, v, lo, hi, what);
    if (!x) return std::unexpected(x.error());
    out = *x;
    return {};
  };
  auto volts = [&](double& out, double lo, double hi) { return number(out, lo, hi, "volts"); };
  if (k == "serial_name") {
    c.serial = v;
    return {};
  }
  if (k == "v_read") return volts(c.v_read_V, 0.0, 1.0);
  if (k == "v_ref") return volts(c.v_ref_tia_V, 0.0, 2.0);
  if (k == "read_gate") return volts(c.read_gate_V, 0.0, 6.0);
  if (k == "set_v_max") return volts(c.set_v.hi_V, c.set_v.lo_V, 5.0);
  if (k == "set_gate_max") return volts(c.set_gate.hi_V, c.set_gate.lo_V, 6.0);
  if (k == "reset_v_max") return volts(c.reset_v.hi_V, c.reset_v.lo_V, 5.0);
  if (k == "reset_gate_max") return volts(c.reset_gate.hi_V, c.reset_gate.lo_V, 6.0);
  double x = 0;
  if (k == "width_max") {
    XBAR_RETURN_IF_ERROR(number(x, 1, 253, "a pulse-width counter code"));
    c.width_max_code = static_cast<uint16_t>(x);
  } else if (k == "timeout_ms") {
    XBAR_RETURN_IF_ERROR(number(x, 10, 60000, "milliseconds"));
    c.reply_timeout = std::chrono::milliseconds(static_cast<int64_t>(x));
  } else if (k == "time_scale") {
    XBAR_RETURN_IF_ERROR(number(x, 1e-3, 1e6, "a time scale"));
    c.time_scale = x;
  }
  return {};
}

Result<std::unique_ptr<Transport>> open_a0_uri(const std::string& uri) {
  std::string params = uri_params_of(uri, "a0");
  std::string path;
  // The first item is the port's path unless it is a key=value pair.
  const size_t comma = params.find(',');
  const std::string first = params.substr(0, comma);
  if (!first.empty() && first.find('=') == std::string::npos) {
    path = first;
    params = comma == std::string::npos ? "" : params.substr(comma + 1);
  }
  auto kv = parse_uri_params(
      uri, params,
      {"serial", "serial_name", "v_read", "v_ref", "read_gate", "set_v_max", "set_gate_max",
       "reset_v_max", "reset_gate_max", "width_max", "timeout_ms", "time_scale"});
  if (!kv) return std::unexpected(kv.error());
  A0Config config;
  for (const auto& [k, v] : *kv) {
    if (k == "serial") continue;
    XBAR_RETURN_IF_ERROR(apply_key(uri, k, v, config));
  }
  if (auto s = kv->find("serial"); s != kv->end()) {
    if (!path.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: a path and serial= both name the port: give one", uri));
    }
    auto p = port_by_serial(s->second);
    if (!p) return std::unexpected(p.error());
    path = *p;
    if (config.serial == "A0") config.serial = s->second;
  }
  if (path.empty()) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{}: no port: {}", uri, kUsage));
  }
  auto link = open_serial_link(path);
  if (!link) return std::unexpected(link.error());
  return make_a0_transport(std::move(*link), std::move(config));
}

}  // namespace

Result<std::unique_ptr<Transport>> make_a0_transport(std::unique_ptr<A0Link> link,
                                                     A0Config config) {
  auto t = std::make_unique<A0Transport>(std::move(link), std::move(config));
  XBAR_RETURN_IF_ERROR(t->start());
  return std::unique_ptr<Transport>(std::move(t));
}

XBAR_REGISTER_TRANSPORT(a0, "a0", kUsage, open_a0_uri);

}  // namespace xbar
