#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/gemm_bf16.h"

namespace sy {
namespace {

TEST(ScheduleTest, WarmupThenCosineToFloor) {
  TrainConfig c;
  c.lr = 1.0;
  c.min_lr_ratio = 0.1;
  c.warmup_steps = 4;
  c.steps = 14;
  EXPECT_DOUBLE_EQ(lr_at(c, 0), 0.25);
  EXPECT_DOUBLE_EQ(lr_at(c, 3), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(c, 4), 1.0);
  EXPECT_NEAR(lr_at(c, 9), 0.55, 1e-12);  // half way: (1 + 0.1) / 2
  EXPECT_NEAR(lr_at(c, 14), 0.1, 1e-12);
  EXPECT_NEAR(lr_at(c, 100), 0.1, 1e-12);
}

TEST(AdamWTest, MatchesTheFormulaAndSkipsDecayOnNorms) {
  std::vector<ParamInfo> table = {{"w", {2}, 0, 2, true}, {"norm", {1}, 2, 1, false}};
  AdamW opt(table, 3);
  TrainConfig c;
  c.weight_decay = 0.1;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.adam_eps = 1e-8;
  std::vector<float> p = {1.f, -2.f, 1.f}, g = {0.5f, -0.25f, 2.f};
  std::vector<double> pd(p.begin(), p.end()), m(3, 0), v(3, 0);
  for (int t = 1; t <= 3; ++t) {
    opt.step(p.data(), g.data(), 0.01, 0.5, c);
    for (int i = 0; i < 3; ++i) {
      const double gi = g[i] * 0.5;
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.95 * v[i] + 0.05 * gi * gi;
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.95, t));
      pd[i] -= 0.01 * (mh / (std::sqrt(vh) + 1e-8) + (i < 2 ? 0.1 * pd[i] : 0.0));
    }
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i], pd[i], 1e-6);
  EXPECT_EQ(opt.steps_taken(), 3);
}

// A block of n weights above the parallel threshold: a decayed tensor and a 5-element norm, with
// weights and gradients of every sign and size.
struct LargeBlock {
  static constexpr int64_t n = 70000;
  std::vector<ParamInfo> table = {{"w", {n - 5}, 0, n - 5, true}, {"norm", {5}, n - 5, 5, false}};
  std::vector<float> p = std::vector<float>(n), g = std::vector<float>(n);
  LargeBlock() {
    for (int64_t i = 0; i < n; ++i) {
      p[i] = std::sin(0.37f * static_cast<float>(i));
      g[i] = std::cos(0.11f * static_cast<float>(i));
    }
  }
};

// Under precision bf16 the pass also writes the model's bf16 copy: the same weights as without
// it, and each one's rounding (what Bf16Gemm::refresh would make).
TEST(AdamWTest, WritesTheBf16CopyInTheSamePass) {
  LargeBlock b;
  AdamW plain(b.table, b.n), fused(b.table, b.n);
  TrainConfig c;
  std::vector<float> q = b.p;
  std::vector<uint16_t> q16(b.n, 0);
  for (int t = 0; t < 3; ++t) {
    plain.step(b.p.data(), b.g.data(), 1e-3, 1.0, c);
    fused.step(q.data(), b.g.data(), 1e-3, 1.0, c, q16.data());
  }
  EXPECT_EQ(b.p, q);
  for (int64_t i = 0; i < b.n; ++i) ASSERT_EQ(q16[i], to_bf16(q[i])) << i;
}

// zero_grads: the same update, and every gradient the table covers is zero afterwards.
TEST(AdamWTest, ZeroesTheGradientsInTheSamePass) {
  LargeBlock b;
  AdamW plain(b.table, b.n), zeroing(b.table, b.n);
  TrainConfig c;
  std::vector<float> q = b.p, g2 = b.g;
  plain.step(b.p.data(), b.g.data(), 1e-3, 0.5, c);
  zeroing.step(q.data(), g2.data(), 1e-3, 0.5, c, nullptr, /*zero_grads=*/true);
  EXPECT_EQ(b.p, q);
  EXPECT_EQ(g2, std::vector<float>(b.n, 0.f));
}

TEST(GradNormTest, IsTheEuclideanNorm) {
  std::vector<float> g(100001, 0.f);
  g[0] = 3.f;
  g[100000] = 4.f;
  EXPECT_DOUBLE_EQ(global_grad_norm(g.data(), static_cast<int64_t>(g.size())), 5.0);
}

// Every element counted once whatever the size: the thread shares, their streams and the tails.
TEST(GradNormTest, SumOfSquaresCountsEveryElementOnce) {
  for (int64_t n : {0, 1, 63, 64, 127, 129, 1000, 4 * 64 * 2 + 5, 100003}) {
    std::vector<float> g(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>((i * 37) % 101) - 50.f + 0.25f;
    double want = 0;
    for (float x : g) want += static_cast<double>(x) * x;
    EXPECT_NEAR(sum_of_squares(g.data(), n), want, 1e-12 * want) << n;
  }
}

}  // namespace
}  // namespace sy
