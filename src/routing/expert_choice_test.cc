#include "routing/expert_choice.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/gradcheck.h"
#include "core/rng.h"
#include "core/vec_math.h"

namespace sy {
namespace {

ExpertChoiceOptions opts(int64_t E, double c, int64_t chunk = 0) {
  ExpertChoiceOptions o;
  o.n_experts = E;
  o.capacity_factor = c;
  o.chunk = chunk;
  return o;
}

std::vector<int32_t> random_perm(int64_t n, uint64_t seed) {
  std::vector<int32_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(i + 1)]);
  return p;
}

// Naive reference: for each group and expert, sort the group's tokens by (score desc, index asc)
// and take the first k; returns selected[t·E + i].
template <typename T>
std::vector<int> naive_selection(const ExpertChoiceOptions& o, const std::vector<T>& S, int64_t n,
                                 const int32_t* perm) {
  const int64_t E = o.n_experts, G = o.chunk > 0 ? std::min(o.chunk, n) : n;
  std::vector<int> sel(n * E, 0);
  for (int64_t start = 0; start < n; start += G) {
    const int64_t tg = std::min(G, n - start);
    for (int64_t i = 0; i < E; ++i) {
      std::vector<int32_t> toks;
      for (int64_t p = 0; p < tg; ++p) toks.push_back(perm ? perm[start + p] : start + p);
      std::sort(toks.begin(), toks.end(), [&](int32_t a, int32_t b) {
        return S[a * E + i] > S[b * E + i] || (S[a * E + i] == S[b * E + i] && a < b);
      });
      for (int64_t r = 0; r < ec_capacity(o, tg); ++r) sel[toks[r] * E + i] = 1;
    }
  }
  return sel;
}

template <typename T>
void expect_plan_consistent(const ExpertChoiceBuffers<T>& buf, int64_t n, int64_t E) {
  EXPECT_EQ(buf.offsets[0], 0);
  EXPECT_EQ(buf.offsets[E], buf.rows);
  std::vector<int32_t> cnt(n, 0);
  for (int64_t i = 0; i < E; ++i) {
    for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r) {
      const int32_t t = buf.token_of_row[r];
      ++cnt[t];
      EXPECT_EQ(buf.gate_of_row[r], buf.scores[t * E + i]);
      if (r > buf.offsets[i]) {
        EXPECT_LT(buf.token_of_row[r - 1], t) << "rows of an expert must be in token order";
      }
    }
  }
  int64_t hist_sum = 0;
  for (int64_t b = 0; b < 6; ++b) hist_sum += buf.histogram[b];
  EXPECT_EQ(hist_sum, n);
  for (int64_t t = 0; t < n; ++t) {
    EXPECT_EQ(buf.experts_per_token[t], cnt[t]);
  }
  std::array<int64_t, 6> h{};
  for (int64_t t = 0; t < n; ++t) ++h[std::min(cnt[t], 5)];
  EXPECT_EQ(h, buf.histogram);
}

TEST(ExpertChoiceTest, EveryExpertTakesExactlyK) {
  const int64_t n = 64, E = 8;
  auto o = opts(E, 2.0);
  ASSERT_EQ(ec_capacity(o, n), 16);
  std::vector<double> zd(n * E);
  fill_normal(zd, 1, 2.0);
  std::vector<float> z(zd.begin(), zd.end());
  ExpertChoiceBuffers<float> buf;
  buf.resize(o, n);
  ec_route_forward(o, z.data(), n, nullptr, buf);
  EXPECT_EQ(buf.rows, 16 * E);
  for (int64_t i = 0; i < E; ++i) EXPECT_EQ(buf.offsets[i + 1] - buf.offsets[i], 16);
  expect_plan_consistent(buf, n, E);
  auto ref = naive_selection(o, buf.scores, n, nullptr);
  for (int64_t i = 0; i < E; ++i)
    for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r)
      EXPECT_EQ(ref[buf.token_of_row[r] * E + i], 1);
}

TEST(ExpertChoiceTest, TiesGoToTheLowerTokenIndex) {
  const int64_t n = 10, E = 4;
  auto o = opts(E, 1.0);  // k = ceil(10/4) = 3
  std::vector<double> z(n * E, 0.25);
  ExpertChoiceBuffers<double> buf;
  buf.resize(o, n);
  ec_route_forward(o, z.data(), n, nullptr, buf);
  for (int64_t i = 0; i < E; ++i) {
    ASSERT_EQ(buf.offsets[i + 1] - buf.offsets[i], 3);
    for (int64_t r = 0; r < 3; ++r) EXPECT_EQ(buf.token_of_row[buf.offsets[i] + r], r);
  }
  // Tokens 0–2 get all 4 experts, the other 7 none.
  EXPECT_EQ(buf.histogram, (std::array<int64_t, 6>{7, 0, 0, 0, 3, 0}));
  EXPECT_DOUBLE_EQ(buf.kth_value[0], 0.25);
}

