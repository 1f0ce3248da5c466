#include "routing/balancer.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/gradcheck.h"
#include "routing/balancer_test_util.h"

namespace sy {
namespace {

using testing_util::balancer_opts;
using testing_util::routed_micro_batches;

TEST(BalancerTest, GlobalBufferAtLastMicroBatchEqualsGlobalExact) {
  const int64_t B = 2, S = 8, M = 3, n = B * S;
  auto bufs = routed_micro_batches(n, M, 5);
  Balancer<double> global(balancer_opts(B, S, M, {{LblScope::kGlobal, 1.0}}), nullptr);
  Balancer<double> exact(balancer_opts(B, S, M, {{LblScope::kGlobalExact, 1.0}}), nullptr);
  global.begin_step(0);
  exact.begin_step(0);
  for (int64_t m = 0; m < M; ++m) exact.record_prepass(0, m, bufs[m]);
  exact.finish_prepass();
  double g_last = 0, e_last = 0;
  std::vector<double> grad_g, grad_e;
  for (int64_t m = 0; m < M; ++m) {
    g_last = global.apply_lbl(0, m, bufs[m]);
    grad_g.assign(bufs[m].lbl_grad.begin(), bufs[m].lbl_grad.begin() + 6);
    e_last = exact.apply_lbl(0, m, bufs[m]);
    grad_e.assign(bufs[m].lbl_grad.begin(), bufs[m].lbl_grad.begin() + 6);
  }
  EXPECT_DOUBLE_EQ(g_last, e_last);
  EXPECT_EQ(grad_g, grad_e);
}

TEST(BalancerTest, GlobalExactAveragedOverMicroBatchesEqualsTheConcatenatedBatch) {
  const int64_t B = 2, S = 8, M = 3, n = B * S;
  auto bufs = routed_micro_batches(n, M, 9);
  Balancer<double> exact(balancer_opts(B, S, M, {{LblScope::kGlobalExact, 0.01}}), nullptr);
  exact.begin_step(0);
  for (int64_t m = 0; m < M; ++m) exact.record_prepass(0, m, bufs[m]);
  exact.finish_prepass();
  double mean = 0;
  for (int64_t m = 0; m < M; ++m) mean += exact.apply_lbl(0, m, bufs[m]) / M;
  // The concatenated batch on one process, micro scope.
  RoutingBuffers<double> all;
  all.resize(n * M, 6, 2);
  all.n = n * M;
  for (int64_t m = 0; m < M; ++m) {
    std::copy(bufs[m].scores.begin(), bufs[m].scores.begin() + n * 6,
              all.scores.begin() + m * n * 6);
    for (int i = 0; i < 6; ++i) all.load[i] += bufs[m].load[i];
  }
  std::vector<double> f(6);
  micro_fractions(all, f.data());
  lbl_begin(all, all.n);
  EXPECT_NEAR(mean, lbl_add_term(all, ScoreFn::kSoftmax, 0.01, f.data(), 1), 1e-15);
}

TEST(BalancerTest, ShuffleSamplesTheStepsSelections) {
  const int64_t B = 2, S = 8, M = 4, n = B * S;
  auto bufs = routed_micro_batches(n, M, 13);
  Balancer<double> shuf(balancer_opts(B, S, M, {{LblScope::kShuffle, 1.0}}), nullptr);
  shuf.begin_step(7);
  for (int64_t m = 0; m < M; ++m) shuf.record_prepass(0, m, bufs[m]);
  shuf.finish_prepass();
  shuf.apply_lbl(0, 0, bufs[0]);
  // f·K·n are integer counts of n sampled tokens' selections: Σ = K·n, each ≤ the step's load.
  double sum = 0;
  for (int i = 0; i < 6; ++i) {
    const double c = bufs[0].lbl_grad[i] * n * n / 6.0 * 2;  // α·E·f/n with α = 1 → f·K·n
    EXPECT_NEAR(c, std::round(c), 1e-9);
    int64_t step_load = 0;
    for (int64_t m = 0; m < M; ++m) step_load += bufs[m].load[i];
    EXPECT_LE(std::round(c), step_load);
    sum += c;
  }
  EXPECT_NEAR(sum, 2.0 * n, 1e-9);
}

TEST(BalancerTest, LossFreeBiasMovesTowardBalance) {
  for (BiasUpdate u : {BiasUpdate::kSign, BiasUpdate::kProportional}) {
    BalancerOptions o = balancer_opts(1, 4, 1, {});
    o.bias_update = u;
    o.bias_rate = 0.01;
    o.bias_center = true;
    Balancer<float> b(o, nullptr);
    b.begin_step(0);
    b.end_step({{10, 2, 6, 6, 6, 6}});
    const float* bias = b.bias(0);
    EXPECT_LT(bias[0], 0.f);  // overloaded: pushed down
    EXPECT_GT(bias[1], 0.f);  // underloaded: pushed up
    float s = 0;
    for (int i = 0; i < 6; ++i) s += bias[i];
    EXPECT_NEAR(s, 0.f, 1e-6);  // centred
  }
}

TEST(BalancerTest, FrozenBiasDoesNotMove) {
  BalancerOptions o = balancer_opts(1, 4, 1, {});
  o.bias_update = BiasUpdate::kSign;
  o.bias_freeze_after = 3;
  Balancer<float> b(o, nullptr);
  b.begin_step(3);
  b.end_step({{10, 2, 6, 6, 6, 6}});
  EXPECT_EQ(b.bias(0)[0], 0.f);
}

}  // namespace
}  // namespace sy
