#include "routing/bip.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/vec_math.h"
#include "routing/bip_test_util.h"
#include "routing/optimal.h"
#include "switchyard/router.h"

namespace sy {
namespace {

using bip_testing::normal_logits;
using bip_testing::random_scores;
using bip_testing::softmax_rows;

struct Case {
  int64_t n, m, k;
  uint64_t seed;
};

// Random shapes with n ≤ 512, E ≤ 32, K ≤ 4 (the regime ALGORITHMS.md §5 describes).
const Case kCases[] = {{512, 32, 4, 1}, {512, 16, 2, 2}, {256, 32, 1, 3}, {384, 8, 2, 4},
                       {100, 12, 3, 5}, {512, 32, 2, 6}, {64, 8, 4, 7},   {500, 24, 4, 8}};

// Runs T iterations from q (in/out), returning the dual after each iteration.
template <typename T>
std::vector<double> iterate(const BipShape& sh, const std::vector<T>& s, int iters,
                            std::vector<T>& q) {
  std::vector<T> p(sh.n), scratch(bip_scratch_size(sh.n, sh.m, 2));
  std::vector<double> dual(iters);
  bip_iterate(sh, s.data(), iters, q.data(), p.data(), scratch.data(),
              static_cast<int64_t>(scratch.size()), dual.data());
  return dual;
}

double optimum(const BipShape& sh, const std::vector<double>& s) {
  std::vector<int32_t> ex(sh.n * sh.k);
  std::vector<int64_t> loads(sh.m);
  return optimal_assign(sh, s.data(), ex.data(), loads.data());
}

TEST(BipTest, DualNeverIncreasesNeverBelowOptimumAndConvergesIn16Iterations) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "n=" << c.n << " m=" << c.m << " k=" << c.k);
    const BipShape sh = bip_shape(c.n, c.m, c.k);
    const std::vector<double> s = random_scores(c.n, c.m, c.seed);
    const double opt = optimum(sh, s);
    std::vector<double> q(c.m, 0.0);  // cold start
    const std::vector<double> dual = iterate(sh, s, 16, q);
    for (int j = 0; j < 16; ++j) {
      EXPECT_GE(dual[j], opt * (1 - 1e-6)) << "iteration " << j;  // weak duality
      if (j > 0) {
        EXPECT_LE(dual[j], dual[j - 1] * (1 + 1e-12)) << "iteration " << j;
      }
    }
    // The stall level grows as the capacity c shrinks. Measured (10 seeds each, max dual gap
    // after 16 iterations, unchanged after 200): c=64..128: ≤ 8e-4; c=16: 1.8e-3; c=8 (N=256,
    // E=32, K=1): 4.2e-3; c=4 (N=128, E=32, K=1): 1.1e-2. So 2e-3 holds for c ≥ 16 only.
    EXPECT_LE(dual[15] / opt - 1, sh.capacity >= 16 ? 2e-3 : 1.5e-2) << "c=" << sh.capacity;
    for (double v : q) EXPECT_GE(v, 0.0);
  }
}

// The dual at the prices: D(p*, q) with p* each token's (K+1)-th largest s − q (a minimiser),
// never above D(p, q) for the iteration's own p, never below the optimum; 0 prices give the
// unconstrained top-K objective.
TEST(BipTest, DualAtPricesMinimisesOverTheTokenPrices) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "n=" << c.n << " m=" << c.m << " k=" << c.k);
    const BipShape sh = bip_shape(c.n, c.m, c.k);
    const std::vector<double> s = random_scores(c.n, c.m, c.seed);
    const double opt = optimum(sh, s);
    std::vector<double> q(c.m, 0.0), p(c.n), scratch(bip_scratch_size(sh.n, sh.m, 2));
    std::vector<int32_t> top(c.n * c.k);
    bip_route(sh, s.data(), q.data(), top.data());
    EXPECT_NEAR(bip_dual_at_prices(sh, s.data(), q.data()),
                assignment_objective(sh, s.data(), top.data()), 1e-9);
    for (int it = 1; it <= 4; ++it) {
      bip_iterate(sh, s.data(), 1, q.data(), p.data(), scratch.data(),
                  static_cast<int64_t>(scratch.size()));
      const double d = bip_dual_at_prices(sh, s.data(), q.data());
      std::vector<double> pstar(c.n);
      for (int64_t t = 0; t < c.n; ++t) {
        std::vector<double> v(c.m);
        for (int64_t i = 0; i < c.m; ++i) v[i] = s[t * c.m + i] - q[i];
        std::sort(v.begin(), v.end(), std::greater<>());
        pstar[t] = c.k < c.m ? v[c.k] : v[c.k - 1];
      }
      EXPECT_NEAR(d, bip_dual_objective(sh, s.data(), pstar.data(), q.data()), 1e-9 * c.n);
      EXPECT_LE(d, bip_dual_objective(sh, s.data(), p.data(), q.data()) + 1e-9 * c.n);
      EXPECT_GE(d, opt * (1 - 1e-9)) << "iteration " << it;
    }
  }
}

