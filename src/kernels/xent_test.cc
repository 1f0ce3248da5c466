#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

constexpr int64_t kN = 5, kV = 37;
const std::vector<int32_t> kTargets = {4, -1, 0, 36, 4};  // row 1 ignored
constexpr double kScale = 0.37;

std::vector<double> naive_losses(const std::vector<double>& logits) {
  std::vector<double> losses(kN);
  for (int64_t n = 0; n < kN; ++n) {
    if (kTargets[n] < 0) continue;
    double z = 0;
    for (int64_t j = 0; j < kV; ++j) z += std::exp(logits[n * kV + j]);
    losses[n] = std::log(z) - logits[n * kV + kTargets[n]];
  }
  return losses;
}

TEST(XentTest, ForwardMatchesNaiveReferenceAndIgnoresNegativeTargets) {
  auto logits = randn(kN * kV, 1, 3.0);
  std::vector<float> losses(kN, 123.f);
  xent_forward(losses.data(), to_float(logits).data(), kTargets.data(), kN, kV);
  EXPECT_LT(testing::rel_error(losses, naive_losses(logits)), 1e-5);
  EXPECT_EQ(losses[1], 0.f);
}

TEST(XentTest, GradientMatchesFiniteDifferences) {
  auto logits = randn(kN * kV, 1, 3.0);
  std::vector<double> losses(kN);
  auto loss = [&] {
    xent_forward(losses.data(), logits.data(), kTargets.data(), kN, kV);
    double s = 0;
    for (double l : losses) s += kScale * l;
    return s;
  };
  std::vector<double> dlogits(logits.size(), 99.0);  // overwritten, not accumulated
  xent_backward(dlogits.data(), logits.data(), kTargets.data(), kScale, kN, kV);
  testing::expect_gradient("dlogits", loss, logits, dlogits);
  for (int64_t j = 0; j < kV; ++j) EXPECT_EQ(dlogits[1 * kV + j], 0.0) << "ignored row, j=" << j;
}

TEST(XentTest, BackwardInPlaceMatchesOutOfPlace) {
  auto logits = to_float(randn(kN * kV, 1, 3.0));
  std::vector<float> dlogits(logits.size());
  xent_backward(dlogits.data(), logits.data(), kTargets.data(), 0.5f, kN, kV);
  xent_backward(logits.data(), logits.data(), kTargets.data(), 0.5f, kN, kV);
  EXPECT_EQ(logits, dlogits);
}

TEST(XentTest, FloatMatchesDouble) {
  constexpr int64_t N = 4, V = 8192;
  const std::vector<int32_t> targets = {0, 8191, 100, 4000};
  auto logits = randn(N * V, 1, 4.0);
  std::vector<double> losses(N), dlogits(logits.size());
  xent_forward(losses.data(), logits.data(), targets.data(), N, V);
  xent_backward(dlogits.data(), logits.data(), targets.data(), 1.0, N, V);
  auto logits_f = to_float(logits);
  std::vector<float> losses_f(N), dlogits_f(logits.size());
  xent_forward(losses_f.data(), logits_f.data(), targets.data(), N, V);
  xent_backward(dlogits_f.data(), logits_f.data(), targets.data(), 1.f, N, V);
  EXPECT_LT(testing::rel_error(losses_f, losses), 1e-5);
  EXPECT_LT(testing::rel_error(dlogits_f, dlogits), 1e-5);
}

TEST(XentTest, StableForLargeLogits) {
  const std::vector<float> logits = {1000.f, 999.f, -1000.f};
  const std::vector<int32_t> target = {1};
  float loss = 0;
  std::vector<float> d(3);
  xent_forward(&loss, logits.data(), target.data(), 1, 3);
  xent_backward(d.data(), logits.data(), target.data(), 1.f, 1, 3);
  EXPECT_NEAR(loss, 1.0 + std::log1p(std::exp(-1.0)), 1e-5);
  EXPECT_NEAR(d[0], 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(d[1], 1 / (1 + std::exp(1.0)) - 1, 1e-6);
  EXPECT_EQ(d[2], 0.f);
}

}  // namespace
}  // namespace sy
