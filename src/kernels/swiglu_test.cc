#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

constexpr int64_t kN = 4, kF = 19;

TEST(SwigluTest, ForwardMatchesNaiveReference) {
  auto hu = randn(kN * 2 * kF, 1, 3.0);
  std::vector<double> want(kN * kF);
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t i = 0; i < kF; ++i) {
      const double g = hu[n * 2 * kF + i], u = hu[n * 2 * kF + kF + i];
      want[n * kF + i] = g / (1 + std::exp(-g)) * u;
    }
  std::vector<float> out(kN * kF);
  swiglu_forward(out.data(), to_float(hu).data(), kN, kF);
  EXPECT_LT(testing::rel_error(out, want), 1e-6);
}

TEST(SwigluTest, GradientMatchesFiniteDifferences) {
  auto hu = randn(kN * 2 * kF, 1, 3.0), r = randn(kN * kF, 2);
  std::vector<double> out(kN * kF);
  auto loss = [&] {
    swiglu_forward(out.data(), hu.data(), kN, kF);
    return testing::dot(out, r);
  };
  std::vector<double> dhu(hu.size());
  swiglu_backward(dhu.data(), r.data(), hu.data(), kN, kF);
  testing::expect_gradient("dhu", loss, hu, dhu);
}

TEST(SwigluTest, BackwardAccumulatesAndFloatMatchesDouble) {
  auto hu = randn(kN * 2 * kF, 1, 3.0), r = randn(kN * kF, 2);
  std::vector<double> dhu(hu.size());
  swiglu_backward(dhu.data(), r.data(), hu.data(), kN, kF);
  auto dhu2 = dhu;
  swiglu_backward(dhu2.data(), r.data(), hu.data(), kN, kF);
  testing::expect_doubled("dhu", dhu, dhu2);

  std::vector<float> dhu_f(hu.size());
  swiglu_backward(dhu_f.data(), to_float(r).data(), to_float(hu).data(), kN, kF);
  EXPECT_LT(testing::rel_error(dhu_f, dhu), 1e-5);

  // accumulate = false overwrites whatever dhu held: the values of accumulating into zeros.
  std::vector<double> written(hu.size(), 123.0);
  swiglu_backward(written.data(), r.data(), hu.data(), kN, kF, /*accumulate=*/false);
  EXPECT_EQ(written, dhu);
}

// fp32 runs 16 values at a time (AVX-512) with a masked tail: F = 40 is two full blocks and a
// tail of 8; every value against the fp64 path, accumulating too, and a NaN gate stays NaN.
TEST(SwigluTest, FloatBlocksAndTailMatchDouble) {
  constexpr int64_t N = 3, F = 40;
  auto hu = randn(N * 2 * F, 5, 4.0), r = randn(N * F, 6);
  std::vector<double> out(N * F), dhu(hu.size(), 0.5);
  swiglu_forward(out.data(), hu.data(), N, F);
  swiglu_backward(dhu.data(), r.data(), hu.data(), N, F, /*accumulate=*/true);
  auto hu_f = to_float(hu);
  hu_f[2 * F + 37] = std::nanf("");  // row 1, gate 37 (in the tail)
  std::vector<float> out_f(N * F), dhu_f(hu.size(), 0.5f);
  swiglu_forward(out_f.data(), hu_f.data(), N, F);
  swiglu_backward(dhu_f.data(), to_float(r).data(), hu_f.data(), N, F, /*accumulate=*/true);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < F; ++i) {
      const int64_t o = n * F + i, g = n * 2 * F + i;
      if (n == 1 && i == 37) {
        EXPECT_TRUE(std::isnan(out_f[o]) && std::isnan(dhu_f[g]) && std::isnan(dhu_f[g + F]));
        continue;
      }
      EXPECT_NEAR(out_f[o], out[o], 1e-5 * (1 + std::abs(out[o]))) << n << "," << i;
      EXPECT_NEAR(dhu_f[g], dhu[g], 1e-5 * (1 + std::abs(dhu[g]))) << n << "," << i;
      EXPECT_NEAR(dhu_f[g + F], dhu[g + F], 1e-5 * (1 + std::abs(dhu[g + F]))) << n << "," << i;
    }
}

TEST(SwigluTest, StaysFiniteForLargeGates) {
  const std::vector<float> hu = {-1000.f, -90.f, 90.f, 1000.f, 1.f, 1.f, 1.f, 1.f};  // N=1, F=4
  std::vector<float> out(4), dhu(8);
  const std::vector<float> dout(4, 1.f);
  swiglu_forward(out.data(), hu.data(), 1, 4);
  swiglu_backward(dhu.data(), dout.data(), hu.data(), 1, 4);
  EXPECT_NEAR(out[0], 0.f, 1e-30f);
  EXPECT_EQ(out[3], 1000.f);
  for (float x : dhu) EXPECT_TRUE(std::isfinite(x));
  EXPECT_NEAR(dhu[3], 1.f, 1e-6);  // silu'(x) → 1 for large x
}

}  // namespace
}  // namespace sy