TEST(BipTest, FloatScoresBehaveLikeDouble) {
  const Case c = kCases[0];
  const BipShape sh = bip_shape(c.n, c.m, c.k);
  const std::vector<double> sd = random_scores(c.n, c.m, c.seed);
  const std::vector<float> sf(sd.begin(), sd.end());
  const double opt = optimum(sh, sd);
  std::vector<float> q(c.m, 0.f);
  const std::vector<double> dual = iterate(sh, sf, 16, q);
  for (int j = 0; j < 16; ++j) {
    EXPECT_GE(dual[j], opt * (1 - 1e-6));
    if (j > 0) {
      EXPECT_LE(dual[j], dual[j - 1] * (1 + 1e-6));
    }
  }
  EXPECT_LE(dual[15] / opt - 1, 2e-3);
}

TEST(BipTest, ResultDoesNotDependOnThreadCount) {
  const Case c = kCases[1];
  const BipShape sh = bip_shape(c.n, c.m, c.k);
  const std::vector<double> s = random_scores(c.n, c.m, c.seed);
  std::vector<double> q1(c.m, 0.0), q2(c.m, 0.0), p1(c.n), p2(c.n);
  std::vector<double> sc1(bip_scratch_size(c.n, c.m, 1)), sc2(bip_scratch_size(c.n, c.m, 2));
  bip_iterate(sh, s.data(), 3, q1.data(), p1.data(), sc1.data(), sc1.size());
  bip_iterate(sh, s.data(), 3, q2.data(), p2.data(), sc2.data(), sc2.size());
  EXPECT_EQ(q1, q2);
  EXPECT_EQ(p1, p2);
}

TEST(BipTest, WarmStartGivesASmallerDualGapAtOneIterationOnACorrelatedBatch) {
  const int64_t n = 512, m = 32, k = 4;
  const BipShape sh = bip_shape(n, m, k);
  int warm_wins = 0;
  for (uint64_t seed = 11; seed < 16; ++seed) {
    // Two batches sharing a per-expert bias (a router that prefers some experts), as in training.
    std::vector<double> bias = normal_logits(1, m, seed * 7);
    auto batch = [&](uint64_t sd) {
      std::vector<double> z = normal_logits(n, m, sd);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < m; ++i) z[t * m + i] += 1.5 * bias[i];
      softmax_rows(z, n, m);
      return z;
    };
    const std::vector<double> s1 = batch(seed), s2 = batch(seed + 1000);
    std::vector<double> q_warm(m, 0.0), q_cold(m, 0.0);
    iterate(sh, s1, 16, q_warm);
    const double opt = optimum(sh, s2);
    const double warm = iterate(sh, s2, 1, q_warm)[0] / opt - 1;
    const double cold = iterate(sh, s2, 1, q_cold)[0] / opt - 1;
    EXPECT_LE(warm, cold) << "seed " << seed;
    warm_wins += warm < cold;
  }
  EXPECT_GT(warm_wins, 0);
}

