// xbarctl bench: a quick health figure of the board through the API, for a technician's
// "is it as fast as yesterday?" (status round trips, full-array reads, optionally inference).
// Nothing is pulsed: reads and closed-loop inference leave the arrays as they are.
#pragma once

#include <memory>
#include <optional>
#include <vector>

namespace CLI {
class App;
}

namespace xbar::client {

class Session;

/// Nearest-rank percentile `p` (0..100] of `values` (sorted here); 0 when empty.
double percentile(std::vector<double> values, double p);

class BenchCommands {
 public:
  explicit BenchCommands(CLI::App& app);
  ~BenchCommands();
  BenchCommands(const BenchCommands&) = delete;
  BenchCommands& operator=(const BenchCommands&) = delete;

  std::optional<int> run(const Session& session) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xbar::client
