#include "core/vec_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace sy {
namespace {

TEST(FastExpTest, MatchesStdExpToFloatPrecision) {
  double worst = 0;
  // NOLINTNEXTLINE(clang-analyzer-security.FloatLoopCounter): a float sweep is what is tested
  for (float x = -87.f; x <= 88.f; x += 0.0137f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(detail::fast_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 3e-7);
}

TEST(FastExpTest, HandlesTheEdges) {
  EXPECT_EQ(detail::fast_exp(0.f), 1.f);
  EXPECT_EQ(detail::fast_exp(-100.f), 0.f);
  EXPECT_EQ(detail::fast_exp(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_TRUE(std::isfinite(detail::fast_exp(1000.f)));
  EXPECT_TRUE(std::isnan(detail::fast_exp(std::numeric_limits<float>::quiet_NaN())));
}

}  // namespace
}  // namespace sy
