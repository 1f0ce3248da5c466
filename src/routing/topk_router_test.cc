#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/gradcheck.h"
#include "switchyard/routing.h"

namespace sy {
namespace {

TopKOptions opts(int64_t E, int64_t K, ScoreFn s, GateFn g, double cf = 0,
                 DropPolicy d = DropPolicy::kProbs) {
  TopKOptions o;
  o.n_experts = E;
  o.top_k = K;
  o.score = s;
  o.gate = g;
  o.capacity_factor = cf;
  o.drop = d;
  return o;
}

TEST(TopKRouterTest, TiesGoToTheLowerExpertIndex) {
  auto o = opts(8, 3, ScoreFn::kSoftmax, GateFn::kRenorm);
  RoutingBuffers<float> buf;
  buf.resize(4, 8, 3);
  std::vector<float> z(4 * 8, 0.5f);
  topk_route_forward(o, z.data(), 4, buf);
  for (int t = 0; t < 4; ++t)
    for (int k = 0; k < 3; ++k) EXPECT_EQ(buf.expert[t * 3 + k], k);
  for (float g : std::vector<float>(buf.gate.begin(), buf.gate.begin() + 12))
    EXPECT_NEAR(g, 1.f / 3, 1e-6);
}

TEST(TopKRouterTest, SelectsHighestScoresInDescendingOrder) {
  auto o = opts(5, 2, ScoreFn::kSigmoid, GateFn::kRaw);
  RoutingBuffers<double> buf;
  buf.resize(1, 5, 2);
  std::vector<double> z = {0.1, 2.0, -1.0, 3.0, 0.0};
  topk_route_forward(o, z.data(), 1, buf);
  EXPECT_EQ(buf.expert[0], 3);
  EXPECT_EQ(buf.expert[1], 1);
  EXPECT_NEAR(buf.gate[0], 1 / (1 + std::exp(-3.0)), 1e-12);
}

TEST(TopKRouterTest, LblIsAlphaWhenScoresAreUniform) {
  auto o = opts(8, 2, ScoreFn::kSoftmax, GateFn::kRenorm);
  RoutingBuffers<double> buf;
  buf.resize(16, 8, 2);
  std::vector<double> z(16 * 8, 0.0);  // uniform P; f all on experts 0 and 1
  topk_route_forward(o, z.data(), 16, buf);
  std::vector<double> f(8);
  micro_fractions(buf, f.data());
  lbl_begin(buf, 16);
  EXPECT_NEAR(lbl_add_term(buf, o.score, 0.01, f.data(), 1), 0.01, 1e-12);
  // Per-sequence fractions (4 sequences of 4 tokens) give the same value here.
  lbl_begin(buf, 4);
  std::vector<double> fs(4 * 8, 0.0);
  for (int g = 0; g < 4; ++g) fs[g * 8] = fs[g * 8 + 1] = 0.5;
  EXPECT_NEAR(lbl_add_term(buf, o.score, 0.01, fs.data(), 4), 0.01, 1e-12);
}

TEST(TopKRouterTest, PlanIsACountingSortInTokenOrder) {
  auto o = opts(6, 2, ScoreFn::kSoftmax, GateFn::kRenorm);
  RoutingBuffers<float> buf;
  buf.resize(50, 6, 2);
  std::vector<double> zd(50 * 6);
  fill_normal(zd, 3);
  std::vector<float> z(zd.begin(), zd.end());
  topk_route_forward(o, z.data(), 50, buf);
  EXPECT_EQ(buf.rows, 100);
  EXPECT_EQ(buf.dropped, 0);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(buf.offsets[i + 1] - buf.offsets[i], buf.load[i]);
    for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r) {
      EXPECT_EQ(buf.expert[buf.slot_of_row[r]], i);
      if (r > buf.offsets[i]) {
        EXPECT_LT(buf.slot_of_row[r - 1], buf.slot_of_row[r]);
      }
      EXPECT_EQ(buf.row_of_slot[buf.slot_of_row[r]], r);
    }
  }
}

