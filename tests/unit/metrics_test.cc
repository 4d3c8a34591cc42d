// The metrics registry (exposition format, escaping, histograms, concurrency) and the HTTP
// endpoint over a real socket.
// clang-format off
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on
#include "observability/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "observability/http_endpoint.h"
#include "xbar/status_names.h"

namespace xbar::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// ---- registry ----

TEST(Metrics, RenderGolden) {
  Registry reg;
  auto& req = reg.counter("app_requests_total", "Requests.", {"method", "code"});
  req.with({"Get", "OK"}).inc();
  req.with({"Get", "OK"}).inc(2);
  req.with({"Get", "NOT_FOUND"}).inc();
  reg.gauge("app_queue", "Queue depth.").get().set(3);
  reg.gauge("app_temp", "Temperature.").get().set(-1.5);
  auto& lat = reg.histogram("app_latency_seconds", "Latency.", {"method"}, {0.1, 1});
  lat.with({"Get"}).observe(0.05);
  lat.with({"Get"}).observe(0.5);
  lat.with({"Get"}).observe(2);
  reg.histogram("app_unlabelled_seconds", "Unlabelled.", {}, {0.5}).get().observe(0.25);
  reg.counter("app_empty_total", "No children yet.", {"x"});

  const std::string expected =
      "# HELP app_empty_total No children yet.\n"
      "# TYPE app_empty_total counter\n"
      "# HELP app_latency_seconds Latency.\n"
      "# TYPE app_latency_seconds histogram\n"
      "app_latency_seconds_bucket{method=\"Get\",le=\"0.1\"} 1\n"
      "app_latency_seconds_bucket{method=\"Get\",le=\"1\"} 2\n"
      "app_latency_seconds_bucket{method=\"Get\",le=\"+Inf\"} 3\n"
      "app_latency_seconds_sum{method=\"Get\"} 2.55\n"
      "app_latency_seconds_count{method=\"Get\"} 3\n"
      "# HELP app_queue Queue depth.\n"
      "# TYPE app_queue gauge\n"
      "app_queue 3\n"
      "# HELP app_requests_total Requests.\n"
      "# TYPE app_requests_total counter\n"
      "app_requests_total{method=\"Get\",code=\"NOT_FOUND\"} 1\n"
      "app_requests_total{method=\"Get\",code=\"OK\"} 3\n"
      "# HELP app_temp Temperature.\n"
      "# TYPE app_temp gauge\n"
      "app_temp -1.5\n"
      "# HELP app_unlabelled_seconds Unlabelled.\n"
      "# TYPE app_unlabelled_seconds histogram\n"
      "app_unlabelled_seconds_bucket{le=\"0.5\"} 1\n"
      "app_unlabelled_seconds_bucket{le=\"+Inf\"} 1\n"
      "app_unlabelled_seconds_sum 0.25\n"
      "app_unlabelled_seconds_count 1\n";
  EXPECT_EQ(reg.render(), expected);
  EXPECT_EQ(Registry().render(), "");
}

