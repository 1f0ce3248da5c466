#include "switchyard/balancer.h"

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

// Groups: global-exact over groups of one micro-batch is the micro scope (one rank), and over
// groups of G it is the micro scope of the G micro-batches concatenated; the global buffer restarts
// at each group's first micro-batch, so at a group's last it equals global-exact's group.
TEST(BalancerTest, GroupsCountFOverGroupsOfMicroBatches) {
  const int64_t B = 2, S = 8, M = 4, n = B * S;
  auto bufs = routed_micro_batches(n, M, 21);
  auto term = [](LblScope s, int64_t group) {
    return LblTerm{.scope = s, .coef = 1.0, .group = group};
  };
  Balancer<double> micro(balancer_opts(B, S, M, {term(LblScope::kMicro, 0)}), nullptr);
  Balancer<double> exact1(balancer_opts(B, S, M, {term(LblScope::kGlobalExact, 1)}), nullptr);
  Balancer<double> exact2(balancer_opts(B, S, M, {term(LblScope::kGlobalExact, 2)}), nullptr);
  Balancer<double> global2(balancer_opts(B, S, M, {term(LblScope::kGlobal, 2)}), nullptr);
  for (Balancer<double>* b : {&micro, &exact1, &exact2, &global2}) b->begin_step(0);
  for (Balancer<double>* b : {&exact1, &exact2}) {
    for (int64_t m = 0; m < M; ++m) b->record_prepass(0, m, bufs[m]);
    b->finish_prepass();
  }
  EXPECT_EQ(exact1.balance_bsz(0), B);
  EXPECT_EQ(exact2.balance_bsz(0), 2 * B);
  EXPECT_EQ(global2.balance_bsz(0), 2 * B);
  auto grad = [](const RoutingBuffers<double>& r) {
    return std::vector<double>(r.lbl_grad.begin(), r.lbl_grad.begin() + 6);  // one row: f·P
  };
  for (int64_t m = 0; m < M; ++m) {
    const double lm = micro.apply_lbl(0, m, bufs[m]);
    const std::vector<double> gm = grad(bufs[m]);
    EXPECT_EQ(exact1.apply_lbl(0, m, bufs[m]), lm) << m;
    EXPECT_EQ(grad(bufs[m]), gm) << m;
    const double le = exact2.apply_lbl(0, m, bufs[m]);
    const std::vector<double> ge = grad(bufs[m]);
    const double lg = global2.apply_lbl(0, m, bufs[m]);
    if (m % 2 == 1) {  // a group's last micro-batch: the buffer holds the whole group
      EXPECT_DOUBLE_EQ(lg, le) << m;
      EXPECT_EQ(grad(bufs[m]), ge) << m;
    } else {  // a group's first: the buffer holds this micro-batch only, as the micro scope
      EXPECT_DOUBLE_EQ(lg, lm) << m;
    }
    // Group 2 of micro-batches {2m', 2m'+1}: f from their summed loads.
    std::vector<double> f(6);
    const int64_t first = m / 2 * 2;
    for (int i = 0; i < 6; ++i)
      f[i] = static_cast<double>(bufs[first].load[i] + bufs[first + 1].load[i]) / (2.0 * 2 * n);
    RoutingBuffers<double> copy = bufs[m];
    lbl_begin(copy, copy.n);
    EXPECT_NEAR(le, lbl_add_term(copy, ScoreFn::kSoftmax, 1.0, f.data(), 1), 1e-14) << m;
  }
}

// A term applies in steps [from_step, until_step): outside, it adds no loss and no gradient,
// needs no pre-pass and reports balance BSZ 0; two adjoining terms switch micro → global-exact.
TEST(BalancerTest, TermsApplyInTheirStepRange) {
  const int64_t B = 2, S = 8, M = 2;
  auto bufs = routed_micro_batches(B * S, M, 33);
  Balancer<double> b(
      balancer_opts(B, S, M,
                    {LblTerm{.scope = LblScope::kMicro, .coef = 1.0, .until_step = 3},
                     LblTerm{.scope = LblScope::kGlobalExact, .coef = 1.0, .from_step = 3}}),
      nullptr);
  Balancer<double> micro(balancer_opts(B, S, M, {{LblScope::kMicro, 1.0}}), nullptr);
  Balancer<double> exact(balancer_opts(B, S, M, {{LblScope::kGlobalExact, 1.0}}), nullptr);
  for (int64_t step : {0, 2, 3, 9}) {
    b.begin_step(step);
    const bool switched = step >= 3;
    EXPECT_EQ(b.needs_prepass(), switched) << step;
    EXPECT_EQ(b.balance_bsz(0), switched ? 0 : B) << step;
    EXPECT_EQ(b.balance_bsz(1), switched ? B * M : 0) << step;
    Balancer<double>& ref = switched ? exact : micro;
    ref.begin_step(step);
    if (switched) {
      for (int64_t m = 0; m < M; ++m) {
        b.record_prepass(0, m, bufs[m]);
        ref.record_prepass(0, m, bufs[m]);
      }
      b.finish_prepass();
      ref.finish_prepass();
    }
    for (int64_t m = 0; m < M; ++m) {
      const double want = ref.apply_lbl(0, m, bufs[m]);
      const std::vector<double> g(bufs[m].lbl_grad.begin(), bufs[m].lbl_grad.begin() + 6);
      EXPECT_EQ(b.apply_lbl(0, m, bufs[m]), want) << step;
      EXPECT_EQ(std::vector<double>(bufs[m].lbl_grad.begin(), bufs[m].lbl_grad.begin() + 6), g);
    }
  }
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
