#include "core/rng.h"

#include <gtest/gtest.h>

#include <cmath>

namespace sy {
namespace {

TEST(RngTest, SameSeedSameStreamAndStateRestores) {
  Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.next_u64(), b.next_u64());
  auto s = a.state();
  uint64_t x = a.next_u64();
  b.set_state(s);
  EXPECT_EQ(b.next_u64(), x);
}

TEST(RngTest, UniformAndNormalMoments) {
  Rng r(1);
  double su = 0, sn = 0, sn2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    su += u;
    double z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  EXPECT_NEAR(su / n, 0.5, 0.005);
  EXPECT_NEAR(sn / n, 0.0, 0.01);
  EXPECT_NEAR(sn2 / n, 1.0, 0.01);
}

TEST(RngTest, BelowStaysInRangeAndForksDiffer) {
  Rng r(3);
  for (int i = 0; i < 1000; ++i) ASSERT_LT(r.below(7), 7u);
  EXPECT_NE(r.fork(0).next_u64(), r.fork(1).next_u64());
}

}  // namespace
}  // namespace sy
