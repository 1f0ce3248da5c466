#include "routing/optimal.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/error.h"
#include "routing/bip_test_util.h"

namespace sy {
namespace {

using bip_testing::random_scores;

// Exhaustive optimum: every token picks one of the C(m, k) subsets, loads ≤ c. Tiny n only.
double brute_force(const BipShape& sh, const std::vector<double>& s) {
  std::vector<uint32_t> subsets;
  for (uint32_t mask = 0; mask < (1u << sh.m); ++mask)
    if (std::popcount(mask) == sh.k) subsets.push_back(mask);
  std::vector<int64_t> loads(sh.m, 0);
  double best = -std::numeric_limits<double>::infinity();
  std::function<void(int64_t, double)> rec = [&](int64_t t, double acc) {
    if (t == sh.n) {
      best = std::max(best, acc);
      return;
    }
    for (uint32_t mask : subsets) {
      bool ok = true;
      double add = 0;
      for (int64_t i = 0; i < sh.m; ++i)
        if (mask >> i & 1u) {
          ok &= loads[i] < sh.capacity;
          add += s[t * sh.m + i];
        }
      if (!ok) continue;
      for (int64_t i = 0; i < sh.m; ++i) loads[i] += mask >> i & 1u;
      rec(t + 1, acc + add);
      for (int64_t i = 0; i < sh.m; ++i) loads[i] -= mask >> i & 1u;
    }
  };
  rec(0, 0.0);
  return best;
}

// Each token has k distinct experts in descending score; loads match and respect c.
void expect_valid(const BipShape& sh, const std::vector<double>& s, const std::vector<int32_t>& ex,
                  const std::vector<int64_t>& loads) {
  std::vector<int64_t> count(sh.m, 0);
  for (int64_t t = 0; t < sh.n; ++t) {
    for (int64_t k = 0; k < sh.k; ++k) {
      const int32_t e = ex[t * sh.k + k];
      ASSERT_GE(e, 0);
      ASSERT_LT(e, sh.m);
      ++count[e];
      if (k > 0) {
        const int32_t prev = ex[t * sh.k + k - 1];
        EXPECT_TRUE(s[t * sh.m + prev] > s[t * sh.m + e] ||
                    (s[t * sh.m + prev] == s[t * sh.m + e] && prev < e));
      }
    }
  }
  EXPECT_EQ(count, loads);
  for (int64_t v : loads) EXPECT_LE(v, sh.capacity);
}

TEST(OptimalTest, MatchesBruteForceOnTinyInstances) {
  for (int64_t k = 1; k <= 2; ++k) {
    for (int64_t extra = 0; extra <= 1; ++extra) {  // tight c, then one slot looser
      for (uint64_t seed = 0; seed < 5; ++seed) {
        BipShape sh = bip_shape(6, 3, k);
        sh.capacity += extra;
        const std::vector<double> s = random_scores(6, 3, 40 + seed);
        std::vector<int32_t> ex(6 * k);
        std::vector<int64_t> loads(3);
        const double obj = optimal_assign(sh, s.data(), ex.data(), loads.data());
        EXPECT_NEAR(obj, brute_force(sh, s), 1e-9) << "k=" << k << " seed=" << seed;
        EXPECT_NEAR(obj, assignment_objective(sh, s.data(), ex.data()), 1e-12);
        expect_valid(sh, s, ex, loads);
      }
    }
  }
}

TEST(OptimalTest, NonIntegralCapacityIsRoundedUpAndStaysFeasible) {
  const BipShape sh = bip_shape(7, 3, 2);  // C = 14/3: c = 5
  ASSERT_EQ(sh.capacity, 5);
  const std::vector<double> s = random_scores(7, 3, 77);
  std::vector<int32_t> ex(14);
  std::vector<int64_t> loads(3);
  EXPECT_NEAR(optimal_assign(sh, s.data(), ex.data(), loads.data()), brute_force(sh, s), 1e-9);
  expect_valid(sh, s, ex, loads);
}

TEST(OptimalTest, LooseCapacityGivesPlainTopK) {
  const int64_t n = 200, m = 16, k = 3;
  const BipShape sh{n, m, k, n};  // no expert can be over-full
  const std::vector<double> s = random_scores(n, m, 5);
  std::vector<int32_t> ex(n * k);
  std::vector<int64_t> loads(m);
  const double obj = optimal_assign(sh, s.data(), ex.data(), loads.data());
  double topk = 0;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<double> row(s.begin() + t * m, s.begin() + (t + 1) * m);
    std::sort(row.rbegin(), row.rend());
    for (int64_t j = 0; j < k; ++j) topk += row[j];
  }
  EXPECT_NEAR(obj, topk, 1e-9);
}

TEST(OptimalTest, LoadsNeverExceedCapacityAtTrainingShapes) {
  const int64_t shapes[][3] = {{512, 32, 4}, {512, 16, 2}, {300, 32, 1}};
  for (const auto& sz : shapes) {
    const BipShape sh = bip_shape(sz[0], sz[1], sz[2]);
    const std::vector<float> s = [&] {
      const std::vector<double> d = random_scores(sz[0], sz[1], 9);
      return std::vector<float>(d.begin(), d.end());
    }();
    std::vector<int32_t> ex(sh.n * sh.k);
    std::vector<int64_t> loads(sh.m);
    const double obj = optimal_assign(sh, s.data(), ex.data(), loads.data());
    EXPECT_NEAR(obj, assignment_objective(sh, s.data(), ex.data()), 1e-9);
    int64_t total = 0;
    for (int64_t v : loads) {
      EXPECT_LE(v, sh.capacity);
      total += v;
    }
    EXPECT_EQ(total, sh.n * sh.k);
  }
}

TEST(OptimalTest, ReportScoresTheOptimumAsGapFreeAndTopKAsOverCapacity) {
  const int64_t n = 256, m = 8, k = 2;
  const BipShape sh = bip_shape(n, m, k);
  std::vector<double> s = random_scores(n, m, 3);
  for (int64_t t = 0; t < n; ++t) s[t * m] += 0.5;  // everybody wants expert 0
  std::vector<int32_t> ex(n * k);
  std::vector<int64_t> loads(m);
  const double opt = optimal_assign(sh, s.data(), ex.data(), loads.data());
  AssignmentReport r = assignment_report(sh, s.data(), ex.data(), opt, loads.data());
  EXPECT_NEAR(r.objective_gap, 0.0, 1e-12);
  EXPECT_LE(r.capacity_violation, 0);
  EXPECT_LE(r.maxvio, 1e-12);  // c = K·N/E exactly here
  EXPECT_TRUE(std::isnan(r.dual_gap));

  // Unconstrained top-K sends every token to expert 0: load n, c = 64.
  for (int64_t t = 0; t < n; ++t) {
    const double* st = s.data() + t * m;
    ex[t * k] = 0;
    ex[t * k + 1] = static_cast<int32_t>(std::max_element(st + 1, st + m) - st);
  }
  r = assignment_report(sh, s.data(), ex.data(), opt, loads.data(), opt * 1.01);
  EXPECT_EQ(r.max_load, n);
  EXPECT_EQ(r.capacity_violation, n - sh.capacity);
  EXPECT_NEAR(r.maxvio, static_cast<double>(n) / (static_cast<double>(k * n) / m) - 1, 1e-12);
  EXPECT_LT(r.objective_gap, 0);  // infeasible assignments can beat the optimum
  EXPECT_NEAR(r.dual_gap, 0.01, 1e-12);
}

TEST(OptimalTest, RejectsNonFiniteScoresAndInfeasibleCapacity) {
  std::vector<double> s(12, 0.25);
  std::vector<int32_t> ex(4);
  std::vector<int64_t> loads(3);
  EXPECT_THROW(optimal_assign(BipShape{4, 3, 1, 1}, s.data(), ex.data(), loads.data()), Error);
  s[5] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(optimal_assign(bip_shape(4, 3, 1), s.data(), ex.data(), loads.data()), Error);
}

}  // namespace
}  // namespace sy