TEST(TopKRouterTest, CapacityDropsByPolicy) {
  // All 10 tokens prefer expert 0 then 1; capacity cf=1 → C = ceil(10·1/4) = 3.
  const int n = 10, E = 4;
  std::vector<double> z(n * E);
  for (int t = 0; t < n; ++t) {
    z[t * E + 0] = 5.0 + 0.1 * ((t * 7) % n);  // distinct, not monotone in t
    z[t * E + 1] = 1.0;
    z[t * E + 2] = 0.0;
    z[t * E + 3] = -1.0;
  }
  for (DropPolicy d : {DropPolicy::kProbs, DropPolicy::kPosition}) {
    auto o = opts(E, 1, ScoreFn::kSoftmax, GateFn::kRaw, 1.0, d);
    RoutingBuffers<double> buf;
    buf.resize(n, E, 1);
    topk_route_forward(o, z.data(), n, buf);
    ASSERT_EQ(expert_capacity(o, n), 3);
    EXPECT_EQ(buf.load[0], 3);
    EXPECT_EQ(buf.dropped, 7);
    std::vector<int> kept_tokens;
    for (int t = 0; t < n; ++t)
      if (buf.kept[t]) kept_tokens.push_back(t);
    if (d == DropPolicy::kPosition) {
      EXPECT_EQ(kept_tokens, (std::vector<int>{0, 1, 2}));
    } else {
      // highest z[t,0]: (t·7)%10 ∈ {9, 8, 7} → t = 7, 4, 1.
      EXPECT_EQ(kept_tokens, (std::vector<int>{1, 4, 7}));
    }
  }
}

TEST(TopKRouterTest, BiasChangesSelectionButNeverGates) {
  auto o = opts(4, 1, ScoreFn::kSigmoid, GateFn::kRaw);
  RoutingBuffers<double> buf;
  buf.resize(1, 4, 1);
  std::vector<double> z = {2.0, 1.0, 0.0, -1.0}, bias = {0.0, 0.0, 0.9, 0.0};
  topk_route_forward(o, z.data(), 1, buf, bias.data());
  EXPECT_EQ(buf.expert[0], 2);           // sigmoid(0) + 0.9 > sigmoid(2)
  EXPECT_NEAR(buf.gate[0], 0.5, 1e-12);  // the unbiased score of expert 2
}

// The float path (vectorised on AVX-512 machines) against the double one, for E on and off a
// multiple of 16, with and without a bias, on logits quantised to produce exact ties.
TEST(TopKRouterTest, FloatPathSelectsLikeTheDoublePathWithTies) {
  for (int64_t E : {16, 20, 64}) {
    for (int64_t K : {1, 4, 6}) {
      for (bool with_bias : {false, true}) {
        const int64_t n = 64;
        auto o = opts(E, K, ScoreFn::kSoftmax, GateFn::kRenorm);
        std::vector<double> zd(n * E), bd(E, 0.0);
        fill_normal(zd, 21);
        for (auto& v : zd) v = std::round(v * 2) / 2;  // many equal logits per token
        if (with_bias)
          for (int64_t i = 0; i < E; ++i) bd[i] = (i % 3) * 0.25;
        std::vector<float> zf(zd.begin(), zd.end()), bf(bd.begin(), bd.end());
        RoutingBuffers<float> bufF;
        RoutingBuffers<double> bufD;
        bufF.resize(n, E, K);
        bufD.resize(n, E, K);
        topk_route_forward(o, zf.data(), n, bufF, with_bias ? bf.data() : nullptr);
        topk_route_forward(o, zd.data(), n, bufD, with_bias ? bd.data() : nullptr);
        for (int64_t s = 0; s < n * K; ++s) {
          ASSERT_EQ(bufF.expert[s], bufD.expert[s]) << "E=" << E << " K=" << K << " slot " << s;
          EXPECT_NEAR(bufF.gate[s], bufD.gate[s], 1e-6);
        }
        for (int64_t i = 0; i < n * E; ++i) EXPECT_NEAR(bufF.scores[i], bufD.scores[i], 1e-6);
        for (int64_t t = 0; t < n; ++t) EXPECT_NEAR(bufF.lse[t], bufD.lse[t], 1e-5);
      }
    }
  }
}