TEST(ExpertChoiceTest, ChunkingAndShuffleKeepPerGroupLoadsExact) {
  // Groups of 16, 16, 16 and a last group of 2 with its own k: k(16) = 4, k(2) = 1.
  const int64_t n = 50, E = 8, G = 16;
  auto o = opts(E, 2.0, G);
  ASSERT_EQ(ec_capacity(o, 16), 4);
  ASSERT_EQ(ec_capacity(o, 2), 1);
  ASSERT_EQ(ec_rows_per_expert(o, n), 13);
  std::vector<double> z(n * E);
  fill_normal(z, 7);
  auto perm = random_perm(n, 99);
  std::vector<int32_t> group_of(n);
  for (int64_t p = 0; p < n; ++p) group_of[perm[p]] = static_cast<int32_t>(p / G);
  ExpertChoiceBuffers<double> buf;
  buf.resize(o, n);
  ec_route_forward(o, z.data(), n, perm.data(), buf);
  expect_plan_consistent(buf, n, E);
  auto ref = naive_selection(o, buf.scores, n, perm.data());
  for (int64_t i = 0; i < E; ++i) {
    std::vector<int> per_group(4, 0);
    for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r) {
      ++per_group[group_of[buf.token_of_row[r]]];
      EXPECT_EQ(ref[buf.token_of_row[r] * E + i], 1);
    }
    EXPECT_EQ(per_group, (std::vector<int>{4, 4, 4, 1})) << "expert " << i;
  }
  // Without the shuffle the groups are contiguous token ranges.
  ec_route_forward(o, z.data(), n, nullptr, buf);
  for (int64_t i = 0; i < E; ++i) {
    std::vector<int> per_group(4, 0);
    for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r)
      ++per_group[buf.token_of_row[r] / G];
    EXPECT_EQ(per_group, (std::vector<int>{4, 4, 4, 1}));
  }
}

// The float path (transposed scores, radix selection, vectorised take) against the naive
// reference on sizes beyond a vector of 16, with ties and chunks whose sizes are not multiples of
// 16: the same tokens for every expert and group, kth_value the k-th largest score bit for bit.
TEST(ExpertChoiceTest, FloatSelectionMatchesTheNaiveReferenceWithTies) {
  struct Shape {
    int64_t n, E;
    double c;
    int64_t chunk;
  };
  // The last two select among top_candidates (k ≪ group size ≥ kSampleMin), the others from
  // whole columns.
  const Shape shapes[] = {{2048, 16, 4, 0}, {1000, 64, 6, 0}, {777, 12, 2, 100},
                          {40, 5, 1.5, 0},  {2048, 64, 4, 0}, {3000, 32, 1, 1500}};
  for (const Shape& sp : shapes) {
    for (int kind = 0; kind < 2; ++kind) {
      SCOPED_TRACE(::testing::Message() << "n=" << sp.n << " E=" << sp.E << " kind=" << kind);
      auto o = opts(sp.E, sp.c, sp.chunk);
      std::vector<double> zd(sp.n * sp.E);
      fill_normal(zd, 50 + kind, 2.0);
      // kind 1: every token's logits are one of 5 rows, so that a column holds 5 distinct scores
      // and the k-th largest is tied across many tokens (the first ties by token index are taken).
      if (kind == 1) {
        Rng rng(60);
        for (int64_t t = 5; t < sp.n; ++t) {
          const auto src = static_cast<int64_t>(rng.below(5));
          std::copy(zd.begin() + src * sp.E, zd.begin() + (src + 1) * sp.E, zd.begin() + t * sp.E);
        }
      }
      std::vector<float> z(zd.begin(), zd.end());
      ExpertChoiceBuffers<float> buf;
      buf.resize(o, sp.n);
      ec_route_forward(o, z.data(), sp.n, nullptr, buf);
      expect_plan_consistent(buf, sp.n, sp.E);
      // The scores are softmax_rows' floats: max, fast_exp, sum in expert order, 1/sum, products.
      for (int64_t t = 0; t < sp.n; ++t) {
        const float* zt = z.data() + t * sp.E;
        float mx = zt[0], sum = 0;
        for (int64_t i = 1; i < sp.E; ++i) mx = std::max(mx, zt[i]);
        std::vector<float> e(sp.E);
        for (int64_t i = 0; i < sp.E; ++i) sum += (e[i] = detail::fast_exp(zt[i] - mx));
        const float inv = 1.f / sum;
        for (int64_t i = 0; i < sp.E; ++i) ASSERT_EQ(buf.scores[t * sp.E + i], e[i] * inv);
      }
      const auto ref = naive_selection(o, buf.scores, sp.n, nullptr);
      std::vector<int> got(sp.n * sp.E, 0);
      for (int64_t i = 0; i < sp.E; ++i)
        for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r)
          got[buf.token_of_row[r] * sp.E + i] = 1;
      EXPECT_EQ(got, ref);
      if (sp.chunk == 0) {
        const int64_t k = ec_capacity(o, sp.n);
        for (int64_t i = 0; i < sp.E; ++i) {
          std::vector<float> col(sp.n);
          for (int64_t t = 0; t < sp.n; ++t) col[t] = buf.scores[t * sp.E + i];
          std::nth_element(col.begin(), col.begin() + (k - 1), col.end(), std::greater<>());
          EXPECT_EQ(buf.kth_value[i], col[k - 1]) << "expert " << i;
        }
      }
    }
  }
}

