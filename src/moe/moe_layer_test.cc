#include "moe/moe_layer.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/gemm_bf16.h"
#include "core/gradcheck.h"

namespace sy {
namespace {

struct Fixture {
  MoeDims dims;
  TopKOptions opt;
  std::vector<double> h, router, gate_up, down, sgu, sdown, R;
  MoeActivations<double> acts;
  MoeScratch<double> scratch;
  std::unique_ptr<Router<double>> rt;  // the layer's router (top-K unless set_router)
  RouteCall<double> call;
  int64_t n;

  Fixture(int64_t n_, int64_t E, int64_t K, int64_t n_shared, double cf) : n(n_) {
    dims = MoeDims{n_, 8, E, K, 6, n_shared, 5};
    opt.n_experts = E;
    opt.top_k = K;
    opt.capacity_factor = cf;
    opt.z_loss_coef = 0.01;
    h.resize(n * dims.d);
    router.resize(E * dims.d);
    gate_up.resize(E * 2 * dims.f * dims.d);
    down.resize(E * dims.d * dims.f);
    sgu.resize(n_shared * 2 * dims.f_shared * dims.d);
    sdown.resize(n_shared * dims.d * dims.f_shared);
    R.resize(n * dims.d);
    fill_normal(h, 1);
    fill_normal(router, 2, 0.8);
    fill_normal(gate_up, 3, 0.5);
    fill_normal(down, 4, 0.5);
    fill_normal(sgu, 5, 0.5);
    fill_normal(sdown, 6, 0.5);
    fill_normal(R, 7);
    set_router(RouterOptions{});
  }
  void set_router(const RouterOptions& ro) {
    rt = make_router<double>(ro, opt, n);
    dims.max_per_token = rt->max_experts_per_token();
    acts.resize(dims);
    scratch.resize(dims);
  }
  RoutingBuffers<double>& slots() const { return *rt->slots(); }
  MoeWeights<double> weights() const {
    return {router.data(), gate_up.data(), down.data(), sgu.data(), sdown.data()};
  }
  double loss(std::vector<double>& y) {
    y.assign(n * dims.d, 0);
    auto st = moe_forward(dims, weights(), *rt, call, h.data(), n, acts, y.data());
    std::vector<double> f(dims.e);
    micro_fractions(slots(), f.data());
    lbl_begin(slots(), n);
    double l = st.z_loss + lbl_add_term(slots(), opt.score, 0.1, f.data(), 1);
    for (size_t i = 0; i < y.size(); ++i) l += y[i] * R[i];
    return l;
  }
};

// Naive per-token reference of the forward (no dispatch): checks the plan-based pipeline.
TEST(MoeLayerTest, ForwardMatchesPerTokenReference) {
  Fixture fx(20, 5, 2, 1, 0.0);
  std::vector<double> y;
  fx.loss(y);
  const auto& d = fx.dims;
  const auto& r = fx.slots();
  for (int64_t t = 0; t < fx.n; ++t) {
    std::vector<double> ref(d.d, 0.0);
    auto ffn = [&](const double* gu, const double* dn, int64_t F, double g) {
      std::vector<double> a(F);
      for (int64_t i = 0; i < F; ++i) {
        double gs = 0, us = 0;
        for (int64_t j = 0; j < d.d; ++j) {
          gs += gu[i * d.d + j] * fx.h[t * d.d + j];
          us += gu[(F + i) * d.d + j] * fx.h[t * d.d + j];
        }
        a[i] = gs / (1 + std::exp(-gs)) * us;
      }
      for (int64_t j = 0; j < d.d; ++j) {
        double s = 0;
        for (int64_t i = 0; i < F; ++i) s += dn[j * F + i] * a[i];
        ref[j] += g * s;
      }
    };
    for (int64_t k = 0; k < d.k; ++k) {
      int e = r.expert[t * d.k + k];
      ffn(fx.gate_up.data() + e * 2 * d.f * d.d, fx.down.data() + e * d.d * d.f, d.f,
          r.gate[t * d.k + k]);
    }
    ffn(fx.sgu.data(), fx.sdown.data(), d.f_shared, 1.0);
    for (int64_t j = 0; j < d.d; ++j) ASSERT_NEAR(y[t * d.d + j], ref[j], 1e-12);
  }
}

void check_moe_gradients(int64_t n_shared, double cf) {
  Fixture fx(24, 4, 2, n_shared, cf);
  std::vector<double> y;
  fx.loss(y);
  if (cf > 0) {
    ASSERT_GT(fx.slots().dropped, 0);
  }
  std::vector<double> dh(fx.h.size(), 0), drouter(fx.router.size(), 0), dgu(fx.gate_up.size(), 0),
      ddown(fx.down.size(), 0), dsgu(fx.sgu.size(), 0), dsdown(fx.sdown.size(), 0);
  MoeGrads<double> g{drouter.data(), dgu.data(), ddown.data(), dsgu.data(), dsdown.data()};
  moe_backward(fx.dims, fx.weights(), g, *fx.rt, fx.h.data(), fx.n, fx.acts, fx.scratch,
               fx.R.data(), 1.0, dh.data());
  auto f = [&]() { return fx.loss(y); };
  struct Case {
    const char* name;
    std::vector<double>* x;
    std::vector<double>* g;
  } cases[] = {{"h", &fx.h, &dh},
               {"router", &fx.router, &drouter},
               {"gate_up", &fx.gate_up, &dgu},
               {"down", &fx.down, &ddown},
               {"shared_gate_up", &fx.sgu, &dsgu},
               {"shared_down", &fx.sdown, &dsdown}};
  for (auto& c : cases) {
    if (c.x->empty()) continue;
    auto res = check_gradient(f, c.x->data(), c.x->size(), c.g->data(), 1e-5, 300);
    EXPECT_LT(res.max_error, 1e-6) << c.name << ": " << describe(res);
  }
}

TEST(MoeLayerTest, GradientsDropless) { check_moe_gradients(0, 0.0); }
TEST(MoeLayerTest, GradientsWithSharedExpertsAndCapacity) { check_moe_gradients(2, 1.0); }

TEST(MoeLayerTest, ExpertChoiceGradientsAndExactLoads) {
  for (bool causal : {false, true}) {
    Fixture fx(24, 4, 2, 1, 0.0);
    RouterOptions ro;
    ro.type = "expert_choice";
    ro.ec_capacity_factor = 2.0;
    fx.set_router(ro);
    ASSERT_EQ(fx.rt->slots(), nullptr);
    ASSERT_EQ(fx.rt->state().size(), 1u);
    std::fill(fx.rt->state()[0].data, fx.rt->state()[0].data + 4, 0.2);  // thresholds θ
    fx.call.update = false;
    fx.call.causal = causal;
    std::vector<double> y;
    auto f = [&]() {
      y.assign(fx.n * fx.dims.d, 0);
      moe_forward(fx.dims, fx.weights(), *fx.rt, fx.call, fx.h.data(), fx.n, fx.acts, y.data());
      double l = 0;
      for (size_t i = 0; i < y.size(); ++i) l += y[i] * fx.R[i];
      return l;
    };
    f();
    if (!causal) {
      for (int i = 0; i < 4; ++i) EXPECT_EQ(fx.acts.plan.load[i], 12);  // ceil(24·2/4)
    }
    // The router entropy statistic against −Σ p·log p computed directly.
    {
      y.assign(fx.n * fx.dims.d, 0);
      const RoutingStats st =
          moe_forward(fx.dims, fx.weights(), *fx.rt, fx.call, fx.h.data(), fx.n, fx.acts, y.data());
      double want = 0;
      for (int64_t t = 0; t < fx.n; ++t) {  // p = softmax(z) of the layer's logits
        const double* z = fx.acts.logits.data() + t * 4;
        const double mx = *std::max_element(z, z + 4);
        double sum = 0;
        for (int i = 0; i < 4; ++i) sum += std::exp(z[i] - mx);
        for (int i = 0; i < 4; ++i) {
          const double p = std::exp(z[i] - mx) / sum;
          if (p > 0) want -= p * std::log(p);
        }
      }
      EXPECT_NEAR(st.entropy_sum, want, 1e-12 * fx.n) << "causal " << causal;
    }
    std::vector<double> dh(fx.h.size(), 0), dr(fx.router.size(), 0), dgu(fx.gate_up.size(), 0),
        dd(fx.down.size(), 0), dsgu(fx.sgu.size(), 0), dsd(fx.sdown.size(), 0);
    MoeGrads<double> g{dr.data(), dgu.data(), dd.data(), dsgu.data(), dsd.data()};
    moe_backward(fx.dims, fx.weights(), g, *fx.rt, fx.h.data(), fx.n, fx.acts, fx.scratch,
                 fx.R.data(), 1.0, dh.data());
    auto rh = check_gradient(f, fx.h.data(), fx.h.size(), dh.data(), 1e-5, 200);
    EXPECT_LT(rh.max_error, 1e-6) << "h, causal " << causal << ": " << describe(rh);
    auto rr = check_gradient(f, fx.router.data(), fx.router.size(), dr.data(), 1e-5, 200);
    EXPECT_LT(rr.max_error, 1e-6) << "router, causal " << causal << ": " << describe(rr);
  }
}

// 8 experts of 16 wide over 256 tokens (top-2): enough experts for two threads to run them side
// by side. bf16: the expert GEMMs on a bf16 copy of the expert weights (core/gemm_bf16.h), with
// the experts' activations kept in bf16 (MoeDims::bf16_activations, as the model runs them) or,
// bf16_activations false, in fp32 and rounded by each GEMM.
struct SideBySideMoe {
  struct Result {
    std::vector<int64_t> loads;
    std::vector<float> y, input_grad, expert_grads;  // expert_grads: gate|up, then down
  };

