#include "routing/sinkhorn.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/gradcheck.h"
#include "routing/select.h"

namespace sy {
namespace {

SinkhornOptions opts(int64_t E, int64_t K, int iterations, GateFn g = GateFn::kRaw) {
  SinkhornOptions o;
  o.n_experts = E;
  o.top_k = K;
  o.iterations = iterations;
  o.gate = g;
  return o;
}

// Logits preferring the low experts strongly: z[t,i] = noise − skew·i/E.
std::vector<double> skewed_logits(int64_t n, int64_t E, double skew, uint64_t seed) {
  std::vector<double> z(n * E);
  fill_normal(z, seed);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < E; ++i) z[t * E + i] -= skew * static_cast<double>(i) / E;
  return z;
}

double maxvio(const std::vector<int64_t>& load) {
  double mean = 0, mx = 0;
  for (auto c : load) {
    mean += static_cast<double>(c);
    mx = std::max(mx, static_cast<double>(c));
  }
  mean /= static_cast<double>(load.size());
  return mx / mean - 1;
}

TEST(SinkhornTest, MarginalsApproachUniform) {
  const int64_t n = 256, E = 8;
  auto z = skewed_logits(n, E, 3.0, 1);
  SinkhornBuffers<double> buf;
  double prev = 1e300;
  for (int it : {0, 1, 2, 4, 8, 16, 64}) {
    auto o = opts(E, 1, it);
    buf.resize(o, n);
    auto st = sinkhorn_route_forward(o, z.data(), n, buf);
    EXPECT_LE(st.max_col_error, prev * (1 + 1e-9)) << it << " iterations";
    prev = st.max_col_error;
    if (it == 0) {
      EXPECT_GT(st.max_col_error, 0.5);
    }
    // Recompute both marginals from the potentials: rows sum to 1 exactly, columns to N/E.
    double row_err = 0, col_err = 0;
    std::vector<double> col(E, 0);
    for (int64_t t = 0; t < n; ++t) {
      double r = 0;
      for (int64_t i = 0; i < E; ++i) {
        const double pi = std::exp(z[t * E + i] + buf.row_pot[t] + buf.col_pot[i]);
        r += pi;
        col[i] += pi;
      }
      row_err = std::max(row_err, std::abs(r - 1));
    }
    for (int64_t i = 0; i < E; ++i)
      col_err = std::max(col_err, std::abs(col[i] * E / static_cast<double>(n) - 1));
    EXPECT_LT(row_err, 1e-12);
    EXPECT_NEAR(col_err, st.max_col_error, 1e-12);
  }
  EXPECT_LT(prev, 1e-3) << "after 64 iterations";
}

TEST(SinkhornTest, TopKIsMoreBalancedThanPlainTopK) {
  const int64_t n = 2048, E = 16, K = 2;
  auto zd = skewed_logits(n, E, 4.0, 2);
  std::vector<float> z(zd.begin(), zd.end());
  SinkhornBuffers<float> plain, balanced;
  auto o0 = opts(E, K, 0), o8 = opts(E, K, 8);
  plain.resize(o0, n);
  balanced.resize(o8, n);
  sinkhorn_route_forward(o0, z.data(), n, plain);
  sinkhorn_route_forward(o8, z.data(), n, balanced);
  const double v0 = maxvio(plain.load), v8 = maxvio(balanced.load);
  EXPECT_GT(v0, 1.0) << "the test needs skewed plain top-K";
  EXPECT_LT(v8, 0.25);
  EXPECT_LT(v8, 0.2 * v0);
}

TEST(SinkhornTest, ZeroIterationsIsPlainTopKAndTiesGoToTheLowerIndex) {
  const int64_t E = 5, K = 2;
  std::vector<double> z = {0.1, 2.0, -1.0, 3.0, 0.0,   // → 3, 1
                           1.0, 1.0, 1.0,  1.0, 1.0};  // ties → 0, 1
  for (int it : {0, 8}) {
    auto o = opts(E, K, it);
    SinkhornBuffers<double> buf;
    buf.resize(o, 2);
    sinkhorn_route_forward(o, z.data(), 2, buf);
    if (it == 0) {
      EXPECT_EQ(buf.expert[0], 3);
      EXPECT_EQ(buf.expert[1], 1);
      EXPECT_EQ(buf.expert[2], 0);
      EXPECT_EQ(buf.expert[3], 1);
    } else {
      // Balancing pushes token 1 away from token 0's experts 3 and 1.
      EXPECT_NE(buf.expert[2], 3);
      EXPECT_NE(buf.expert[3], 3);
    }
  }
  // Every row tied, balancing keeps the symmetry: the lower indices still win.
  std::vector<double> flat(6 * E, 0.3);
  auto o = opts(E, K, 8);
  SinkhornBuffers<double> buf;
  buf.resize(o, 6);
  sinkhorn_route_forward(o, flat.data(), 6, buf);
  for (int64_t t = 0; t < 6; ++t) {
    EXPECT_EQ(buf.expert[t * K], 0);
    EXPECT_EQ(buf.expert[t * K + 1], 1);
  }
}

// The float path's selection (16 tokens per block, on double values rounded to float and checked
// for ties) against select_top_k on z + b with the potentials b it returned: every K up to 8,
// partial blocks, E on and off multiples of 16, tied logits (the tie fallback), and a NaN row
// (all potentials NaN: every lane falls back).
TEST(SinkhornTest, LaneSelectionMatchesTheScalarSelection) {
  const int64_t n = 45;
  for (int64_t E : {9, 16, 64, 128}) {
    for (int64_t K = 1; K <= std::min<int64_t>(8, E); ++K) {
      for (bool with_nan : {false, true}) {
        auto o = opts(E, K, 8);
        std::vector<double> zd(n * E);
        fill_normal(zd, 40 + K);
        for (auto& v : zd) v = std::round(v * 2) / 2;
        if (with_nan) zd[7 * E + 1] = std::nan("");
        std::vector<float> z(zd.begin(), zd.end());
        SinkhornBuffers<float> buf;
        buf.resize(o, n);
        sinkhorn_route_forward(o, z.data(), n, buf);
        const double* b = buf.col_pot.data();
        std::vector<int32_t> ref(K);
        for (int64_t t = 0; t < n; ++t) {
          const float* zt = z.data() + t * E;
          detail::select_top_k<double>(
              E, K, [&](int64_t i) { return static_cast<double>(zt[i]) + b[i]; }, ref.data());
          for (int64_t k = 0; k < K; ++k)
            ASSERT_EQ(buf.expert[t * K + k], ref[k]) << "E=" << E << " K=" << K << " t " << t;
        }
      }
    }
  }
}

// The float path gives the same bits for any thread count (blocks of 16 and of 256 tokens).
TEST(SinkhornTest, FloatPathIsIndependentOfTheThreadCount) {
  const int64_t n = 600, E = 64, K = 6;
  auto o = opts(E, K, 8, GateFn::kRenorm);
  std::vector<double> zd(n * E);
  fill_normal(zd, 50);
  std::vector<float> z(zd.begin(), zd.end());
  SinkhornBuffers<float> ref, buf;
  ref.resize(o, n);
  buf.resize(o, n);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto s1 = sinkhorn_route_forward(o, z.data(), n, ref);
  omp_set_num_threads(3);
  const auto s3 = sinkhorn_route_forward(o, z.data(), n, buf);
  omp_set_num_threads(saved);
  EXPECT_EQ(s1.max_col_error, s3.max_col_error);
  EXPECT_EQ(ref.col_pot, buf.col_pot);
  EXPECT_EQ(ref.row_pot, buf.row_pot);
  EXPECT_EQ(ref.expert, buf.expert);
  EXPECT_EQ(ref.gate, buf.gate);
  EXPECT_EQ(ref.slot_of_row, buf.slot_of_row);
}

TEST(SinkhornTest, GatesAreRawOrRenormalisedSoftmaxScores) {
  const int64_t n = 20, E = 6, K = 3;
  auto z = skewed_logits(n, E, 2.0, 3);
  for (GateFn g : {GateFn::kRaw, GateFn::kRenorm}) {
    auto o = opts(E, K, 8, g);
    SinkhornBuffers<double> buf;
    buf.resize(o, n);
    sinkhorn_route_forward(o, z.data(), n, buf);
    for (int64_t t = 0; t < n; ++t) {
      double lse = 0;
      for (int64_t i = 0; i < E; ++i) lse += std::exp(z[t * E + i]);
      double sel = 0;
      for (int64_t k = 0; k < K; ++k) sel += std::exp(z[t * E + buf.expert[t * K + k]]) / lse;
      for (int64_t k = 0; k < K; ++k) {
        const double p = std::exp(z[t * E + buf.expert[t * K + k]]) / lse;
        EXPECT_NEAR(buf.gate[t * K + k], g == GateFn::kRaw ? p : p / sel, 1e-14);
      }
    }
    // Plan: counting sort in token order.
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

// An expert whose float scores all underflow (logits 100 below the others): the scaling-form
// iterations cannot represent its column, the call must fall back to the log domain and still
// give finite potentials with uniform marginals, and the same experts as the double call.
TEST(SinkhornTest, UnderflowingExpertFallsBackToTheLogDomain) {
  const int64_t n = 64, E = 8, K = 2;
  auto zd = skewed_logits(n, E, 1.0, 5);
  for (int64_t t = 0; t < n; ++t) zd[t * E + 3] -= 100.0;
  std::vector<float> zf(zd.begin(), zd.end());
  const auto o = opts(E, K, 16);
  SinkhornBuffers<float> bf;
  SinkhornBuffers<double> bd;
  bf.resize(o, n);
  bd.resize(o, n);
  const auto sf = sinkhorn_route_forward(o, zf.data(), n, bf);
  const auto sd = sinkhorn_route_forward(o, zd.data(), n, bd);
  ASSERT_TRUE(std::isfinite(sf.max_col_error));
  EXPECT_NEAR(sf.max_col_error, sd.max_col_error, 1e-6);
  for (int64_t i = 0; i < E; ++i) {
    ASSERT_TRUE(std::isfinite(bf.col_pot[i]));
    EXPECT_NEAR(bf.col_pot[i], bd.col_pot[i], 1e-6 * (1 + std::abs(bd.col_pot[i])));
  }
  for (int64_t s = 0; s < n * K; ++s) EXPECT_EQ(bf.expert[s], bd.expert[s]);
}

TEST(SinkhornTest, RejectsInvalidOptions) {
  SinkhornBuffers<float> buf;
  EXPECT_THROW(buf.resize(opts(4, 1, 8, GateFn::kRenorm), 4), Error);
  EXPECT_THROW(buf.resize(opts(4, 5, 8), 4), Error);
  EXPECT_THROW(buf.resize(opts(4, 1, -1), 4), Error);
  buf.resize(opts(4, 2, 8), 4);
  std::vector<float> z(5 * 4);
  EXPECT_THROW(sinkhorn_route_forward(opts(4, 2, 8), z.data(), 5, buf), Error);
}

// Loss = Σ_slots gate·R; dz from sinkhorn_route_backward vs central differences. The selection
// moves with z only through b (continuous), so away from ties it is locally constant.
void check_sinkhorn_gradient(GateFn g) {
  const int64_t n = 24, E = 6, K = 2;
  auto o = opts(E, K, 8, g);
  auto z = skewed_logits(n, E, 2.0, 11);
  std::vector<double> R(n * K), dz(n * E);
  fill_normal(R, 12);
  SinkhornBuffers<double> buf;
  buf.resize(o, n);
  auto loss = [&]() {
    sinkhorn_route_forward(o, z.data(), n, buf);
    double l = 0;
    for (int64_t s = 0; s < n * K; ++s) l += buf.gate[s] * R[s];
    return l;
  };
  loss();
  sinkhorn_route_backward(o, R.data(), buf, dz.data());
  auto r = check_gradient(loss, z.data(), z.size(), dz.data(), 1e-6);
  EXPECT_LT(r.max_error, 1e-6) << describe(r);
}

TEST(SinkhornTest, GradientRawGates) { check_sinkhorn_gradient(GateFn::kRaw); }
TEST(SinkhornTest, GradientRenormGates) { check_sinkhorn_gradient(GateFn::kRenorm); }

}  // namespace
}  // namespace sy