// The float path's 16-tokens-per-vector kernel against the double path: a token count that
// leaves a partial block, every K it takes (1..8; 9 and 10 take the per-token kernel), E below, on
// and off multiples of 16 (up to its limit, 128), softmax and sigmoid, bias, a NaN row (selected by
// the scalar fallback) and forced selections, on logits quantised to produce exact ties.
TEST(TopKRouterTest, LaneKernelSelectsLikeTheDoublePath) {
  const int64_t n = 37;
  for (ScoreFn sc : {ScoreFn::kSoftmax, ScoreFn::kSigmoid}) {
    for (int64_t E : {8, 16, 32, 33, 64, 65, 128}) {
      for (int64_t K = 1; K <= std::min<int64_t>(10, E); ++K) {  // 9, 10: per-token kernel
        for (int mode = 0; mode < 4; ++mode) {  // 0 plain, 1 bias, 2 forced, 3 a NaN in the bias
          auto o = opts(E, K, sc, K == 1 ? GateFn::kRaw : GateFn::kRenorm);
          std::vector<double> zd(n * E), bd(E, 0.0);
          fill_normal(zd, 30 + K);
          for (auto& v : zd) v = std::round(v * 2) / 2;
          if (mode == 1 || mode == 3)
            for (int64_t i = 0; i < E; ++i) bd[i] = (i % 3) * 0.25 - (i % 5 == 0 ? 0.5 : 0.0);
          if (mode == 3) bd[E / 3] = std::nan("");
          zd[20 * E + E / 2] = std::nan("");  // token 20: NaN scores
          std::vector<int32_t> forced(n * K);
          for (int64_t s = 0; s < n * K; ++s) forced[s] = static_cast<int32_t>((s * 7 + s / K) % E);
          std::vector<float> zf(zd.begin(), zd.end()), bf(bd.begin(), bd.end());
          RoutingBuffers<float> bufF;
          RoutingBuffers<double> bufD;
          bufF.resize(n, E, K);
          bufD.resize(n, E, K);
          const float* bfp = mode == 1 || mode == 3 ? bf.data() : nullptr;
          const double* bdp = mode == 1 || mode == 3 ? bd.data() : nullptr;
          const int32_t* fp = mode == 2 ? forced.data() : nullptr;
          const auto sf = topk_route_forward(o, zf.data(), n, bufF, bfp, fp);
          const auto sd = topk_route_forward(o, zd.data(), n, bufD, bdp, fp);
          for (int64_t s = 0; s < n * K; ++s) {
            ASSERT_EQ(bufF.expert[s], bufD.expert[s])
                << "E=" << E << " K=" << K << " mode " << mode << " slot " << s;
            if (s / K != 20) {
              EXPECT_NEAR(bufF.gate[s], bufD.gate[s], 1e-6);
            }
          }
          for (int64_t t = 0; t < n; ++t) {
            if (t == 20) continue;
            for (int64_t i = 0; i < E; ++i)
              EXPECT_NEAR(bufF.scores[t * E + i], bufD.scores[t * E + i], 1e-6);
            EXPECT_NEAR(bufF.lse[t], bufD.lse[t], 1e-5);
          }
          EXPECT_EQ(std::isnan(sf.entropy_sum), std::isnan(sd.entropy_sum));
          EXPECT_EQ(bufF.offsets, bufD.offsets);
          EXPECT_EQ(bufF.slot_of_row, bufD.slot_of_row);
        }
      }
    }
  }
}

// The float path's routing (scores, selection, gates, plan) is the same for any thread count.
TEST(TopKRouterTest, FloatPathIsIndependentOfTheThreadCount) {
  const int64_t n = 601, E = 64, K = 6;
  auto o = opts(E, K, ScoreFn::kSoftmax, GateFn::kRenorm);
  std::vector<double> zd(n * E);
  fill_normal(zd, 51);
  std::vector<float> z(zd.begin(), zd.end()), bias(E);
  for (int64_t i = 0; i < E; ++i) bias[i] = 0.01f * static_cast<float>(i % 7);
  RoutingBuffers<float> ref, buf;
  ref.resize(n, E, K);
  buf.resize(n, E, K);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  topk_route_forward(o, z.data(), n, ref, bias.data());
  omp_set_num_threads(3);
  topk_route_forward(o, z.data(), n, buf, bias.data());
  omp_set_num_threads(saved);
  EXPECT_EQ(ref.scores, buf.scores);
  EXPECT_EQ(ref.lse, buf.lse);
  EXPECT_EQ(ref.expert, buf.expert);
  EXPECT_EQ(ref.gate, buf.gate);
  EXPECT_EQ(ref.slot_of_row, buf.slot_of_row);
  EXPECT_EQ(ref.row_of_slot, buf.row_of_slot);
}

