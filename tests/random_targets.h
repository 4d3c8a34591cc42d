// Conductance targets for a whole 64 x 64 array, uniform in [lo_uS, hi_uS], fixed by `seed`:
// what the program-verify and fault-scan tests program (shared by the test directories).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <random>

namespace xbar::testing {

inline Eigen::MatrixXd random_targets(uint64_t seed, double lo_uS = 7, double hi_uS = 200) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo_uS, hi_uS);
  Eigen::MatrixXd t(64, 64);
  for (int i = 0; i < t.size(); ++i) t.data()[i] = u(rng);
  return t;
}

}  // namespace xbar::testing