  explicit SideBySideMoe(bool bf16, bool bf16_activations = true) {
    dims.bf16_activations = bf16 && bf16_activations;
    opt.n_experts = 8;
    opt.top_k = 2;
    std::vector<double> hd(256 * 16), rd(8 * 16), gud(8 * 64 * 16), dd(8 * 16 * 32);
    fill_normal(hd, 1);
    fill_normal(rd, 2);
    fill_normal(gud, 3, 0.3);
    fill_normal(dd, 4, 0.3);
    h.assign(hd.begin(), hd.end());
    rw.assign(rd.begin(), rd.end());
    // The expert weights as one block (gate|up, then down), as the model holds them.
    block.assign(gud.begin(), gud.end());
    block.insert(block.end(), dd.begin(), dd.end());
    n_gate_up = static_cast<int64_t>(gud.size());
    if (bf16) {
      copy = std::make_unique<Bf16Gemm>(block.data(), static_cast<int64_t>(block.size()));
      copy->refresh();
    }
  }

  // One forward and backward on the current OpenMP thread count, the experts' gradients filled
  // with `grad_fill` on entry.
  Result run(float grad_fill, bool experts_zero) const {
    const MoeWeights<float> w{rw.data(), block.data(), block.data() + n_gate_up,
                              nullptr,   nullptr,      copy.get()};
    MoeActivations<float> a;
    MoeScratch<float> s;
    a.resize(dims);
    s.resize(dims);
    const std::unique_ptr<Router<float>> router = make_router<float>(RouterOptions{}, opt, 256);
    Result r;
    r.y.resize(256 * 16);
    moe_forward(dims, w, *router, RouteCall<float>{}, h.data(), 256, a, r.y.data());
    r.loads = a.plan.load;
    r.input_grad.assign(256 * 16, 0.f);
    std::vector<float> dr(rw.size(), 0.f);
    r.expert_grads.assign(block.size(), grad_fill);
    MoeGrads<float> g{dr.data(), r.expert_grads.data(), r.expert_grads.data() + n_gate_up, nullptr,
                      nullptr};
    g.experts_zero = experts_zero;
    moe_backward(dims, w, g, *router, h.data(), 256, a, s, r.y.data(), 1.f, r.input_grad.data());
    return r;
  }