TEST(TopKRouterTest, FloatPathStatisticsMatchTheDoublePath) {
  for (ScoreFn sc : {ScoreFn::kSoftmax, ScoreFn::kSigmoid}) {
    const int64_t n = 40, E = 24, K = 3;
    auto o = opts(E, K, sc, GateFn::kRaw);
    std::vector<double> zd(n * E);
    fill_normal(zd, 22);
    std::vector<float> zf(zd.begin(), zd.end());
    RoutingBuffers<float> bufF;
    RoutingBuffers<double> bufD;
    bufF.resize(n, E, K);
    bufD.resize(n, E, K);
    const auto sf = topk_route_forward(o, zf.data(), n, bufF);
    const auto sd = topk_route_forward(o, zd.data(), n, bufD);
    EXPECT_NEAR(sf.entropy_sum, sd.entropy_sum, 1e-4);
    EXPECT_NEAR(sf.topk_score_sum, sd.topk_score_sum, 1e-4);
    for (int64_t s = 0; s < n * K; ++s) EXPECT_EQ(bufF.expert[s], bufD.expert[s]);
  }
}

TEST(TopKRouterTest, ParsersRejectUnknownNames) {
  EXPECT_THROW(parse_score_fn("tanh"), Error);
  EXPECT_THROW(parse_gate_fn("softmax"), Error);
  EXPECT_THROW(parse_drop_policy("random"), Error);
}

// Loss = Σ kept·gate·R + lbl + z_loss; dz from topk_route_backward vs central differences.
void check_router_gradient(ScoreFn s, GateFn g, double cf) {
  const int n = 24, E = 6, K = 2;
  auto o = opts(E, K, s, g, cf);
  o.z_loss_coef = 0.05;
  o.gate_scale = 1.7;
  std::vector<double> z(n * E), R(n * K), dz(n * E), dgate(n * K);
  fill_normal(z, 11);
  fill_normal(R, 12);
  RoutingBuffers<double> buf;
  buf.resize(n, E, K);
  // LBL terms of two scopes at once: the call's own counts (fixed after the first forward: f
  // carries no gradient) and per-sequence fractions (4 sequences of 6 tokens).
  std::vector<double> f_micro(E), f_seq(4 * E);
  fill_normal(f_seq, 13);
  for (auto& v : f_seq) v = std::abs(v) / E;
  auto loss = [&]() {
    auto st = topk_route_forward(o, z.data(), n, buf);
    lbl_begin(buf, 6);
    double l = st.z_loss + lbl_add_term(buf, o.score, 0.3, f_micro.data(), 1) +
               lbl_add_term(buf, o.score, 0.2, f_seq.data(), 4);
    for (int i = 0; i < n * K; ++i) l += buf.kept[i] * buf.gate[i] * R[i];
    return l;
  };
  topk_route_forward(o, z.data(), n, buf);
  micro_fractions(buf, f_micro.data());
  loss();
  if (cf > 0) {
    ASSERT_GT(buf.dropped, 0) << "test should exercise drops";
  }
  for (int i = 0; i < n * K; ++i) dgate[i] = buf.kept[i] * R[i];
  topk_route_backward(o, z.data(), dgate.data(), 1.0, buf, dz.data());
  auto r = check_gradient(loss, z.data(), z.size(), dz.data(), 1e-5);
  EXPECT_LT(r.max_error, 1e-6) << describe(r);
}

TEST(TopKRouterTest, GradientSoftmaxRenorm) {
  check_router_gradient(ScoreFn::kSoftmax, GateFn::kRenorm, 0);
}
TEST(TopKRouterTest, GradientSoftmaxRaw) {
  check_router_gradient(ScoreFn::kSoftmax, GateFn::kRaw, 0);
}
TEST(TopKRouterTest, GradientSigmoidRenorm) {
  check_router_gradient(ScoreFn::kSigmoid, GateFn::kRenorm, 0);
}
TEST(TopKRouterTest, GradientSigmoidRaw) {
  check_router_gradient(ScoreFn::kSigmoid, GateFn::kRaw, 0);
}
TEST(TopKRouterTest, GradientWithCapacityDrops) {
  check_router_gradient(ScoreFn::kSoftmax, GateFn::kRenorm, 1.0);
}

}  // namespace
}  // namespace sy