TEST(Metrics, Escaping) {
  Registry reg;
  auto& g = reg.gauge("esc", "Help with \\ backslash\nand \"quotes\".", {"v"});
  g.with({"a\\b\"c\nd"}).set(1);
  g.with({""}).set(2);
  EXPECT_EQ(reg.render(),
            "# HELP esc Help with \\\\ backslash\\nand \"quotes\".\n"
            "# TYPE esc gauge\n"
            "esc{v=\"\"} 2\n"
            "esc{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(Metrics, SpecialValues) {
  Registry reg;
  auto& g = reg.gauge("g", "G.", {"k"});
  g.with({"inf"}).set(std::numeric_limits<double>::infinity());
  g.with({"minf"}).set(-std::numeric_limits<double>::infinity());
  g.with({"nan"}).set(std::numeric_limits<double>::quiet_NaN());
  g.with({"big"}).set(1e6);
  g.with({"small"}).set(1e-5);
  const std::string text = reg.render();
  EXPECT_NE(text.find("g{k=\"inf\"} +Inf\n"), std::string::npos) << text;
  EXPECT_NE(text.find("g{k=\"minf\"} -Inf\n"), std::string::npos) << text;
  EXPECT_NE(text.find("g{k=\"nan\"} NaN\n"), std::string::npos) << text;
  EXPECT_NE(text.find("g{k=\"big\"} 1000000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("g{k=\"small\"} 1e-05\n"), std::string::npos) << text;
}

TEST(Metrics, CounterAndGauge) {
  Registry reg;
  Counter& c = reg.counter("c_total", "C.").get();
  c.inc();
  c.inc(2.5);
  c.inc(-1);  // ignored
  c.inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(c.value(), 3.5);
  Gauge& g = reg.gauge("g", "G.").get();
  g.set(10);
  g.inc(2);
  g.dec(5);
  EXPECT_EQ(g.value(), 7);
  EXPECT_NE(&reg.counter("c2_total", "C2.", {"a"}).with({"x"}),
            &reg.counter("c3_total", "C3.", {"a"}).with({"x"}))
      << "(different families, different children)";
}

TEST(Metrics, ChildrenAreStable) {
  Registry reg;
  auto& f = reg.counter("c_total", "C.", {"a", "b"});
  Counter& c1 = f.with({"x", "y"});
  for (int i = 0; i < 100; ++i) f.with({std::to_string(i), "z"});
  const std::vector<std::string> values{"x", "y"};
  EXPECT_EQ(&f.with(std::span<const std::string>(values)), &c1);
  EXPECT_NE(&f.with({"x", "z"}), &c1);
}

TEST(Metrics, HistogramBuckets) {
  Registry reg;
  Histogram& h = reg.histogram("h_seconds", "H.", {}, {0.1, 1, 10}).get();
  for (double v : {0.05, 0.1, 0.5, 1.0, 1.0000001, 9.99, 10.0, 11.0, 1e9}) h.observe(v);
  h.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
  h.observe(-3);                                        // counts in the first bucket
  EXPECT_EQ(h.cumulative_counts(), (std::vector<uint64_t>{3, 5, 8, 10}));
  EXPECT_EQ(h.count(), 10u);
  EXPECT_NEAR(h.sum(), 0.05 + 0.1 + 0.5 + 1.0 + 1.0000001 + 9.99 + 10 + 11 + 1e9 - 3, 1e-3);
  const std::string text = reg.render();
  EXPECT_NE(text.find("h_seconds_bucket{le=\"0.1\"} 3\n"
                      "h_seconds_bucket{le=\"1\"} 5\n"
                      "h_seconds_bucket{le=\"10\"} 8\n"
                      "h_seconds_bucket{le=\"+Inf\"} 10\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("h_seconds_count 10\n"), std::string::npos) << text;

  // A trailing +Inf bound is implicit; no bounds at all is just +Inf.
  auto& inf = reg.histogram("h2", "H2.", {}, {1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(inf.bounds().size(), 1u);
  Histogram& none = reg.histogram("h3", "H3.", {}, {}).get();
  none.observe(4);
  EXPECT_EQ(none.cumulative_counts(), (std::vector<uint64_t>{1}));
  EXPECT_EQ(reg.histogram("h4", "H4.", {"m"}).bounds().size(), default_latency_buckets().size());
}

TEST(Metrics, Misuse) {
  Registry reg;
  EXPECT_THROW(reg.counter("", "x"), std::invalid_argument);
  EXPECT_THROW(reg.counter("1abc", "x"), std::invalid_argument);
  EXPECT_THROW(reg.counter("a-b", "x"), std::invalid_argument);
  EXPECT_NO_THROW(reg.counter("ns:sub_name1", "x"));
  EXPECT_THROW(reg.counter("ns:sub_name1", "again"), std::invalid_argument);
  EXPECT_THROW(reg.gauge("g1", "x", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(reg.gauge("g2", "x", {"a:b"}), std::invalid_argument);
  EXPECT_THROW(reg.gauge("g3", "x", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(reg.histogram("h1", "x", {"le"}), std::invalid_argument);
  EXPECT_NO_THROW(reg.gauge("g4", "x", {"le"}));  // only histograms reserve le
  EXPECT_THROW(reg.histogram("h2", "x", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(reg.histogram("h3", "x", {}, {2, 1}), std::invalid_argument);
  EXPECT_THROW(reg.histogram("h4", "x", {}, {std::nan("")}), std::invalid_argument);
  auto& f = reg.counter("f_total", "x", {"a", "b"});
  EXPECT_THROW(f.with({"only one"}), std::invalid_argument);
  EXPECT_THROW(f.get(), std::invalid_argument);
  // A failed registration leaves nothing behind.
  EXPECT_EQ(reg.render().find("g1"), std::string::npos);
}

TEST(Metrics, ConcurrentIncrementsSumExactly) {
  Registry reg;
  auto& counters = reg.counter("c_total", "C.", {"k"});
  auto& gauges = reg.gauge("g", "G.", {"k"});
  auto& hist = reg.histogram("h", "H.", {"k"}, {0.5});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      Counter& shared = counters.with({"shared"});
      for (int i = 0; i < kPerThread; ++i) {
        shared.inc();
        // Lookups (and first creations) racing with increments and renders.
        if (i % 1000 == 0) counters.with({"t" + std::to_string(t) + "-" + std::to_string(i)}).inc();
        gauges.with({"g"}).inc(i % 2 == 0 ? 1 : -1);
        hist.with({"h"}).observe(i % 2 == 0 ? 0.25 : 0.75);
        if (t == 0 && i % 10000 == 0) (void)reg.render();
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(counters.with({"shared"}).value(), double(kThreads) * kPerThread);
  EXPECT_EQ(gauges.with({"g"}).value(), 0.0);
  Histogram& h = hist.with({"h"});
  EXPECT_EQ(h.cumulative_counts(), (std::vector<uint64_t>{uint64_t(kThreads) * kPerThread / 2,
                                                          uint64_t(kThreads) * kPerThread}));
  EXPECT_EQ(h.sum(), kThreads * kPerThread * 0.5);  // halves of 0.25 and 0.75
  const std::string text = reg.render();
  EXPECT_NE(text.find("c_total{k=\"shared\"} 800000\n"), std::string::npos);
  EXPECT_NE(text.find("c_total{k=\"t7-99000\"} 1\n"), std::string::npos);
}

TEST(Metrics, XbardFamilies) {
  Registry reg;
  XbardMetrics m(reg, "0.1.0");
  m.record_request("/xbar.v1.BoardService/GetBoardInfo", 0, 0.002);
  m.record_request("/xbar.v1.BoardService/GetBoardInfo", 5, 0.5);
  m.loop_steps.inc(64);
  m.active_streams.inc();
  m.deployments.with({"ready"}).set(2);
  const std::string text = reg.render();
  const std::string method = "method=\"/xbar.v1.BoardService/GetBoardInfo\"";
  const std::vector<std::string> lines = {
      "xbar_build_info{version=\"0.1.0\"} 1\n",
      "xbar_requests_total{" + method + ",code=\"OK\"} 1\n",
      "xbar_requests_total{" + method + ",code=\"NOT_FOUND\"} 1\n",
      "xbar_request_duration_seconds_bucket{" + method + ",le=\"0.0025\"} 1\n",
      "xbar_request_duration_seconds_count{" + method + "} 2\n",
      "# TYPE xbar_request_duration_seconds histogram\n",
      "xbar_board_queue_depth 0\n",
      "# TYPE xbar_board_busy_seconds_total counter\n",
      "xbar_board_busy_seconds_total 0\n",
      "xbar_loop_steps_total 64\n",
      "xbar_pulses_applied_total 0\n",
      "xbar_devices_abandoned_total 0\n",
      "xbar_active_streams 1\n",
      "xbar_deployments{state=\"ready\"} 2\n",
      "xbar_deployments{state=\"stale\"} 0\n",
  };
  for (const std::string& line : lines) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nin\n" << text;
  }
  EXPECT_EQ(xbar::status_code_name(16), "UNAUTHENTICATED");
  EXPECT_EQ(xbar::status_code_name(17), "UNKNOWN");
  EXPECT_EQ(xbar::status_code_name(-1), "UNKNOWN");
  EXPECT_THROW(XbardMetrics(reg, "again"), std::invalid_argument);
}

// ---- HTTP endpoint ----

struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string content_length;
  std::string allow;
  bool keep_alive = false;
};

// One request on an open connection.
Reply exchange(tcp::socket& sock, http::verb verb, const std::string& target,
               bool keep_alive = true) {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(keep_alive);
  if (verb == http::verb::post) req.body() = "x=1";
  req.prepare_payload();
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.skip(verb == http::verb::head);
  http::read(sock, buf, parser);
  const auto& res = parser.get();
  Reply r;
  r.status = res.result_int();
  r.body = res.body();
  r.content_type = std::string(res[http::field::content_type]);
  r.content_length = std::string(res[http::field::content_length]);
  r.allow = std::string(res[http::field::allow]);
  r.keep_alive = res.keep_alive();
  return r;
}

tcp::socket connect(asio::io_context& io, int port) {
  tcp::socket sock(io);
  sock.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  return sock;
}

Reply fetch(int port, http::verb verb, const std::string& target) {
  asio::io_context io;
  tcp::socket sock = connect(io, port);
  return exchange(sock, verb, target, false);
}

// Timing: a connection the server must close is waited for up to kClosesWithin, and the
// endpoints of those tests time idle connections out only after kIdleTimeout, far beyond it: a
// close that comes only from the idle timeout fails the wait, however loaded the machine.
constexpr auto kClosesWithin = 30s;
constexpr auto kIdleTimeout = 120s;

HttpEndpointOptions with_idle_timeout(std::chrono::milliseconds t = kIdleTimeout) {
  HttpEndpointOptions o;
  o.timeout = t;
  return o;
}

// True if the server has not closed `sock` (nothing to read, no end of stream); does not wait.
bool still_open(tcp::socket& sock) {
  char c;
  const ssize_t n = ::recv(sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// Blocks until the server closes `sock` (or `limit` passes); true if it was closed.
bool closed_by_server(tcp::socket& sock, std::chrono::milliseconds limit) {
  timeval tv{};
  tv.tv_sec = limit.count() / 1000;
  tv.tv_usec = (limit.count() % 1000) * 1000;
  setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char c;
  for (;;) {
    const ssize_t n = ::recv(sock.native_handle(), &c, 1, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

class Endpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    reg_.counter("t_total", "T.", {"k"}).with({"v\"q"}).inc(5);
    metrics_ = std::make_unique<XbardMetrics>(reg_, "test");
  }
  std::pair<bool, std::string> readiness() {
    std::lock_guard lk(mu_);
    return {ready_, reason_};
  }
  void set_ready(bool ready, std::string reason) {
    std::lock_guard lk(mu_);
    ready_ = ready;
    reason_ = std::move(reason);
  }
  std::unique_ptr<HttpEndpoint> make(HttpEndpointOptions opt = {}) {
    return std::make_unique<HttpEndpoint>(
        reg_, [this] { return readiness(); }, opt);
  }

  Registry reg_;
  std::unique_ptr<XbardMetrics> metrics_;
  std::mutex mu_;
  bool ready_ = true;
  std::string reason_;
};

TEST_F(Endpoint, Routes) {
  auto ep = make();
  auto port = ep->start("127.0.0.1:0");
  ASSERT_TRUE(port.has_value()) << port.error();
  ASSERT_GT(*port, 0);
  EXPECT_EQ(ep->port(), *port);

  Reply m = fetch(*port, http::verb::get, "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(m.body, reg_.render());
  EXPECT_NE(m.body.find("t_total{k=\"v\\\"q\"} 5\n"), std::string::npos);
  EXPECT_NE(m.body.find("xbar_build_info{version=\"test\"} 1\n"), std::string::npos);

  Reply q = fetch(*port, http::verb::get, "/metrics?name[]=x");
  EXPECT_EQ(q.status, 200);

  Reply h = fetch(*port, http::verb::head, "/metrics");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "");
  EXPECT_EQ(h.content_length, std::to_string(reg_.render().size()));

  Reply live = fetch(*port, http::verb::get, "/healthz/live");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.body, "live");

  EXPECT_EQ(fetch(*port, http::verb::get, "/").status, 404);
  EXPECT_EQ(fetch(*port, http::verb::get, "/metricsx").status, 404);
  EXPECT_EQ(fetch(*port, http::verb::post, "/nothing").status, 404);
  Reply post = fetch(*port, http::verb::post, "/metrics");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.allow, "GET, HEAD");
  EXPECT_EQ(fetch(*port, http::verb::delete_, "/healthz/live").status, 405);
}

TEST_F(Endpoint, ReadinessFlips) {
  auto ep = make();
  auto port = ep->start("127.0.0.1:0");
  ASSERT_TRUE(port.has_value()) << port.error();
  Reply r = fetch(*port, http::verb::get, "/healthz/ready");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready");
  set_ready(false, "board unavailable");
  r = fetch(*port, http::verb::get, "/healthz/ready");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not ready: board unavailable");
  EXPECT_EQ(fetch(*port, http::verb::get, "/healthz/live").status, 200);
  set_ready(true, "");
  EXPECT_EQ(fetch(*port, http::verb::get, "/healthz/ready").status, 200);

  // No callback: ready; a throwing one: not ready.
  HttpEndpoint plain(reg_);
  auto p2 = plain.start("127.0.0.1:0");
  ASSERT_TRUE(p2.has_value()) << p2.error();
  EXPECT_EQ(fetch(*p2, http::verb::get, "/healthz/ready").status, 200);
  HttpEndpoint throwing(
      reg_, []() -> std::pair<bool, std::string> { throw std::runtime_error("record locked"); });
  auto p3 = throwing.start("127.0.0.1:0");
  ASSERT_TRUE(p3.has_value()) << p3.error();
  r = fetch(*p3, http::verb::get, "/healthz/ready");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not ready: readiness check failed: record locked");
}

TEST_F(Endpoint, KeepAlive) {
  auto ep = make(with_idle_timeout());
  auto port = ep->start("127.0.0.1:0");
  ASSERT_TRUE(port.has_value()) << port.error();
  asio::io_context io;
  tcp::socket sock = connect(io, *port);
  for (int i = 0; i < 3; ++i) {
    metrics_->loop_steps.inc();
    Reply r = exchange(sock, http::verb::get, "/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.keep_alive);
    EXPECT_NE(r.body.find("xbar_loop_steps_total " + std::to_string(i + 1) + "\n"),
              std::string::npos);
  }
  EXPECT_EQ(exchange(sock, http::verb::head, "/healthz/live").status, 200);
  EXPECT_EQ(exchange(sock, http::verb::get, "/nope").status, 404);
  Reply last = exchange(sock, http::verb::get, "/healthz/live", /*keep_alive=*/false);
  EXPECT_FALSE(last.keep_alive);
  EXPECT_TRUE(closed_by_server(sock, kClosesWithin));
}

TEST_F(Endpoint, IdleClientDoesNotBlockOthers) {
  // A fetch is served while an idle and a slow client hold their connections: it is answered
  // while both are still open (a server that served one connection at a time would answer it
  // only after their timeout had dropped them). The timeout is far longer than a fetch takes,
  // even under a sanitizer on a loaded machine; then both are dropped, not before it.
  const auto timeout = 5000ms;
  auto ep = make(with_idle_timeout(timeout));
  auto port = ep->start("127.0.0.1:0");
  ASSERT_TRUE(port.has_value()) << port.error();

  asio::io_context io;
  const auto t0 = std::chrono::steady_clock::now();
  tcp::socket idle = connect(io, *port);  // says nothing
  tcp::socket slow = connect(io, *port);  // half a request
  asio::write(slow, asio::buffer(std::string_view("GET /metrics HTTP/1.1\r\nHost: x\r\n")));

  Reply r = fetch(*port, http::verb::get, "/metrics");
  EXPECT_EQ(r.status, 200);
  const auto served = std::chrono::steady_clock::now() - t0;
  ASSERT_LT(served, timeout) << "the fetch took longer than the idle timeout: nothing shown";
  EXPECT_TRUE(still_open(idle)) << "served only once the idle client was dropped";
  EXPECT_TRUE(still_open(slow)) << "served only once the slow client was dropped";

  // Both are dropped after the timeout (counted from their accept, after t0).
  EXPECT_TRUE(closed_by_server(idle, kClosesWithin));
  EXPECT_TRUE(closed_by_server(slow, kClosesWithin));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, timeout);
}

TEST_F(Endpoint, Limits) {
  HttpEndpointOptions opt;
  opt.max_header_bytes = 1024;
  opt.max_body_bytes = 100;
  opt.max_connections = 2;
  opt.timeout = kIdleTimeout;
  auto ep = make(opt);
  auto port = ep->start("127.0.0.1:0");
  ASSERT_TRUE(port.has_value()) << port.error();

  asio::io_context io;
  {
    tcp::socket sock = connect(io, *port);
    http::request<http::string_body> req{http::verb::get, "/metrics", 11};
    req.set(http::field::host, "x");
    req.set("X-Padding", std::string(2000, 'a'));
    http::write(sock, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    EXPECT_EQ(res.result_int(), 431);
    EXPECT_TRUE(closed_by_server(sock, kClosesWithin));
  }
  {
    tcp::socket sock = connect(io, *port);
    http::request<http::string_body> req{http::verb::get, "/metrics", 11};
    req.set(http::field::host, "x");
    req.body() = std::string(200, 'b');
    req.prepare_payload();
    http::write(sock, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    EXPECT_EQ(res.result_int(), 413);
  }
  {
    tcp::socket sock = connect(io, *port);
    asio::write(sock, asio::buffer(std::string_view("NOT HTTP AT ALL\r\n\r\n")));
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    EXPECT_EQ(res.result_int(), 400);
  }
  {
    // Two held connections: a third is closed at once, and served again once one goes.
    tcp::socket a = connect(io, *port);
    tcp::socket b = connect(io, *port);
    EXPECT_EQ(exchange(a, http::verb::get, "/healthz/live").status, 200);
    EXPECT_EQ(exchange(b, http::verb::get, "/healthz/live").status, 200);
    tcp::socket c = connect(io, *port);
    EXPECT_TRUE(closed_by_server(c, kClosesWithin));
    a.close();
    // Once the server has seen `a` go: polled, as the server notices it in its own time.
    bool served = false;
    const auto end = std::chrono::steady_clock::now() + kClosesWithin;
    while (!served && std::chrono::steady_clock::now() < end) {
      try {
        served = fetch(*port, http::verb::get, "/healthz/live").status == 200;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(20ms);
      }
    }
    EXPECT_TRUE(served);
  }
}

TEST_F(Endpoint, StopWithAClientConnected) {
  auto ep = make(with_idle_timeout());  // stop() must not wait for the idle timeout
  auto port = ep->start("127.0.0.1:0");
  ASSERT_TRUE(port.has_value()) << port.error();
  asio::io_context io;
  tcp::socket kept = connect(io, *port);
  EXPECT_EQ(exchange(kept, http::verb::get, "/metrics").status, 200);  // kept alive, idle now
  tcp::socket idle = connect(io, *port);
  // `idle` is accepted: the server accepts in arrival order, and a connection made after it
  // has been served.
  EXPECT_EQ(fetch(*port, http::verb::get, "/healthz/live").status, 200);

  const auto t0 = std::chrono::steady_clock::now();
  ep->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kIdleTimeout / 4);
  EXPECT_EQ(ep->port(), 0);
  EXPECT_TRUE(closed_by_server(kept, kClosesWithin));
  EXPECT_TRUE(closed_by_server(idle, kClosesWithin));
  EXPECT_THROW(fetch(*port, http::verb::get, "/metrics"), boost::system::system_error);
  ep->stop();  // idempotent

  // And it starts again.
  auto again = ep->start("127.0.0.1:0");
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(fetch(*again, http::verb::get, "/healthz/live").status, 200);
}

TEST_F(Endpoint, StartErrors) {
  auto ep = make();
  auto port = ep->start("127.0.0.1:0");
  ASSERT_TRUE(port.has_value()) << port.error();
  EXPECT_FALSE(ep->start("127.0.0.1:0").has_value());  // already started

  auto other = make();
  auto taken = other->start("127.0.0.1:" + std::to_string(*port));
  ASSERT_FALSE(taken.has_value());
  EXPECT_NE(taken.error().find("cannot listen"), std::string::npos) << taken.error();
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:x", "::1:80",
                          "[::1]80", "no.such.host.invalid:0"}) {
    EXPECT_FALSE(other->start(bad).has_value()) << bad;
  }
  EXPECT_EQ(other->port(), 0);

  // [::1]:0 where IPv6 loopback exists.
  HttpEndpoint v6(reg_);
  if (auto p = v6.start("[::1]:0")) {
    asio::io_context io;
    tcp::socket sock(io);
    sock.connect({asio::ip::make_address("::1"), static_cast<unsigned short>(*p)});
    EXPECT_EQ(exchange(sock, http::verb::get, "/healthz/live").status, 200);
  }
}

}  // namespace
}  // namespace xbar::server
