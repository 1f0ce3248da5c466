#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "core/gemm_bf16.h"
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

// The forward's logsumexp, kept for the backward: the same gradient as computing it again, to
// the bit; its two parts add up to the logsumexp and give the loss.
TEST(XentTest, BackwardFromTheForwardsLogsumexpIsTheSame) {
  for (const int64_t V : {int64_t{37}, int64_t{8192 + 5}}) {
    constexpr int64_t N = 5;
    const std::vector<int32_t> targets = {4, -1, 0, static_cast<int32_t>(V - 1), 20};
    auto logits = to_float(randn(N * V, 3, 4.0));
    std::vector<float> losses(N), lse(2 * N, 7.f), d1(N * V), d2(N * V);
    xent_forward(losses.data(), logits.data(), targets.data(), N, V, lse.data());
    xent_backward(d1.data(), logits.data(), targets.data(), 0.25f, N, V);
    xent_backward(d2.data(), logits.data(), targets.data(), 0.25f, N, V, lse.data());
    EXPECT_EQ(d1, d2) << V;
    for (int64_t n = 0; n < N; ++n) {
      if (targets[n] < 0) continue;
      double z = 0;
      for (int64_t j = 0; j < V; ++j) z += std::exp(static_cast<double>(logits[n * V + j]));
      EXPECT_NEAR(lse[2 * n] + lse[2 * n + 1], std::log(z), 1e-5 * std::abs(std::log(z)) + 1e-6)
          << V << " " << n;
      EXPECT_EQ(losses[n], (lse[2 * n] - logits[n * V + targets[n]]) + lse[2 * n + 1]);
    }
  }
}

// Under bf16 the LM head's GEMMs read the gradient rounded: written so directly, the rounding of
// the fp32 gradient bit for bit (tails of a vector width, the target, ignored rows).
TEST(XentTest, Bf16GradientIsTheRoundedFp32One) {
  for (const int64_t V : {int64_t{3}, int64_t{37}, int64_t{8192 + 5}}) {
    constexpr int64_t N = 5;
    const std::vector<int32_t> targets = {0, -1, 2, static_cast<int32_t>(V - 1), 1};
    auto logits = to_float(randn(N * V, 4, 4.0));
    std::vector<float> losses(N), lse(2 * N), d(N * V);
    std::vector<uint16_t> d16(N * V, 0xffff);
    xent_forward(losses.data(), logits.data(), targets.data(), N, V, lse.data());
    xent_backward(d.data(), logits.data(), targets.data(), 0.125f, N, V, lse.data());
    xent_backward_bf16(d16.data(), logits.data(), targets.data(), 0.125f, N, V, lse.data());
    for (int64_t i = 0; i < N * V; ++i) ASSERT_EQ(d16[i], to_bf16(d[i])) << V << " " << i;
  }
}

// The fused pass of a bf16 training forward: xent_forward's losses and lse, and
// xent_backward_bf16's gradient with scale 1, bit for bit (the model's backward GEMMs apply the
// scale; a power of two here, so that the scaled gradient is exactly the same too).
TEST(XentTest, Bf16ForwardBackwardIsTheForwardAndTheRoundedGradient) {
  for (const int64_t V : {int64_t{3}, int64_t{37}, int64_t{8192 + 5}}) {
    constexpr int64_t N = 5;
    const std::vector<int32_t> targets = {0, -1, 2, static_cast<int32_t>(V - 1), 1};
    auto logits = to_float(randn(N * V, 5, 4.0));
    std::vector<float> losses(N), lse(2 * N), fused_losses(N, -1.f), fused_lse(2 * N, -1.f);
    std::vector<uint16_t> d16(N * V), fused16(N * V, 0xffff), scaled16(N * V);
    xent_forward(losses.data(), logits.data(), targets.data(), N, V, lse.data());
    xent_backward_bf16(d16.data(), logits.data(), targets.data(), 1.f, N, V, lse.data());
    xent_forward_backward_bf16(fused_losses.data(), fused16.data(), logits.data(), targets.data(),
                               N, V, fused_lse.data());
    EXPECT_EQ(fused_losses, losses) << V;
    EXPECT_EQ(fused_lse, lse) << V;
    EXPECT_EQ(fused16, d16) << V;
    xent_backward_bf16(scaled16.data(), logits.data(), targets.data(), 0.125f, N, V, lse.data());
    for (int64_t i = 0; i < N * V; ++i)
      ASSERT_EQ(from_bf16(scaled16[i]), 0.125f * from_bf16(fused16[i])) << V << " " << i;
  }
}

// The LM head by row blocks whose logits stay in cache (lm_head_xent_bf16) against one GEMM over
// all rows then the fused pass: the same losses, lse and gradient bit for bit, and the same
// logits when they are kept — at row counts that are multiples of 32 (the model's N = B·S at
// its shapes; the bf16 GEMM's kernel for other row counts is oneDNN's generic one, whose
// summation order may differ) and for a last block that is shorter, on the threads there are.
TEST(XentTest, LmHeadByRowBlocksIsTheWholeHeadBitForBit) {
  if (!cpu_has_bf16()) GTEST_SKIP() << bf16_unsupported_reason();
  constexpr int64_t D = 64, V = 1000 + 3;
  for (const auto& [N, block] : {std::pair<int64_t, int64_t>{256, 64}, {224, 64}, {128, 128}}) {
    auto inp = to_float(randn(N * D, 6, 1.0)), w = to_float(randn(V * D, 7, 0.2));
    Bf16Gemm bf16(w.data(), V * D);
    bf16.refresh();
    std::vector<int32_t> targets(N);
    for (int64_t n = 0; n < N; ++n) targets[n] = n % 7 == 3 ? -1 : static_cast<int32_t>(n * 13 % V);
    std::vector<float> logits(N * V), losses(N), lse(2 * N);
    std::vector<uint16_t> d16(N * V);
    matmul_forward(logits.data(), inp.data(), w.data(), N, D, V, &bf16);
    xent_forward_backward_bf16(losses.data(), d16.data(), logits.data(), targets.data(), N, V,
                               lse.data());
    std::vector<float> scratch(block * V * omp_get_max_threads()), kept(N * V);
    for (float* keep : {static_cast<float*>(nullptr), kept.data()}) {
      std::vector<float> b_losses(N, -1.f), b_lse(2 * N, -1.f);
      std::vector<uint16_t> b16(N * V, 0xffff);
      lm_head_xent_bf16(b_losses.data(), b16.data(), b_lse.data(), keep, scratch.data(), inp.data(),
                        w.data(), targets.data(), N, D, V, bf16, block);
      EXPECT_EQ(b_losses, losses) << N << " " << block;
      EXPECT_EQ(b_lse, lse) << N << " " << block;
      EXPECT_EQ(b16, d16) << N << " " << block;
    }
    EXPECT_EQ(kept, logits) << N << " " << block;
  }
}

// A NaN logit makes the loss NaN (the trainer's divergence check reads the loss).
TEST(XentTest, NanLogitGivesNanLoss) {
  for (const int64_t V : {int64_t{37}, int64_t{64}}) {
    std::vector<float> logits(V, 0.5f);
    logits[V / 2] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<int32_t> target = {1};
    float loss = 0;
    xent_forward(&loss, logits.data(), target.data(), 1, V);
    EXPECT_TRUE(std::isnan(loss)) << V;
  }
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
