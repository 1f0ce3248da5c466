#include "core/vec_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

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

#if defined(__AVX512F__)
float lane0(__m512 v) { return _mm512_cvtss_f32(v); }

TEST(FastExpTest, VectorMatchesStdExpAndTheNonpositiveVariantGivesTheSameBits) {
  double worst = 0;
  int64_t differ = 0;
  for (int i = 0; i <= 12773; ++i) {
    const float x = -87.f + 0.0137f * static_cast<float>(i);
    const float v = lane0(detail::fast_exp(_mm512_set1_ps(x)));
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(v - want) / want);
  }
  EXPECT_LT(worst, 3e-7);
  // Every 97th float bit pattern in [−∞, −0]: the clamp-free variant equals fast_exp bit for bit.
  for (uint32_t b = 0x80000000u; b <= 0xFF800000u; b += 97) {
    const float x = std::bit_cast<float>(b);
    const float a = lane0(detail::fast_exp(_mm512_set1_ps(x)));
    const float c = lane0(detail::fast_exp_nonpositive(_mm512_set1_ps(x)));
    differ += std::bit_cast<uint32_t>(a) != std::bit_cast<uint32_t>(c);
  }
  EXPECT_EQ(differ, 0);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(lane0(detail::fast_exp_nonpositive(_mm512_set1_ps(-inf))), 0.f);
  EXPECT_EQ(lane0(detail::fast_exp_nonpositive(_mm512_set1_ps(0.f))), 1.f);
  EXPECT_TRUE(std::isnan(lane0(
      detail::fast_exp_nonpositive(_mm512_set1_ps(std::numeric_limits<float>::quiet_NaN())))));
}

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  return std::abs(static_cast<int64_t>(std::bit_cast<int32_t>(a)) -
                  static_cast<int64_t>(std::bit_cast<int32_t>(b)));
}

TEST(FastLogTest, WithinTwoUlpOfTheCorrectlyRoundedLog) {
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
    _mm512_store_ps(out, detail::fast_log(_mm512_loadu_ps(xs.data() + i)));
    for (int l = 0; l < 16; ++l) {
      const auto ref = static_cast<float>(std::log(static_cast<double>(xs[i + l])));
      if (ref == 0.f) {
        ASSERT_EQ(out[l], 0.f);
        continue;
      }
      ASSERT_EQ(std::signbit(out[l]), std::signbit(ref)) << xs[i + l];
      worst = std::max(worst, ulps(out[l], ref));
    }
  }
  EXPECT_LE(worst, 2);
  EXPECT_TRUE(
      std::isnan(lane0(detail::fast_log(_mm512_set1_ps(std::numeric_limits<float>::quiet_NaN())))));
}

TEST(FastLogTest, DoubleWithinTwoUlpOfStdLog) {
  int64_t worst = 0;
  std::vector<double> xs;
  xs.reserve(200016);
  for (int i = 0; i < 100000; ++i) xs.push_back(1e-9 * std::pow(1.0005, i));  // 1e-9 .. 5e12
  for (int i = 0; i < 100000; ++i) xs.push_back(0.7 + 1e-5 * i);              // around 1
  while (xs.size() % 8 != 0) xs.push_back(3.0);
  for (size_t i = 0; i < xs.size(); i += 8) {
    alignas(64) double out[8];
    _mm512_store_pd(out, detail::fast_log(_mm512_loadu_pd(xs.data() + i)));
    for (int l = 0; l < 8; ++l) {
      const double ref = std::log(xs[i + l]);
      if (ref == 0.0) {
        ASSERT_EQ(out[l], 0.0);
        continue;
      }
      ASSERT_EQ(std::signbit(out[l]), std::signbit(ref)) << xs[i + l];
      worst =
          std::max(worst, std::abs(std::bit_cast<int64_t>(out[l]) - std::bit_cast<int64_t>(ref)));
    }
  }
  EXPECT_LE(worst, 2);
}
#endif

}  // namespace
}  // namespace sy