TEST(BipTest, CausalRoutesWithThePreviousPricesAsPublishedWithTheNewOnes) {
  const int64_t n = 128, m = 8, k = 2;
  const BipShape sh = bip_shape(n, m, k);
  const std::vector<double> s = random_scores(n, m, 21);
  std::vector<double> q0(m);
  for (int64_t i = 0; i < m; ++i) q0[i] = 0.01 * static_cast<double>(i);
  std::vector<double> p(n), scratch(bip_scratch_size(n, m, 2));
  std::vector<int32_t> got(n * k), want(n * k);

  std::vector<double> q = q0;
  bip_step(BipMode::kCausal, sh, s.data(), 2, q.data(), p.data(), scratch.data(), scratch.size(),
           got.data());
  bip_route(sh, s.data(), q0.data(), want.data());
  EXPECT_EQ(got, want);
  std::vector<double> q_ref = q0;
  bip_iterate(sh, s.data(), 2, q_ref.data(), p.data(), scratch.data(), scratch.size());
  EXPECT_EQ(q, q_ref);

  q = q0;
  bip_step(BipMode::kAsPublished, sh, s.data(), 2, q.data(), p.data(), scratch.data(),
           scratch.size(), got.data());
  bip_route(sh, s.data(), q_ref.data(), want.data());
  EXPECT_EQ(q, q_ref);
  EXPECT_EQ(got, want);
}

// The BIP router (switchyard/router.h) keeps q as its state; routed_prices() is the q that
// routed (before the update in causal mode, after it as published), what the oracle's dual gap is
// computed at, and the experts are the top-K of s − that q; null for other router families.
TEST(BipTest, RouterRecordsThePricesThatRouted) {
  const int64_t n = 96, m = 8, k = 2;
  const std::vector<double> zd = normal_logits(n, m, 23);
  const std::vector<float> z(zd.begin(), zd.end());
  TopKOptions o;
  o.n_experts = m;
  o.top_k = k;
  RoutingPlan<float> plan;
  plan.resize(n, m, n * k);
  for (BipMode mode : {BipMode::kCausal, BipMode::kAsPublished}) {
    RouterOptions ro;
    ro.type = "bip";
    ro.bip_mode = mode;
    const std::unique_ptr<Router<float>> router = make_router<float>(ro, o, n);
    ASSERT_EQ(router->state().size(), 1u);
    EXPECT_STREQ(router->state()[0].name, "bip_dual");
    float* q = router->state()[0].data;
    for (int64_t i = 0; i < m; ++i) q[i] = 0.01f * static_cast<float>(i);
    const std::vector<float> q0(q, q + m);
    router->route(z.data(), n, RouteCall<float>{}, plan);
    ASSERT_NE(router->routed_prices(), nullptr);
    const std::vector<float> q1(q, q + m);
    EXPECT_NE(q1, q0);
    const std::vector<float>& want = mode == BipMode::kCausal ? q0 : q1;
    for (int64_t i = 0; i < m; ++i) EXPECT_EQ(router->routed_prices()[i], want[i]);
    // The experts: top-K of s − q at the routed prices (as sets: slot order is by gate).
    const RoutingBuffers<float>& r = *router->slots();
    std::vector<int32_t> ex(n * k);
    bip_route(bip_shape(n, m, k), r.scores.data(), want.data(), ex.data());
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int32_t> got(r.expert.begin() + t * k, r.expert.begin() + (t + 1) * k);
      std::vector<int32_t> exp(ex.begin() + t * k, ex.begin() + (t + 1) * k);
      std::sort(got.begin(), got.end());
      std::sort(exp.begin(), exp.end());
      ASSERT_EQ(got, exp) << "token " << t;
    }
  }
  RouterOptions ro;
  ro.type = "sinkhorn";
  const std::unique_ptr<Router<float>> sinkhorn = make_router<float>(ro, o, n);
  sinkhorn->route(z.data(), n, RouteCall<float>{}, plan);
  EXPECT_EQ(sinkhorn->routed_prices(), nullptr);
}

