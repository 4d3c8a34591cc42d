// A small thread-safe Prometheus metrics registry (text exposition format 0.0.4) and the
// families xbard exports.
//
// Families (a name, a help text, label names) own children, one per tuple of label values.
// Looking a child up takes the family's shared lock (an exclusive one the first time a tuple is
// seen); updating a child is a lock-free atomic. Children live as long as the registry, so hot
// paths look a child up once and keep the reference:
//
//   Registry reg;
//   XbardMetrics m(reg, "0.1.0");
//   Counter& steps = m.loop_steps;                    // unlabelled: a child of its own
//   steps.inc(64);
//   m.requests.with({"BoardService/GetBoardInfo", "OK"}).inc();
//   m.request_duration.with({"BoardService/GetBoardInfo"}).observe(0.0012);
//   std::string text = reg.render();                  // what GET /metrics returns
//
// Misuse that is a programming error (an invalid or duplicate metric name, invalid label names,
// the wrong number of label values, unsorted histogram buckets) throws std::invalid_argument.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace xbar::server {

enum class MetricType { kCounter, kGauge, kHistogram };

/// A monotonically increasing value. inc() with a negative or NaN amount does nothing.
class Counter {
 public:
  void inc(double amount = 1.0) noexcept;
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

/// A value that goes up and down.
class Gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void inc(double amount = 1.0) noexcept;
  void dec(double amount = 1.0) noexcept { inc(-amount); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

/// Observations counted into fixed buckets (upper bounds, inclusive: v <= le), plus their sum
/// and count. NaN observations are ignored. A scrape concurrent with observe() may see the sum
/// lag the buckets by that one observation; _count is always the +Inf bucket.
class Histogram {
 public:
  /// `bounds`: strictly increasing, finite (the family checks this).
  explicit Histogram(std::span<const double> bounds);
  void observe(double v) noexcept;

  std::span<const double> bounds() const noexcept { return bounds_; }
  /// Cumulative counts, one per bound, then the +Inf bucket (= the count).
  std::vector<uint64_t> cumulative_counts() const;
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const;

 private:
  std::span<const double> bounds_;                   // owned by the family
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; +Inf last
  std::atomic<double> sum_{0.0};
};

/// Buckets for request latencies in seconds: 1 ms .. 300 s (program-verify and scans are long).
std::vector<double> default_latency_buckets();

namespace detail {

/// Orders label-value tuples of std::string or std::string_view alike (lookups without copies).
struct LabelValuesLess {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};

class FamilyBase {
 public:
  FamilyBase(MetricType type, std::string name, std::string help,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  /// Appends the HELP and TYPE lines and every sample.
  void render(std::string& out) const;

 protected:
  virtual void render_samples(std::string& out) const = 0;
  void check_arity(size_t n) const;

 private:
  MetricType type_;
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
};

}  // namespace detail

/// A family of children of type T (Counter, Gauge or Histogram), one per label-value tuple.
template <typename T>
class Family final : public detail::FamilyBase {
 public:
  /// The child for these label values (in label-name order), created at zero the first time.
  /// The reference stays valid as long as the registry.
  T& with(std::initializer_list<std::string_view> label_values);
  T& with(std::span<const std::string> label_values);
  T& with(std::span<const std::string_view> label_values);
  /// The child of an unlabelled family.
  T& get() { return with(std::span<const std::string_view>{}); }

  /// Histogram families only: the bucket bounds every child uses.
  std::span<const double> bounds() const { return bounds_; }

  // Public for the registry's make_unique; use Registry::counter/gauge/histogram.
  Family(MetricType type, std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {});

 private:
  template <typename R>
  T& lookup(const R& label_values);
  void render_samples(std::string& out) const override;

  std::vector<double> bounds_;
  mutable std::shared_mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>, detail::LabelValuesLess> children_;
};

// Defined in metrics.cc for these three.
extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

/// Holds the families and renders them, sorted by name, in the text exposition format 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/). Thread-safe; families are
/// never removed.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry();

  /// Registers a family. Names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names [a-zA-Z_][a-zA-Z0-9_]*,
  /// not starting with "__", distinct, and not "le" for histograms. An unlabelled family gets
  /// its child at once (it renders 0 before the first update); a labelled family renders only
  /// the children created so far (HELP and TYPE alone if none).
  CounterFamily& counter(std::string name, std::string help,
                         std::vector<std::string> label_names = {});
  GaugeFamily& gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  /// `bounds`: strictly increasing finite upper bounds; a trailing +Inf is dropped (implicit).
  HistogramFamily& histogram(std::string name, std::string help,
                             std::vector<std::string> label_names,
                             std::vector<double> bounds = default_latency_buckets());

  /// Every family, sorted by name; ends with a newline (empty string if there are none).
  std::string render() const;

 private:
  template <typename F>
  F& add(std::unique_ptr<F> family);

  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<detail::FamilyBase>, std::less<>> families_;
};

/// The families xbard exports, registered in `registry` by the constructor (which can run only
/// once per registry: the names are taken). Members are references into the registry.
struct XbardMetrics {
  /// `version`: the daemon's version, exported as xbar_build_info{version} 1.
  XbardMetrics(Registry& registry, std::string_view version);

  /// Records one finished RPC: requests{method, status_code_name(code)} += 1 and
  /// request_duration{method}.observe(seconds). `method` as gRPC names it, e.g.
  /// "/xbar.v1.BoardService/GetBoardInfo".
  void record_request(std::string_view method, int code, double seconds);

  /// xbar_requests_total{method,code}: RPCs finished, by method and gRPC status code name.
  CounterFamily& requests;
  /// xbar_request_duration_seconds{method}: RPC latency (default_latency_buckets()).
  HistogramFamily& request_duration;
  /// xbar_board_queue_depth: requests waiting for the board.
  Gauge& board_queue_depth;
  /// xbar_board_busy_seconds_total: time the board spent executing requests.
  Counter& board_busy_seconds;
  /// xbar_loop_steps_total: closed-loop steps run on the board.
  Counter& loop_steps;
  /// xbar_pulses_applied_total: programming pulses applied by program-verify.
  Counter& pulses_applied;
  /// xbar_devices_abandoned_total: devices program-verify gave up on.
  Counter& devices_abandoned;
  /// xbar_active_streams: streaming RPCs open now.
  Gauge& active_streams;
  /// xbar_deployments{state}: deployments by state; ready, degraded, failed and stale are
  /// created at 0 so that they render before the first deployment.
  GaugeFamily& deployments;
  /// xbar_build_info{version}: 1, set by the constructor.
  GaugeFamily& build_info;
};

}  // namespace xbar::server
