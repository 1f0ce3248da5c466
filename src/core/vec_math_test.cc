#include "core/vec_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace sy::detail {
namespace {

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  return std::abs(static_cast<int64_t>(std::bit_cast<int32_t>(a)) -
                  static_cast<int64_t>(std::bit_cast<int32_t>(b)));
}

TEST(VecMathTest, ScalarExpIsWithinItsStatedErrorAndClamps) {
  for (int i = 0; i <= 12773; ++i) {
    const float x = -87.f + 0.0137f * static_cast<float>(i);
    const double ref = std::exp(static_cast<double>(x));
    ASSERT_NEAR(fast_exp(x) / ref, 1.0, 2e-7) << x;
  }
  EXPECT_EQ(fast_exp(-100.f), 0.f);
  EXPECT_EQ(fast_exp(0.f), 1.f);
  EXPECT_TRUE(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));
}

#if defined(__AVX512F__)
TEST(VecMathTest, VectorLogIsWithinTwoUlpOfTheCorrectlyRoundedLog) {
  // The routers' range (softmax sums in [1, 128]) and well beyond it, densely.
  std::vector<float> xs;
  xs.reserve(39490 + 900000 + 17);
  for (int i = 0; i < 39490; ++i) xs.push_back(1e-6f * std::pow(1.0007f, static_cast<float>(i)));
  for (int i = 0; i < 900000; ++i) xs.push_back(0.7f + 1e-6f * static_cast<float>(i));
  xs.push_back(1.f);
  while (xs.size() % 16 != 0) xs.push_back(2.f);
  int64_t worst = 0;
  for (size_t i = 0; i < xs.size(); i += 16) {
    alignas(64) float out[16];
    _mm512_store_ps(out, fast_log(_mm512_loadu_ps(xs.data() + i)));
    for (int l = 0; l < 16; ++l) {
      const float ref = static_cast<float>(std::log(static_cast<double>(xs[i + l])));
      if (ref == 0.f) {
        ASSERT_EQ(out[l], 0.f);
        continue;
      }
      ASSERT_EQ(std::signbit(out[l]), std::signbit(ref)) << xs[i + l];
      worst = std::max(worst, ulps(out[l], ref));
    }
  }
  EXPECT_LE(worst, 2);
  alignas(64) float out[16];
  _mm512_store_ps(out, fast_log(_mm512_set1_ps(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(out[0]));
}
#endif

}  // namespace
}  // namespace sy::detail