TEST(BipTest, RouteIsTopKOfShiftedScoresWithTiesToTheLowerIndex) {
  const BipShape sh{2, 4, 2, 1};
  const std::vector<double> s = {0.5, 0.5, 0.5, 0.5, /**/ 0.1, 0.4, 0.3, 0.2};
  const std::vector<double> q = {0.0, 0.0, 0.0, 0.0};
  std::vector<int32_t> ex(4);
  bip_route(sh, s.data(), q.data(), ex.data());
  EXPECT_EQ(ex, (std::vector<int32_t>{0, 1, 1, 2}));
  const std::vector<double> q2 = {0.0, 0.35, 0.0, 0.0};  // expert 1 priced out of token 1
  bip_route(sh, s.data(), q2.data(), ex.data());
  EXPECT_EQ(ex[2], 2);
  EXPECT_EQ(ex[3], 3);
}

TEST(BipTest, RowAndColumnPassesAreTheCoordinateMinimisers) {
  // n=3, m=2, k=1, c=2: p[t] = 2nd largest of s[t,·] − q; q[i] = max(0, 3rd largest of s[·,i] − p).
  const BipShape sh{3, 2, 1, 2};
  const std::vector<double> s = {0.9, 0.1, 0.8, 0.2, 0.7, 0.3};
  std::vector<double> q = {0, 0}, p(3), scratch(bip_scratch_size(3, 2, 1));
  bip_iterate(sh, s.data(), 1, q.data(), p.data(), scratch.data(), scratch.size());
  EXPECT_EQ(p, (std::vector<double>{0.1, 0.2, 0.3}));
  // s − p: column 0 = {0.8, 0.6, 0.4} → 3rd largest 0.4; column 1 = {0, 0, 0} → 0.
  EXPECT_NEAR(q[0], 0.4, 1e-15);
  EXPECT_EQ(q[1], 0.0);
}

TEST(BipTest, CapacityIsTheCeilingOfKNOverE) {
  EXPECT_EQ(bip_capacity(512, 32, 4), 64);
  EXPECT_EQ(bip_capacity(10, 3, 1), 4);  // C = 3.33: floor 3 would be infeasible (3·3 < 10)
  EXPECT_EQ(bip_capacity(0, 3, 1), 0);
}

TEST(BipTest, RejectsInfeasibleCapacityAndBadSizes) {
  std::vector<double> s(12, 0.1), q(3, 0.0), p(4), scratch(bip_scratch_size(4, 3, 1));
  auto run = [&](BipShape sh, int iters, int64_t scratch_size) {
    bip_iterate(sh, s.data(), iters, q.data(), p.data(), scratch.data(), scratch_size);
  };
  EXPECT_THROW(run({4, 3, 1, 1}, 1, scratch.size()), Error);  // 1·3 < 1·4
  EXPECT_THROW(run({4, 3, 4, 8}, 1, scratch.size()), Error);  // k > m
  EXPECT_THROW(run({4, 3, 1, 2}, 0, scratch.size()), Error);  // no iteration
  EXPECT_THROW(run({4, 3, 1, 2}, 1, 2), Error);               // scratch too small
  EXPECT_NO_THROW(run({4, 3, 1, 2}, 1, scratch.size()));
  EXPECT_EQ(parse_bip_mode("causal"), BipMode::kCausal);
  EXPECT_EQ(parse_bip_mode("as-published"), BipMode::kAsPublished);
  EXPECT_THROW(parse_bip_mode("published"), Error);
}

// The passes as written in bip.h, with nth_element on copies: the reference for the float
// kernels (transposed scores, insertion network, radix selection of the positive margins).
void reference_iterate(const BipShape& sh, const std::vector<float>& s, int iters,
                       std::vector<float>& q, std::vector<float>& p) {
  const int64_t n = sh.n, m = sh.m, c = sh.capacity;
  const auto rth = [](std::vector<float>& v, int64_t r) {
    if (r >= static_cast<int64_t>(v.size())) return *std::min_element(v.begin(), v.end());
    std::nth_element(v.begin(), v.begin() + r, v.end(), std::greater<>());
    return v[r];
  };
  for (int it = 0; it < iters; ++it) {
    std::vector<float> v(m);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < m; ++i) v[i] = s[t * m + i] - q[i];
      p[t] = rth(v, sh.k);
    }
    v.resize(n);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t t = 0; t < n; ++t) v[t] = s[t * m + i] - p[t];
      q[i] = c >= n ? 0.f : std::max(0.f, rth(v, c));
    }
  }
}

