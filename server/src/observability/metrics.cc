#include "observability/metrics.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cmath>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "deployment_state.h"
#include "xbar/status_names.h"

namespace xbar::server {

namespace {

bool valid_metric_name(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool valid_label_name(std::string_view s) {
  if (s.empty() || s.starts_with("__")) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

std::string_view type_name(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// HELP text: backslash and newline escaped.
void append_help(std::string& out, std::string_view s) {
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// Label values: backslash, double quote and newline escaped.
void append_label_value(std::string& out, std::string_view s) {
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// Go's ParseFloat accepts what this writes: shortest round-trip digits, +Inf, -Inf, NaN.
void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
}

// `{a="x",b="y"}` (plus `le` if given); nothing when there are no labels at all.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, std::string_view le = {}) {
  if (names.empty() && le.empty()) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    append_label_value(out, values[i]);
    out += '"';
  }
  if (!le.empty()) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<std::string>& names, const std::vector<std::string>& values,
                   double v, std::string_view le = {}) {
  out += name;
  out += suffix;
  append_labels(out, names, values, le);
  out += ' ';
  append_value(out, v);
  out += '\n';
}

void append_count(std::string& out, std::string_view name, std::string_view suffix,
                  const std::vector<std::string>& names, const std::vector<std::string>& values,
                  uint64_t n, std::string_view le = {}) {
  out += name;
  out += suffix;
  append_labels(out, names, values, le);
  fmt::format_to(std::back_inserter(out), " {}\n", n);
}

std::string format_value(double v) {
  std::string s;
  append_value(s, v);
  return s;
}

}  // namespace

// ---- children ----

void Counter::inc(double amount) noexcept {
  if (!(amount >= 0.0)) return;  // negative or NaN
  value_.fetch_add(amount, std::memory_order_relaxed);
}

void Gauge::inc(double amount) noexcept { value_.fetch_add(amount, std::memory_order_relaxed); }

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) noexcept {
  if (std::isnan(v)) return;
  // First bound >= v: buckets are inclusive upper bounds; past the last one is +Inf.
  const auto i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::cumulative_counts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

uint64_t Histogram::count() const { return cumulative_counts().back(); }

std::vector<double> default_latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,   0.25, 0.5,
          1.0,   2.5,    5.0,   10.0, 30.0,  60.0, 120.0, 300.0};
}

// ---- families ----

namespace detail {

FamilyBase::FamilyBase(MetricType type, std::string name, std::string help,
                       std::vector<std::string> label_names)
    : type_(type),
      name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)) {
  if (!valid_metric_name(name_)) {
    throw std::invalid_argument(fmt::format("invalid metric name '{}'", name_));
  }
  for (size_t i = 0; i < label_names_.size(); ++i) {
    const std::string& l = label_names_[i];
    if (!valid_label_name(l)) {
      throw std::invalid_argument(fmt::format("metric {}: invalid label name '{}'", name_, l));
    }
    if (type_ == MetricType::kHistogram && l == "le") {
      throw std::invalid_argument(fmt::format("metric {}: 'le' is reserved in histograms", name_));
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_names_[j] == l) {
        throw std::invalid_argument(fmt::format("metric {}: label '{}' twice", name_, l));
      }
    }
  }
}

void FamilyBase::render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  append_help(out, help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += type_name(type_);
  out += '\n';
  render_samples(out);
}

void FamilyBase::check_arity(size_t n) const {
  if (n != label_names_.size()) {
    throw std::invalid_argument(
        fmt::format("metric {}: {} label value(s) for {} label(s)", name_, n, label_names_.size()));
  }
}

}  // namespace detail

template <typename T>
Family<T>::Family(MetricType type, std::string name, std::string help,
                  std::vector<std::string> label_names, std::vector<double> bounds)
    : FamilyBase(type, std::move(name), std::move(help), std::move(label_names)),
      bounds_(std::move(bounds)) {
  if constexpr (std::is_same_v<T, Histogram>) {
    if (!bounds_.empty() && std::isinf(bounds_.back()) && bounds_.back() > 0) bounds_.pop_back();
    for (size_t i = 0; i < bounds_.size(); ++i) {
      if (!std::isfinite(bounds_[i]) || (i > 0 && !(bounds_[i] > bounds_[i - 1]))) {
        throw std::invalid_argument(fmt::format(
            "histogram {}: bucket bounds must be finite and strictly increasing", this->name()));
      }
    }
  } else if (!bounds_.empty()) {
    throw std::invalid_argument(
        fmt::format("metric {}: buckets without a histogram", this->name()));
  }
  if (this->label_names().empty()) get();  // an unlabelled family renders 0 from the start
}