TEST(ExpertChoiceTest, CapacityIsClampedToTheGroupSize) {
  auto o = opts(4, 6.0);  // ceil(8·6/4) = 12 > 8
  EXPECT_EQ(ec_capacity(o, 8), 8);
  std::vector<float> z(8 * 4, 0.f);
  ExpertChoiceBuffers<float> buf;
  buf.resize(o, 8);
  ec_route_forward(o, z.data(), 8, nullptr, buf);
  EXPECT_EQ(buf.rows, 32);
}

TEST(ExpertChoiceTest, KthValueIsTheKthLargestScoreAndReproducesTheSelectionCausally) {
  const int64_t n = 40, E = 5;
  auto o = opts(E, 1.5);  // k = 12
  std::vector<double> z(n * E);
  fill_normal(z, 21);
  ExpertChoiceBuffers<double> buf, cbuf;
  buf.resize(o, n);
  cbuf.resize(o, n);
  ec_route_forward(o, z.data(), n, nullptr, buf);
  for (int64_t i = 0; i < E; ++i) {
    std::vector<double> col(n);
    for (int64_t t = 0; t < n; ++t) col[t] = buf.scores[t * E + i];
    std::sort(col.begin(), col.end(), std::greater<>());
    EXPECT_EQ(buf.kth_value[i], col[11]);
  }
  // θ = this batch's k-th values: with distinct scores, thresholding picks the same tokens.
  ec_route_causal(o, z.data(), n, buf.kth_value.data(), cbuf);
  expect_plan_consistent(cbuf, n, E);
  ASSERT_EQ(cbuf.rows, buf.rows);
  for (int64_t r = 0; r < buf.rows; ++r) EXPECT_EQ(cbuf.token_of_row[r], buf.token_of_row[r]);
}

TEST(ExpertChoiceTest, KthValueAveragesGroupsWeightedBySize) {
  // Two groups (3 and 1 tokens), E = 2, c = 1: k(3) = 2, k(1) = 1.
  auto o = opts(2, 1.0, 3);
  std::vector<double> z = {0, 1, 0, 2, 0, 3, 0, -1};  // S[t,1] increasing over tokens 0–2
  ExpertChoiceBuffers<double> buf;
  buf.resize(o, 4);
  ec_route_forward(o, z.data(), 4, nullptr, buf);
  auto s1 = [](double v) { return 1 / (1 + std::exp(-v)); };  // softmax over (0, v), expert 1
  EXPECT_NEAR(buf.kth_value[1], (3 * s1(2) + 1 * s1(-1)) / 4, 1e-15);
}