TEST(BipTest, FloatPassesMatchTheReferenceExactlyIncludingTies) {
  struct Shape {
    int64_t n, m, k;
  };
  const Shape shapes[] = {{2048, 16, 4}, {1000, 64, 6}, {333, 20, 3}, {64, 8, 7},
                          {50, 6, 6},    {300, 24, 16}, {16, 4, 1},   {17, 64, 2}};
  for (const Shape& sp : shapes) {
    for (int kind = 0; kind < 3; ++kind) {
      SCOPED_TRACE(::testing::Message()
                   << "n=" << sp.n << " m=" << sp.m << " k=" << sp.k << " kind=" << kind);
      const BipShape sh = bip_shape(sp.n, sp.m, sp.k);
      const std::vector<double> sd = random_scores(sp.n, sp.m, 40 + kind);
      std::vector<float> s(sd.begin(), sd.end());
      // kind 1: scores on a grid of 1/64 (many ties); kind 2: most scores exactly 0.
      for (float& x : s) {
        if (kind == 1) x = std::round(x * 64.f) / 64.f;
        if (kind == 2 && x < 0.1f) x = 0.f;
      }
      std::vector<float> q(sp.m, 0.f), p(sp.n), q_ref(sp.m, 0.f), p_ref(sp.n);
      for (int64_t i = 0; i < sp.m; i += 3) q[i] = q_ref[i] = 0.01f * static_cast<float>(i % 5);
      std::vector<float> scratch(bip_scratch_size(sp.n, sp.m, 3));
      for (int round = 0; round < 3; ++round) {  // cold-ish, then warm starts
        bip_iterate(sh, s.data(), 2, q.data(), p.data(), scratch.data(),
                    static_cast<int64_t>(scratch.size()));
        reference_iterate(sh, s, 2, q_ref, p_ref);
        // Values compare equal (a zero may differ in sign: the kernels return +0).
        for (int64_t i = 0; i < sp.m; ++i) ASSERT_EQ(q[i], q_ref[i]) << "expert " << i;
        for (int64_t t = 0; t < sp.n; ++t) ASSERT_EQ(p[t], p_ref[t]) << "token " << t;
      }
    }
  }
}

// The BIP router computes the scores transposed (float, AVX-512) and iterates on them: the same
// scores as the scalar softmax/sigmoid loop, bit for bit, hence the same prices as the reference.
TEST(BipTest, RouterTransposedScoresGiveTheReferencePrices) {
  struct Shape {
    int64_t n, m, k;
  };
  const Shape shapes[] = {{2048, 16, 4}, {333, 20, 3}, {100, 64, 6}, {40, 8, 8}, {300, 24, 16}};
  for (const Shape& sp : shapes) {
    for (ScoreFn score : {ScoreFn::kSoftmax, ScoreFn::kSigmoid}) {
      SCOPED_TRACE(::testing::Message() << "n=" << sp.n << " m=" << sp.m << " k=" << sp.k
                                        << " sigmoid=" << (score == ScoreFn::kSigmoid));
      const std::vector<double> zd = normal_logits(sp.n, sp.m, 70 + sp.m);
      const std::vector<float> z(zd.begin(), zd.end());
      // The scalar scores, as the router's generic path computes them.
      std::vector<float> s(sp.n * sp.m);
      for (int64_t t = 0; t < sp.n; ++t) {
        const float* zt = z.data() + t * sp.m;
        float* st = s.data() + t * sp.m;
        if (score == ScoreFn::kSigmoid) {
          for (int64_t i = 0; i < sp.m; ++i) st[i] = 1.f / (1.f + detail::fast_exp(-zt[i]));
          continue;
        }
        float mx = zt[0], sum = 0;
        for (int64_t i = 1; i < sp.m; ++i) mx = std::max(mx, zt[i]);
        for (int64_t i = 0; i < sp.m; ++i) sum += (st[i] = detail::fast_exp(zt[i] - mx));
        const float inv = 1.f / sum;
        for (int64_t i = 0; i < sp.m; ++i) st[i] *= inv;
      }
      TopKOptions o;
      o.n_experts = sp.m;
      o.top_k = sp.k;
      o.score = score;
      RouterOptions ro;
      ro.type = "bip";
      ro.bip_iterations = 2;
      const std::unique_ptr<Router<float>> router = make_router<float>(ro, o, sp.n);
      RoutingPlan<float> plan;
      plan.resize(sp.n, sp.m, sp.n * sp.k);
      const float* q = router->state()[0].data;
      const BipShape sh = bip_shape(sp.n, sp.m, sp.k);
      std::vector<float> q_ref(sp.m, 0.f), p_ref(sp.n);
      for (int call = 0; call < 3; ++call) {
        router->route(z.data(), sp.n, RouteCall<float>{}, plan);
        reference_iterate(sh, s, 2, q_ref, p_ref);
        for (int64_t i = 0; i < sp.m; ++i) {
          ASSERT_EQ(q[i], q_ref[i]) << "call " << call << " expert " << i;
          ASSERT_EQ(router->routed_prices()[i], q_ref[i]);
        }
      }
    }
  }
}

