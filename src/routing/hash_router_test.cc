#include "routing/hash_router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

namespace sy {
namespace {

HashRouterOptions opts(int64_t E, int64_t K, uint64_t seed = 0, HashGate g = HashGate::kUniform) {
  HashRouterOptions o;
  o.n_experts = E;
  o.top_k = K;
  o.seed = seed;
  o.gate = g;
  return o;
}

std::vector<int32_t> experts_of(int32_t id, uint64_t seed, int64_t E, int64_t K) {
  std::vector<int32_t> out(K), scratch(2 * K);
  hash_experts(id, seed, E, K, out.data(), scratch.data());
  return out;
}

// Pinned outputs of the documented hash (computed independently from the header's definition):
// changing them silently would re-route every trained hash model.
TEST(HashRouterTest, HashMatchesItsDocumentedDefinition) {
  EXPECT_EQ(experts_of(0, 0, 16, 2), (std::vector<int32_t>{15, 0}));
  EXPECT_EQ(experts_of(1, 0, 16, 2), (std::vector<int32_t>{14, 9}));
  EXPECT_EQ(experts_of(12345, 0, 64, 4), (std::vector<int32_t>{7, 25, 42, 19}));
  EXPECT_EQ(experts_of(7, 42, 8, 8), (std::vector<int32_t>{0, 2, 7, 3, 5, 4, 6, 1}));
  EXPECT_EQ(experts_of(-1, 3, 16, 3), (std::vector<int32_t>{1, 0, 12}));
}

TEST(HashRouterTest, IsDeterministicAndDistinctPerToken) {
  const int64_t n = 500, E = 12, K = 3;
  auto o = opts(E, K, 17);
  std::vector<int32_t> ids(n);
  Rng rng(8);
  for (auto& id : ids) id = static_cast<int32_t>(rng.below(1000));
  HashRouterBuffers<float> a, b;
  a.resize(o, n);
  b.resize(o, n);
  hash_route_forward(o, ids.data(), n, a);
  hash_route_forward(o, ids.data(), n, b);
  EXPECT_EQ(a.expert, b.expert);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> ex(a.expert.begin() + t * K, a.expert.begin() + (t + 1) * K);
    EXPECT_EQ(ex, experts_of(ids[t], 17, E, K));
    std::sort(ex.begin(), ex.end());
    EXPECT_TRUE(std::adjacent_find(ex.begin(), ex.end()) == ex.end()) << "token " << t;
    EXPECT_GE(ex.front(), 0);
    EXPECT_LT(ex.back(), E);
  }
  // Equal ids, equal experts; another seed, another hash.
  EXPECT_EQ(experts_of(5, 17, E, K), experts_of(5, 17, E, K));
  int differ = 0;
  for (int32_t id = 0; id < 100; ++id)
    differ += experts_of(id, 17, E, K) != experts_of(id, 18, E, K);
  EXPECT_GT(differ, 80);
  // K = E gives a permutation.
  auto all = experts_of(99, 0, 10, 10);
  std::sort(all.begin(), all.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(all[i], i);
}

TEST(HashRouterTest, LoadsAreUniformWithinSamplingError) {
  // Every id of a vocabulary once: each expert's load is Binomial(V, K/E) for a random hash.
  const int64_t V = 40000, E = 16, K = 2;
  auto o = opts(E, K);
  std::vector<int32_t> ids(V);
  for (int64_t t = 0; t < V; ++t) ids[t] = static_cast<int32_t>(t);
  HashRouterBuffers<double> buf;
  buf.resize(o, V);
  hash_route_forward(o, ids.data(), V, buf);
  const double p = static_cast<double>(K) / E, mean = V * p, sd = std::sqrt(V * p * (1 - p));
  double chi2 = 0;
  for (int64_t i = 0; i < E; ++i) {
    EXPECT_LT(std::abs(buf.load[i] - mean), 5 * sd) << "expert " << i;
    chi2 += (buf.load[i] - mean) * (buf.load[i] - mean) / (sd * sd);
  }
  EXPECT_LT(chi2, 45.0);  // χ²(16) exceeds 45 with probability < 2e-4
  // The first expert alone is uniform too (Fisher–Yates draws positions, not just sets).
  std::vector<int64_t> first(E, 0);
  for (int64_t t = 0; t < V; ++t) ++first[buf.expert[t * K]];
  const double m1 = static_cast<double>(V) / E, sd1 = std::sqrt(V * (1.0 / E) * (1 - 1.0 / E));
  for (int64_t i = 0; i < E; ++i) EXPECT_LT(std::abs(first[i] - m1), 5 * sd1);
}

TEST(HashRouterTest, PlanAndGates) {
  const int64_t n = 64, E = 6, K = 2;
  std::vector<int32_t> ids(n);
  for (int64_t t = 0; t < n; ++t) ids[t] = static_cast<int32_t>(3 * t + 1);
  for (HashGate g : {HashGate::kUniform, HashGate::kOne}) {
    auto o = opts(E, K, 0, g);
    HashRouterBuffers<float> buf;
    buf.resize(o, n);
    hash_route_forward(o, ids.data(), n, buf);
    for (int64_t s = 0; s < n * K; ++s)
      EXPECT_EQ(buf.gate[s], g == HashGate::kUniform ? 0.5f : 1.f);
    EXPECT_EQ(buf.offsets[0], 0);
    EXPECT_EQ(buf.offsets[E], n * K);
    for (int64_t i = 0; i < E; ++i) {
      EXPECT_EQ(buf.offsets[i + 1] - buf.offsets[i], buf.load[i]);
      for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r) {
        EXPECT_EQ(buf.expert[buf.slot_of_row[r]], i);
        if (r > buf.offsets[i]) {
          EXPECT_LT(buf.slot_of_row[r - 1], buf.slot_of_row[r]);
        }
      }
    }
  }
}

TEST(HashRouterTest, RejectsInvalidOptions) {
  HashRouterBuffers<float> buf;
  EXPECT_THROW(buf.resize(opts(0, 1), 4), Error);
  EXPECT_THROW(buf.resize(opts(4, 5), 4), Error);
  EXPECT_THROW(buf.resize(opts(4, 0), 4), Error);
  buf.resize(opts(4, 2), 4);
  std::vector<int32_t> ids(5, 0);
  EXPECT_THROW(hash_route_forward(opts(4, 2), ids.data(), 5, buf), Error);
  EXPECT_THROW(hash_route_forward(opts(4, 1), ids.data(), 4, buf), Error);
}

}  // namespace
}  // namespace sy
