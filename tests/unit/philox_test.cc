// Philox4x32-10 against the Random123 known-answer vectors, and the normal generator's moments.
#include "xbar/twin/philox.h"

#include <gtest/gtest.h>

#include <cmath>

namespace xbar::twin {
namespace {

TEST(Philox, KnownAnswerVectors) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(
      philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
      (PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(
      philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
      (PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox, NormalsHaveUnitMomentsAndNoNaN) {
  const PhiloxKey key = key_from_seed(12345);
  double sum = 0, sum2 = 0, sum4 = 0;
  const int n_blocks = 50000;
  for (int i = 0; i < n_blocks; ++i) {
    for (double z : normals4(philox4x32_10(make_counter(Stream::kReadNoise, i, 0, 0), key))) {
      ASSERT_TRUE(std::isfinite(z));
      sum += z;
      sum2 += z * z;
      sum4 += z * z * z * z;
    }
  }
  const double n = 4.0 * n_blocks;
  EXPECT_NEAR(sum / n, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(sum2 / n, 1.0, 5 * std::sqrt(2 / n));
  EXPECT_NEAR(sum4 / n, 3.0, 5 * std::sqrt(96 / n));
}

TEST(Philox, StreamsDoNotOverlap) {
  const PhiloxKey key = key_from_seed(1);
  EXPECT_NE(philox4x32_10(make_counter(Stream::kC2C, 1, 2, 3), key),
            philox4x32_10(make_counter(Stream::kRelax, 1, 2, 3), key));
  EXPECT_NE(philox4x32_10(make_counter(Stream::kC2C, 1, 2, 3, 0), key),
            philox4x32_10(make_counter(Stream::kC2C, 1, 2, 3, 1), key));
}

}  // namespace
}  // namespace xbar::twin
