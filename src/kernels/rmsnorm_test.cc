#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

// D > 64 so that dweight spans two column blocks, one of them partial.
constexpr int64_t kN = 3, kD = 70;
constexpr double kEps = 1e-5;

TEST(RmsnormTest, ForwardMatchesNaiveReference) {
  auto inp = randn(kN * kD, 1), w = randn(kD, 2);
  std::vector<double> want(kN * kD), want_rstd(kN);
  for (int64_t n = 0; n < kN; ++n) {
    double ms = 0;
    for (int64_t i = 0; i < kD; ++i) ms += inp[n * kD + i] * inp[n * kD + i] / kD;
    want_rstd[n] = 1 / std::sqrt(ms + kEps);
    for (int64_t i = 0; i < kD; ++i) want[n * kD + i] = inp[n * kD + i] * want_rstd[n] * w[i];
  }
  std::vector<float> out(kN * kD), rstd(kN);
  rmsnorm_forward(out.data(), rstd.data(), to_float(inp).data(), to_float(w).data(), kN, kD,
                  static_cast<float>(kEps));
  EXPECT_LT(testing::rel_error(out, want), 1e-5);
  EXPECT_LT(testing::rel_error(rstd, want_rstd), 1e-5);
}

TEST(RmsnormTest, GradientMatchesFiniteDifferences) {
  auto inp = randn(kN * kD, 1), w = randn(kD, 2), r = randn(kN * kD, 3);
  std::vector<double> out(kN * kD), rstd(kN);
  auto loss = [&] {
    rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), kN, kD, kEps);
    return testing::dot(out, r);
  };
  loss();
  std::vector<double> dinp(inp.size()), dw(w.size());
  rmsnorm_backward(dinp.data(), dw.data(), r.data(), inp.data(), w.data(), rstd.data(), kN, kD);
  testing::expect_gradient("dinp", loss, inp, dinp);
  testing::expect_gradient("dweight", loss, w, dw);
}

TEST(RmsnormTest, BackwardAccumulatesAndFloatMatchesDouble) {
  auto inp = randn(kN * kD, 1), w = randn(kD, 2), r = randn(kN * kD, 3);
  std::vector<double> out(kN * kD), rstd(kN), dinp(inp.size()), dw(w.size());
  rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), kN, kD, kEps);
  rmsnorm_backward(dinp.data(), dw.data(), r.data(), inp.data(), w.data(), rstd.data(), kN, kD);
  auto dinp2 = dinp, dw2 = dw;
  rmsnorm_backward(dinp2.data(), dw2.data(), r.data(), inp.data(), w.data(), rstd.data(), kN, kD);
  testing::expect_doubled("dinp", dinp, dinp2);
  testing::expect_doubled("dweight", dw, dw2);

  auto inp_f = to_float(inp), w_f = to_float(w), r_f = to_float(r);
  std::vector<float> out_f(kN * kD), rstd_f(kN), dinp_f(inp.size()), dw_f(w.size());
  rmsnorm_forward(out_f.data(), rstd_f.data(), inp_f.data(), w_f.data(), kN, kD, 1e-5f);
  rmsnorm_backward(dinp_f.data(), dw_f.data(), r_f.data(), inp_f.data(), w_f.data(), rstd_f.data(),
                   kN, kD);
  EXPECT_LT(testing::rel_error(dinp_f, dinp), 1e-5);
  EXPECT_LT(testing::rel_error(dw_f, dw), 1e-5);
}

TEST(RmsnormTest, WeightGradientIndependentOfThreadCount) {
  constexpr int64_t N = 257, D = 200;
  auto inp = to_float(randn(N * D, 1)), w = to_float(randn(D, 2)), r = to_float(randn(N * D, 3));
  std::vector<float> out(N * D), rstd(N);
  rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, D, 1e-5f);
  const int threads = omp_get_max_threads();
  std::vector<float> dw1(D), dw2(D);
  omp_set_num_threads(1);
  rmsnorm_backward<float>(nullptr, dw1.data(), r.data(), inp.data(), w.data(), rstd.data(), N, D);
  omp_set_num_threads(std::max(2, threads));
  rmsnorm_backward<float>(nullptr, dw2.data(), r.data(), inp.data(), w.data(), rstd.data(), N, D);
  omp_set_num_threads(threads);
  EXPECT_EQ(dw1, dw2);
}

}  // namespace
}  // namespace sy
