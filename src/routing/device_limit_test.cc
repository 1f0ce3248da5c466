// Device-limited routing (TopKOptions::groups / max_groups, applied by the slot routers).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "switchyard/router.h"

namespace sy {
namespace {

constexpr int64_t kN = 300, kE = 16, kK = 4;

std::vector<float> logits(uint64_t seed) {
  std::vector<float> z(kN * kE);
  Rng r(seed);
  for (float& x : z) x = static_cast<float>(r.normal() * 2.0);
  return z;
}

RoutingPlan<float> route(const std::string& type, int64_t groups, int64_t max_groups,
                         const std::vector<float>& z, const float* bias = nullptr) {
  TopKOptions o;
  o.n_experts = kE;
  o.top_k = kK;
  o.groups = groups;
  o.max_groups = max_groups;
  RouterOptions ro;
  ro.type = type;
  auto router = make_router<float>(ro, o, kN);
  RoutingPlan<float> plan;
  plan.resize(kN, kE, kN * kK);
  RouteCall<float> call;
  call.bias = bias;
  router->route(z.data(), kN, call, plan);
  return plan;
}

// The groups (of E/G experts) each token's rows fall in.
std::vector<std::set<int64_t>> groups_of_tokens(const RoutingPlan<float>& p, int64_t groups) {
  std::vector<std::set<int64_t>> g(kN);
  for (int64_t e = 0; e < kE; ++e)
    for (int64_t row = p.expert_offsets[e]; row < p.expert_offsets[e + 1]; ++row)
      g[p.token_of_row[row]].insert(e / (kE / groups));
  return g;
}

TEST(DeviceLimitedRoutingTest, EveryTokensExpertsLieOnAtMostMGroups) {
  const auto z = logits(1);
  std::vector<float> bias(kE);
  for (int64_t i = 0; i < kE; ++i) bias[i] = 0.05f * static_cast<float>(i % 5);
  for (const char* type : {"topk", "bip"})
    for (int64_t m : {1, 2, 3}) {
      const RoutingPlan<float> p = route(type, 4, m, z, bias.data());
      EXPECT_EQ(p.rows, kN * kK) << type;  // still K experts per token (dropless)
      size_t most = 0;
      for (const auto& g : groups_of_tokens(p, 4)) most = std::max(most, g.size());
      EXPECT_LE(most, static_cast<size_t>(m)) << type << " M = " << m;
      EXPECT_EQ(most, static_cast<size_t>(m)) << type << ": some token uses all M groups";
    }
}

// M = G allows every group: the plan of plain top-K, row for row.
TEST(DeviceLimitedRoutingTest, AllGroupsAllowedIsPlainTopK) {
  const auto z = logits(2);
  const RoutingPlan<float> limited = route("topk", 4, 4, z), plain = route("topk", 0, 0, z);
  EXPECT_EQ(limited.expert_offsets, plain.expert_offsets);
  EXPECT_EQ(limited.token_of_row, plain.token_of_row);
  EXPECT_EQ(limited.gate_of_row, plain.gate_of_row);
}

// The chosen group is the one holding the token's best score (DeepSeek-V2's device affinity),
// and within it the K best experts.
TEST(DeviceLimitedRoutingTest, OneGroupIsTheGroupOfTheBestExpert) {
  const auto z = logits(3);
  const RoutingPlan<float> p = route("topk", 4, 1, z);
  const auto g = groups_of_tokens(p, 4);
  for (int64_t t = 0; t < kN; ++t) {
    int64_t best = 0;
    for (int64_t i = 1; i < kE; ++i)
      if (z[t * kE + i] > z[t * kE + best]) best = i;
    ASSERT_EQ(g[t], std::set<int64_t>{best / 4}) << "token " << t;
  }
}

// The public options are checked where a router is made, not only in the config.
TEST(DeviceLimitedRoutingTest, BadGroupsAreAClearError) {
  const auto z = logits(4);
  EXPECT_THROW(route("topk", 5, 1, z), Error);   // 5 does not divide 16
  EXPECT_THROW(route("topk", 4, 5, z), Error);   // more groups allowed than exist
  EXPECT_THROW(route("topk", 16, 1, z), Error);  // one group of 1 expert cannot hold K = 4
}

}  // namespace
}  // namespace sy