// bip_iterations = 0 iterates to a fixed point up to rounding: one more iteration moves no
// price by more than 8 ulp of 1 (the exact iteration can cycle between neighbouring floats).
TEST(BipTest, IteratingUntilQStopsChangingReachesAFixedPoint) {
  for (int64_t m : {16, 64}) {
    const int64_t n = 1024, k = 4;
    const std::vector<double> zd = normal_logits(n, m, 91 + m);
    const std::vector<float> z(zd.begin(), zd.end());
    TopKOptions o;
    o.n_experts = m;
    o.top_k = k;
    RoutingPlan<float> plan;
    plan.resize(n, m, n * k);
    // Routes once from q = q0 with T iterations; returns the q after.
    auto iterate = [&](int iterations, const std::vector<float>& q0) {
      RouterOptions ro;
      ro.type = "bip";
      ro.bip_iterations = iterations;
      const std::unique_ptr<Router<float>> router = make_router<float>(ro, o, n);
      float* q = router->state()[0].data;
      std::copy(q0.begin(), q0.end(), q);
      router->route(z.data(), n, RouteCall<float>{}, plan);
      return std::vector<float>(q, q + m);
    };
    const std::vector<float> zero(m, 0.f);
    const std::vector<float> fixed = iterate(0, zero);
    EXPECT_GT(*std::max_element(fixed.begin(), fixed.end()), 0.f);  // it did move
    // Two iterations from q = 0 are far from the fixed point.
    const std::vector<float> q2 = iterate(2, zero);
    float from_two = 0;
    for (int64_t i = 0; i < m; ++i) from_two = std::max(from_two, std::abs(q2[i] - fixed[i]));
    EXPECT_GT(from_two, 1e-5f) << "m=" << m;
    const std::vector<float> q = iterate(1, fixed);
    for (int64_t i = 0; i < m; ++i)
      EXPECT_LE(std::abs(q[i] - fixed[i]), 8 * std::numeric_limits<float>::epsilon())
          << "m=" << m << " expert " << i;
  }
}

TEST(BipTest, TransposedScoresGiveTheSamePricesInDouble) {
  const Case c = kCases[5];
  const BipShape sh = bip_shape(c.n, c.m, c.k);
  const std::vector<double> s = random_scores(c.n, c.m, c.seed);
  const int64_t ld = bip_transposed_ld(c.n);
  std::vector<double> sT(c.m * ld);
  for (int64_t t = 0; t < c.n; ++t)
    for (int64_t i = 0; i < c.m; ++i) sT[i * ld + t] = s[t * c.m + i];
  std::vector<double> q1(c.m, 0.0), q2(c.m, 0.0), p1(c.n), p2(c.n);
  std::vector<double> scratch(bip_scratch_size(c.n, c.m, 2));
  bip_iterate(sh, s.data(), 3, q1.data(), p1.data(), scratch.data(), scratch.size());
  bip_iterate_transposed(sh, sT.data(), 3, q2.data(), p2.data(), scratch.data(), scratch.size());
  EXPECT_EQ(q1, q2);
  EXPECT_EQ(p1, p2);
}

