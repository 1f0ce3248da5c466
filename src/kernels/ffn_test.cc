#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

constexpr int64_t kN = 5, kD = 7, kF = 6;

// y = (silu(x·W_gᵀ) ⊙ x·W_uᵀ)·W_dᵀ written out with loops.
std::vector<double> naive_ffn(const std::vector<double>& x, const std::vector<double>& wgu,
                              const std::vector<double>& wd) {
  std::vector<double> y(kN * kD, 0.0);
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t f = 0; f < kF; ++f) {
      double g = 0, u = 0;
      for (int64_t d = 0; d < kD; ++d) {
        g += x[n * kD + d] * wgu[f * kD + d];
        u += x[n * kD + d] * wgu[(kF + f) * kD + d];
      }
      const double a = g / (1 + std::exp(-g)) * u;
      for (int64_t d = 0; d < kD; ++d) y[n * kD + d] += a * wd[d * kF + f];
    }
  return y;
}

struct Ffn {
  std::vector<double> x = randn(kN * kD, 1), wgu = randn(2 * kF * kD, 2, 0.5),
                      wd = randn(kD * kF, 3, 0.5);
  std::vector<double> hu = std::vector<double>(kN * 2 * kF), act = std::vector<double>(kN * kF);
  std::vector<double> forward(double beta, std::vector<double> y) {
    swiglu_ffn_forward(y.data(), beta, hu.data(), act.data(), x.data(), wgu.data(), wd.data(), kN,
                       kD, kF);
    return y;
  }
};

TEST(SwigluFfnTest, ForwardMatchesNaiveReferenceAndBetaAdds) {
  Ffn f;
  const auto want = naive_ffn(f.x, f.wgu, f.wd);
  const auto y0 = f.forward(0.0, std::vector<double>(kN * kD, 1e30));  // beta 0 ignores y
  EXPECT_LT(testing::max_abs_diff(y0, want), 1e-12);
  const auto y1 = f.forward(1.0, std::vector<double>(kN * kD, 2.0));
  for (int64_t i = 0; i < kN * kD; ++i) EXPECT_NEAR(y1[i], want[i] + 2.0, 1e-12);

  std::vector<float> yf(kN * kD), huf(kN * 2 * kF), actf(kN * kF);
  swiglu_ffn_forward(yf.data(), 0.0f, huf.data(), actf.data(), to_float(f.x).data(),
                     to_float(f.wgu).data(), to_float(f.wd).data(), kN, kD, kF);
  EXPECT_LT(testing::rel_error(yf, want), 1e-5);
}

// Every input and weight gradient against finite differences of Σ y ⊙ r.
TEST(SwigluFfnTest, GradientMatchesFiniteDifferences) {
  Ffn f;
  const auto r = randn(kN * kD, 4);
  auto loss = [&] { return testing::dot(f.forward(0.0, std::vector<double>(kN * kD)), r); };
  loss();  // hu, act of the unperturbed inputs
  std::vector<double> dx(kN * kD, 0.0), dwgu(f.wgu.size(), 0.0), dwd(f.wd.size(), 0.0);
  std::vector<double> dhu(kN * 2 * kF, 7.0), dact(kN * kF, 7.0);  // scratch: overwritten
  swiglu_ffn_backward(dx.data(), 0.0, dwgu.data(), dwd.data(), 1.0, dhu.data(), dact.data(),
                      r.data(), f.x.data(), f.hu.data(), f.act.data(), f.wgu.data(), f.wd.data(),
                      kN, kD, kF);
  testing::expect_gradient("dx", loss, f.x, dx);
  testing::expect_gradient("dw_gate_up", loss, f.wgu, dwgu);
  testing::expect_gradient("dw_down", loss, f.wd, dwd);
}

// dx by beta and the weight gradients by dw_beta: 0 overwrites, 1 adds.
TEST(SwigluFfnTest, BackwardOverwritesOrAccumulatesAsDocumented) {
  Ffn f;
  f.forward(0.0, std::vector<double>(kN * kD));
  const auto r = randn(kN * kD, 4);
  std::vector<double> dx(kN * kD, 1e30), dwgu(f.wgu.size(), 1e30), dwd(f.wd.size(), 1e30);
  std::vector<double> dhu(kN * 2 * kF), dact(kN * kF);
  auto backward = [&](double beta) {
    swiglu_ffn_backward(dx.data(), beta, dwgu.data(), dwd.data(), beta, dhu.data(), dact.data(),
                        r.data(), f.x.data(), f.hu.data(), f.act.data(), f.wgu.data(), f.wd.data(),
                        kN, kD, kF);
  };
  backward(0.0);
  const auto dx1 = dx, dwgu1 = dwgu, dwd1 = dwd;
  backward(1.0);
  testing::expect_doubled("dx", dx1, dx);
  testing::expect_doubled("dw_gate_up", dwgu1, dwgu);
  testing::expect_doubled("dw_down", dwd1, dwd);
}

}  // namespace
}  // namespace sy
