#include "xbar/drivers/transport_registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <mutex>

namespace xbar {

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, std::vector<TransportScheme>> schemes;  // more than one: a clash
};

// Constructed on first use: registrars in other files run during static initialisation, in
// an order the language leaves open.
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

TransportRegistrar::TransportRegistrar(std::string scheme, std::string usage,
                                       TransportOpener open) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.schemes[scheme].push_back(TransportScheme{scheme, std::move(usage), open});
}

std::vector<TransportScheme> registered_transports() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<TransportScheme> out;
  for (const auto& [name, s] : r.schemes) out.push_back(s.front());
  return out;
}

namespace {

// Two transports that registered one scheme: which one static initialisation ran first is not
// defined, so neither is used.
Result<void> check_unique(const std::string& uri, const std::string& scheme) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  const std::vector<TransportScheme>& all = r.schemes[scheme];
  if (all.size() == 1) return {};
  std::vector<std::string> forms;
  for (const TransportScheme& s : all) forms.push_back(s.usage);
  return make_error(ErrorCode::kInternal,
                    fmt::format("board URI '{}': {} transports registered the scheme '{}' ({}); "
                                "this program links one too many",
                                uri, all.size(), scheme, fmt::join(forms, ", ")));
}

}  // namespace

Result<std::unique_ptr<Transport>> open_transport(const std::string& uri) {
  const std::vector<TransportScheme> schemes = registered_transports();
  for (const TransportScheme& s : schemes) {
    if (uri == s.scheme || (uri.starts_with(s.scheme) && uri.size() > s.scheme.size() &&
                            uri[s.scheme.size()] == ':')) {
      if (auto unique = check_unique(uri, s.scheme); !unique) {
        return std::unexpected(unique.error());
      }
      return s.open(uri);
    }
  }
  std::vector<std::string> forms;
  for (const TransportScheme& s : schemes) forms.push_back(s.usage);
  if (forms.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("board URI '{}': this program links no board transport", uri));
  }
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("board URI '{}': expected {}", uri, fmt::join(forms, ", ")));
}

}  // namespace xbar