template <typename T>
template <typename R>
T& Family<T>::lookup(const R& label_values) {
  check_arity(std::size(label_values));
  {
    std::shared_lock lk(mu_);
    if (auto it = children_.find(label_values); it != children_.end()) return *it->second;
  }
  std::unique_lock lk(mu_);
  auto it = children_.find(label_values);
  if (it == children_.end()) {
    std::unique_ptr<T> child;
    if constexpr (std::is_same_v<T, Histogram>) {
      child = std::make_unique<Histogram>(std::span<const double>(bounds_));
    } else {
      child = std::make_unique<T>();
    }
    it = children_
             .emplace(std::vector<std::string>(std::begin(label_values), std::end(label_values)),
                      std::move(child))
             .first;
  }
  return *it->second;
}

template <typename T>
T& Family<T>::with(std::initializer_list<std::string_view> label_values) {
  return lookup(label_values);
}

template <typename T>
T& Family<T>::with(std::span<const std::string> label_values) {
  return lookup(label_values);
}

template <typename T>
T& Family<T>::with(std::span<const std::string_view> label_values) {
  return lookup(label_values);
}

template <typename T>
void Family<T>::render_samples(std::string& out) const {
  std::shared_lock lk(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<T, Histogram>) {
      const std::vector<uint64_t> cum = child->cumulative_counts();
      for (size_t i = 0; i < bounds_.size(); ++i) {
        append_count(out, name(), "_bucket", label_names(), values, cum[i],
                     format_value(bounds_[i]));
      }
      append_count(out, name(), "_bucket", label_names(), values, cum.back(), "+Inf");
      append_sample(out, name(), "_sum", label_names(), values, child->sum());
      append_count(out, name(), "_count", label_names(), values, cum.back());
    } else {
      append_sample(out, name(), "", label_names(), values, child->value());
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- registry ----

Registry::~Registry() = default;

template <typename F>
F& Registry::add(std::unique_ptr<F> family) {
  F& ref = *family;
  std::unique_lock lk(mu_);
  const auto [it, inserted] = families_.try_emplace(family->name(), nullptr);
  if (!inserted) {
    throw std::invalid_argument(fmt::format("metric {} registered twice", family->name()));
  }
  it->second = std::move(family);
  return ref;
}

CounterFamily& Registry::counter(std::string name, std::string help,
                                 std::vector<std::string> label_names) {
  return add(std::make_unique<CounterFamily>(MetricType::kCounter, std::move(name), std::move(help),
                                             std::move(label_names)));
}

GaugeFamily& Registry::gauge(std::string name, std::string help,
                             std::vector<std::string> label_names) {
  return add(std::make_unique<GaugeFamily>(MetricType::kGauge, std::move(name), std::move(help),
                                           std::move(label_names)));
}

HistogramFamily& Registry::histogram(std::string name, std::string help,
                                     std::vector<std::string> label_names,
                                     std::vector<double> bounds) {
  return add(std::make_unique<HistogramFamily>(MetricType::kHistogram, std::move(name),
                                               std::move(help), std::move(label_names),
                                               std::move(bounds)));
}

std::string Registry::render() const {
  // Families are never removed: render them without the registry lock, so that a scrape never
  // holds up a registration.
  std::vector<const detail::FamilyBase*> families;
  {
    std::shared_lock lk(mu_);
    families.reserve(families_.size());
    for (const auto& [name, f] : families_) families.push_back(f.get());
  }
  std::string out;
  for (const detail::FamilyBase* f : families) f->render(out);
  return out;
}

// ---- xbard ----

XbardMetrics::XbardMetrics(Registry& registry, std::string_view version)
    : requests(registry.counter("xbar_requests_total",
                                "gRPC requests finished, by method and status code.",
                                {"method", "code"})),
      request_duration(registry.histogram("xbar_request_duration_seconds",
                                          "gRPC request latency in seconds, by method.",
                                          {"method"})),
      board_queue_depth(
          registry.gauge("xbar_board_queue_depth", "Requests waiting for the board.").get()),
      board_busy_seconds(registry
                             .counter("xbar_board_busy_seconds_total",
                                      "Seconds the board spent executing requests.")
                             .get()),
      loop_steps(
          registry.counter("xbar_loop_steps_total", "Closed-loop steps run on the board.").get()),
      pulses_applied(
          registry
              .counter("xbar_pulses_applied_total", "Programming pulses applied by program-verify.")
              .get()),
      devices_abandoned(registry
                            .counter("xbar_devices_abandoned_total",
                                     "Devices program-verify abandoned (out of rounds or pulses).")
                            .get()),
      active_streams(registry.gauge("xbar_active_streams", "Streaming RPCs open now.").get()),
      deployments(registry.gauge("xbar_deployments", "Kernel deployments, by state.", {"state"})),
      build_info(registry.gauge("xbar_build_info", "The xbard build; the value is always 1.",
                                {"version"})) {
  for (const DeploymentState state : kDeploymentStates) deployments.with({name(state)});
  build_info.with({version}).set(1.0);
}

void XbardMetrics::record_request(std::string_view method, int code, double seconds) {
  requests.with({method, xbar::status_code_name(code)}).inc();
  request_duration.with({method}).observe(seconds);
}

}  // namespace xbar::server
