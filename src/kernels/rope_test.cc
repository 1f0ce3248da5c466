#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

// ld > H·hd: q sitting inside a wider qkv row, with 3 padding columns that must stay untouched.
constexpr int64_t kB = 2, kS = 5, kH = 2, kHd = 6, kLd = kH * kHd + 3;
constexpr double kTheta = 10000.0;

struct Tables {
  std::vector<double> cos, sin;  // [S, hd/2]
  Tables() : cos(kS * kHd / 2), sin(kS * kHd / 2) {
    rope_tables(cos.data(), sin.data(), kS, kHd, kTheta);
  }
};

// HF's rotate_half formulation: x·cos + rotate_half(x)·sin with cos/sin repeated over both halves.
std::vector<double> naive_rope(std::vector<double> x) {
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t s = 0; s < kS; ++s)
      for (int64_t h = 0; h < kH; ++h) {
        double* xh = &x[(b * kS + s) * kLd + h * kHd];
        std::vector<double> rot(kHd), orig(xh, xh + kHd);
        for (int64_t i = 0; i < kHd / 2; ++i) {
          rot[i] = -orig[i + kHd / 2];
          rot[i + kHd / 2] = orig[i];
        }
        for (int64_t i = 0; i < kHd; ++i) {
          const double angle = s * std::pow(kTheta, -2.0 * (i % (kHd / 2)) / kHd);
          xh[i] = orig[i] * std::cos(angle) + rot[i] * std::sin(angle);
        }
      }
  return x;
}

TEST(RopeTest, TablesMatchDefinition) {
  Tables t;
  for (int64_t s = 0; s < kS; ++s)
    for (int64_t i = 0; i < kHd / 2; ++i) {
      const double angle = s / std::pow(kTheta, 2.0 * i / kHd);
      EXPECT_NEAR(t.cos[s * kHd / 2 + i], std::cos(angle), 1e-15);
      EXPECT_NEAR(t.sin[s * kHd / 2 + i], std::sin(angle), 1e-15);
    }
}

TEST(RopeTest, ForwardMatchesNaiveReferenceAndLeavesPaddingAlone) {
  Tables t;
  auto x = randn(kB * kS * kLd, 1);
  const auto want = naive_rope(x);
  std::vector<float> cos_f(t.cos.size()), sin_f(t.sin.size());
  rope_tables(cos_f.data(), sin_f.data(), kS, kHd, kTheta);
  auto x_f = to_float(x);
  rope_forward(x_f.data(), cos_f.data(), sin_f.data(), kB, kS, kH, kHd, kLd);
  EXPECT_LT(testing::rel_error(x_f, want), 1e-6);
  for (int64_t row = 0; row < kB * kS; ++row)
    for (int64_t c = kH * kHd; c < kLd; ++c)
      EXPECT_EQ(x_f[row * kLd + c], static_cast<float>(x[row * kLd + c]));
}

TEST(RopeTest, GradientMatchesFiniteDifferences) {
  Tables t;
  auto x = randn(kB * kS * kLd, 1), r = randn(kB * kS * kLd, 2);
  std::vector<double> y;
  auto loss = [&] {
    y = x;
    rope_forward(y.data(), t.cos.data(), t.sin.data(), kB, kS, kH, kHd, kLd);
    return testing::dot(y, r);
  };
  // rope_backward rotates the incoming gradient in place; the padding columns of r pass through,
  // and they are also the (identity) gradient of the padding of x.
  auto dx = r;
  rope_backward(dx.data(), t.cos.data(), t.sin.data(), kB, kS, kH, kHd, kLd);
  testing::expect_gradient("dx", loss, x, dx);
}

TEST(RopeTest, BackwardInvertsForward) {
  Tables t;
  const auto x = randn(kB * kS * kLd, 1);
  auto y = x;
  rope_forward(y.data(), t.cos.data(), t.sin.data(), kB, kS, kH, kHd, kLd);
  rope_backward(y.data(), t.cos.data(), t.sin.data(), kB, kS, kH, kHd, kLd);
  EXPECT_LT(testing::max_abs_diff(x, y), 1e-14);
}

}  // namespace
}  // namespace sy