// Measures what coordinate minimisation leaves: the routed assignment's objective gap and
// capacity violation against the oracle, for T = 1, 2, 4, 16, cold start, over 10 instances.
// Prints the table; checks only sane bounds (the numbers are the point, ALGORITHMS.md §5).
TEST(BipTest, MeasuresRoutedGapAndCapacityViolationAgainstTheOracle) {
  const int kIters[] = {1, 2, 4, 16};
  struct Acc {
    double gap_sum = 0, gap_max = -1, vio_sum = 0, vio_max = 0, dual_sum = 0, dual_max = 0;
    double over_sum = 0;
    int64_t over_max = 0;
  } acc[4];
  const int kInstances = 10;
  for (int r = 0; r < kInstances; ++r) {
    const int64_t n = 512, m = (r % 2 == 0) ? 32 : 16, k = 1 + r % 4;
    const BipShape sh = bip_shape(n, m, k);
    const std::vector<double> s = random_scores(n, m, 100 + r);
    const double opt = optimum(sh, s);
    std::vector<double> q(m, 0.0), p(n), scratch(bip_scratch_size(n, m, 2));
    std::vector<int32_t> ex(n * k);
    std::vector<int64_t> loads(m);
    int done = 0;
    for (int j = 0; j < 4; ++j) {
      const int more = kIters[j] - done;  // continue the same run: T is cumulative
      std::vector<double> dual(more);
      bip_iterate(sh, s.data(), more, q.data(), p.data(), scratch.data(), scratch.size(),
                  dual.data());
      done = kIters[j];
      bip_route(sh, s.data(), q.data(), ex.data());
      const AssignmentReport rep =
          assignment_report(sh, s.data(), ex.data(), opt, loads.data(), dual.back());
      acc[j].gap_sum += rep.objective_gap;
      acc[j].gap_max = std::max(acc[j].gap_max, rep.objective_gap);
      acc[j].vio_sum += rep.maxvio;
      acc[j].vio_max = std::max(acc[j].vio_max, rep.maxvio);
      acc[j].dual_sum += rep.dual_gap;
      acc[j].dual_max = std::max(acc[j].dual_max, rep.dual_gap);
      acc[j].over_sum += static_cast<double>(rep.capacity_violation);
      acc[j].over_max = std::max(acc[j].over_max, rep.capacity_violation);
      EXPECT_GE(rep.dual_gap, -1e-6);
      EXPECT_LT(std::abs(rep.objective_gap), 0.1);
      EXPECT_LT(rep.maxvio, 5.0);
    }
  }
  std::printf("BIP vs oracle, n=512, E in {16,32}, K in 1..4, cold start, %d instances\n",
              kInstances);
  std::printf("%4s %24s %22s %24s %22s\n", "T", "objective gap mean/max", "MaxVio mean/max",
              "max load - c mean/max", "dual gap mean/max");
  for (int j = 0; j < 4; ++j) {
    std::printf("%4d %11.2e / %9.2e %10.4f / %8.4f %12.2f / %8lld %10.2e / %9.2e\n", kIters[j],
                acc[j].gap_sum / kInstances, acc[j].gap_max, acc[j].vio_sum / kInstances,
                acc[j].vio_max, acc[j].over_sum / kInstances,
                static_cast<long long>(acc[j].over_max), acc[j].dual_sum / kInstances,
                acc[j].dual_max);
  }
  EXPECT_LE(acc[3].dual_sum, acc[0].dual_sum);  // more iterations never hurt the dual
}

}  // namespace
}  // namespace sy