  MoeDims dims{256, 16, 8, 2, 32, 0, 0};
  TopKOptions opt;
  std::vector<float> h, rw, block;
  int64_t n_gate_up = 0;
  std::unique_ptr<Bf16Gemm> copy;
};

void check_thread_count_independence(bool bf16) {
  const SideBySideMoe moe(bf16);
  std::vector<SideBySideMoe::Result> runs;
  const int saved = omp_get_max_threads();
  // With 2 threads the 8 experts run side by side (one per thread); with 1, one after another.
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    runs.push_back(moe.run(0.f, false));
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(runs[0].loads, runs[1].loads);
  for (size_t i = 0; i < runs[0].y.size(); ++i) ASSERT_NEAR(runs[0].y[i], runs[1].y[i], 1e-5);
  for (size_t i = 0; i < runs[0].input_grad.size(); ++i)
    ASSERT_NEAR(runs[0].input_grad[i], runs[1].input_grad[i], 1e-4);
  const std::vector<float>& g0 = runs[0].expert_grads;
  for (size_t i = 0; i < g0.size(); ++i)
    ASSERT_NEAR(g0[i], runs[1].expert_grads[i], 1e-4 * (1 + std::abs(g0[i])));
}

// MoeGrads::experts_zero: the experts' weight gradients written instead of added are the same
// bits as added onto zeros, and the old contents are never read (NaN there would show).
void check_experts_zero_overwrites(bool bf16) {
  const SideBySideMoe moe(bf16);
  const SideBySideMoe::Result added = moe.run(0.f, false);
  const SideBySideMoe::Result written = moe.run(std::numeric_limits<float>::quiet_NaN(), true);
  for (int64_t load : added.loads) ASSERT_GT(load, 0) << "every expert must write its gradient";
  EXPECT_EQ(written.expert_grads, added.expert_grads);
  EXPECT_EQ(written.input_grad, added.input_grad);
}

TEST(MoeLayerTest, ExpertsZeroWritesTheSameGradientsWithoutReadingThem) {
  check_experts_zero_overwrites(false);
}

TEST(MoeLayerTest, Bf16ExpertsZeroWritesTheSameGradientsWithoutReadingThem) {
  if (!cpu_has_bf16()) GTEST_SKIP() << bf16_unsupported_reason();
  check_experts_zero_overwrites(true);
}

// Keeping the experts' inputs and SwiGLU outputs in bf16 changes no bit: the GEMMs read the
// same rounded values, without a rounding pass each (both schedules: one and two threads).
TEST(MoeLayerTest, Bf16ActivationsGiveTheSameBitsAsRoundingInEachGemm) {
  if (!cpu_has_bf16()) GTEST_SKIP() << bf16_unsupported_reason();
  const SideBySideMoe kept(true, true), rounded(true, false);
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    const SideBySideMoe::Result a = kept.run(0.f, false), b = rounded.run(0.f, false);
    for (int64_t load : a.loads) ASSERT_GT(load, 0) << "every expert must run";
    EXPECT_EQ(a.loads, b.loads);
    EXPECT_EQ(a.y, b.y) << threads << " threads";
    EXPECT_EQ(a.input_grad, b.input_grad) << threads << " threads";
    EXPECT_EQ(a.expert_grads, b.expert_grads) << threads << " threads";
  }
  omp_set_num_threads(saved);
}

TEST(MoeLayerTest, LoadsOutputsAndGradientsIndependentOfThreadCount) {
  check_thread_count_independence(false);
}

// Integer loads stay independent of the thread count under bf16 too (the routing is fp32; the
// bf16 expert GEMMs of the two schedules agree to fp32 summation order).
TEST(MoeLayerTest, Bf16LoadsOutputsAndGradientsIndependentOfThreadCount) {
  if (!cpu_has_bf16()) GTEST_SKIP() << bf16_unsupported_reason();
  check_thread_count_independence(true);
}

}  // namespace
}  // namespace sy