TEST(ExpertChoiceTest, CausalRoutingOfATokenDependsOnlyOnItsOwnScores) {
  const int64_t n = 32, E = 8;
  auto o = opts(E, 2.0);
  std::vector<double> z(n * E), z2(n * E), theta(E);
  fill_normal(z, 5);
  fill_normal(z2, 6);
  Rng rng(3);
  for (auto& v : theta) v = 0.08 + 0.1 * rng.uniform();
  ExpertChoiceBuffers<double> a, b;
  a.resize(o, n);
  b.resize(o, n);
  ec_route_causal(o, z.data(), n, theta.data(), a);
  auto experts_of = [&](const ExpertChoiceBuffers<double>& buf, int32_t t) {
    std::vector<int64_t> ex;
    for (int64_t i = 0; i < E; ++i)
      for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r)
        if (buf.token_of_row[r] == t) ex.push_back(i);
    return ex;
  };
  for (int32_t t : {0, 13, 31}) {
    // Replace every other token's logits; t's experts (and their gates) must not change.
    std::vector<double> zt = z2;
    std::copy(z.begin() + t * E, z.begin() + (t + 1) * E, zt.begin() + t * E);
    ec_route_causal(o, zt.data(), n, theta.data(), b);
    EXPECT_EQ(experts_of(a, t), experts_of(b, t)) << "token " << t;
    EXPECT_EQ(a.experts_per_token[t], b.experts_per_token[t]);
  }
  for (int64_t t = 0; t < n; ++t) {
    auto ex = experts_of(a, static_cast<int32_t>(t));
    for (int64_t i = 0; i < E; ++i) {
      const bool in = std::find(ex.begin(), ex.end(), i) != ex.end();
      EXPECT_EQ(in, a.scores[t * E + i] >= theta[i]);
    }
  }
  expect_plan_consistent(a, n, E);
}

TEST(ExpertChoiceTest, ThresholdUpdateIsAnEma) {
  std::vector<float> theta = {1.f, 2.f};
  const std::vector<float> kth = {3.f, 0.f};
  ec_update_thresholds(theta.data(), kth.data(), 2, 0.9);
  EXPECT_NEAR(theta[0], 1.2f, 1e-6);
  EXPECT_NEAR(theta[1], 1.8f, 1e-6);
  ec_update_thresholds(theta.data(), kth.data(), 2, 0.0);  // decay 0 copies
  EXPECT_EQ(theta, kth);
  EXPECT_THROW(ec_update_thresholds(theta.data(), kth.data(), 2, 1.0), Error);
}

TEST(ExpertChoiceTest, RejectsInvalidOptions) {
  ExpertChoiceBuffers<float> buf;
  EXPECT_THROW(buf.resize(opts(0, 1.0), 8), Error);
  EXPECT_THROW(buf.resize(opts(4, 0.0), 8), Error);
  EXPECT_THROW(buf.resize(opts(4, 1.0, -1), 8), Error);
  buf.resize(opts(4, 1.0, 2), 8);
  std::vector<float> z(9 * 4);
  EXPECT_THROW(ec_route_forward(opts(4, 1.0, 2), z.data(), 9, nullptr, buf), Error);
  EXPECT_THROW(ec_route_forward(opts(4, 1.0, 4), z.data(), 8, nullptr, buf), Error);
}

// Loss = Σ_rows gate·R[token, expert]; dz from ec_route_backward vs central differences.
void check_ec_gradient(bool causal) {
  const int64_t n = 30, E = 6;
  auto o = opts(E, 2.0, 8);
  std::vector<double> z(n * E), R(n * E), dz(n * E), dgate(n * E);
  fill_normal(z, 11);
  fill_normal(R, 12);
  const auto perm = random_perm(n, 4);
  const std::vector<double> theta = {0.15, 0.2, 0.1, 0.25, 0.15, 0.2};
  ExpertChoiceBuffers<double> buf;
  buf.resize(o, n);
  auto forward = [&]() {
    if (causal) {
      ec_route_causal(o, z.data(), n, theta.data(), buf);
    } else {
      ec_route_forward(o, z.data(), n, perm.data(), buf);
    }
  };
  auto loss = [&]() {
    forward();
    double l = 0;
    for (int64_t i = 0; i < E; ++i)
      for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r)
        l += buf.gate_of_row[r] * R[buf.token_of_row[r] * E + i];
    return l;
  };
  forward();
  ASSERT_GT(buf.rows, 0);
  for (int64_t i = 0; i < E; ++i)
    for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r)
      dgate[r] = R[buf.token_of_row[r] * E + i];
  ec_route_backward(o, dgate.data(), buf, dz.data());
  auto res = check_gradient(loss, z.data(), z.size(), dz.data(), 1e-6);
  EXPECT_LT(res.max_error, 1e-6) << describe(res);
}

TEST(ExpertChoiceTest, GradientMatchesFiniteDifferences) { check_ec_gradient(false); }
TEST(ExpertChoiceTest, CausalGradientMatchesFiniteDifferences) { check_ec_gradient(true); }

}  // namespace
}  // namespace sy
