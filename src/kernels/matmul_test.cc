#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

constexpr int64_t kN = 5, kIC = 7, kOC = 6;

std::vector<double> naive_matmul(const std::vector<double>& inp, const std::vector<double>& w) {
  std::vector<double> out(kN * kOC);
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t o = 0; o < kOC; ++o)
      for (int64_t i = 0; i < kIC; ++i) out[n * kOC + o] += inp[n * kIC + i] * w[o * kIC + i];
  return out;
}

TEST(MatmulTest, ForwardMatchesNaiveReference) {
  auto inp = randn(kN * kIC, 1), w = randn(kOC * kIC, 2);
  std::vector<float> out(kN * kOC);
  matmul_forward(out.data(), to_float(inp).data(), to_float(w).data(), kN, kIC, kOC);
  EXPECT_LT(testing::rel_error(out, naive_matmul(inp, w)), 1e-5);
}

TEST(MatmulTest, GradientMatchesFiniteDifferences) {
  auto inp = randn(kN * kIC, 1), w = randn(kOC * kIC, 2), r = randn(kN * kOC, 3);
  std::vector<double> out(kN * kOC);
  auto loss = [&] {
    matmul_forward(out.data(), inp.data(), w.data(), kN, kIC, kOC);
    return testing::dot(out, r);
  };
  std::vector<double> dinp(inp.size()), dw(w.size());
  matmul_backward(dinp.data(), dw.data(), r.data(), inp.data(), w.data(), kN, kIC, kOC);
  testing::expect_gradient("dinp", loss, inp, dinp);
  testing::expect_gradient("dweight", loss, w, dw);
}

TEST(MatmulTest, BackwardAccumulatesAndSkipsNullGradients) {
  auto inp = randn(kN * kIC, 1), w = randn(kOC * kIC, 2), r = randn(kN * kOC, 3);
  std::vector<double> dinp(inp.size()), dw(w.size());
  matmul_backward(dinp.data(), dw.data(), r.data(), inp.data(), w.data(), kN, kIC, kOC);
  auto dinp2 = dinp, dw2 = dw;
  matmul_backward(dinp2.data(), dw2.data(), r.data(), inp.data(), w.data(), kN, kIC, kOC);
  testing::expect_doubled("dinp", dinp, dinp2);
  testing::expect_doubled("dweight", dw, dw2);

  std::vector<double> dw_only(w.size());
  matmul_backward<double>(nullptr, dw_only.data(), r.data(), inp.data(), w.data(), kN, kIC, kOC);
  EXPECT_LT(testing::max_abs_diff(dw_only, dw), 1e-12);
}

TEST(MatmulTest, FloatBackwardMatchesDouble) {
  auto inp = randn(kN * kIC, 1), w = randn(kOC * kIC, 2), r = randn(kN * kOC, 3);
  std::vector<double> dinp(inp.size()), dw(w.size());
  matmul_backward(dinp.data(), dw.data(), r.data(), inp.data(), w.data(), kN, kIC, kOC);
  std::vector<float> dinp_f(inp.size()), dw_f(w.size());
  matmul_backward(dinp_f.data(), dw_f.data(), to_float(r).data(), to_float(inp).data(),
                  to_float(w).data(), kN, kIC, kOC);
  EXPECT_LT(testing::rel_error(dinp_f, dinp), 1e-5);
  EXPECT_LT(testing::rel_error(dw_f, dw), 1e-5);
}

// The fixed-shape variant computes the same products (its weight gradient through another
// library path in fp32: equal within fp32 rounding; in fp64 bit for bit), overwriting or
// accumulating dinp by dinp_beta and always accumulating the weight gradient.
TEST(MatmulTest, FixedShapeBackwardMatchesLinearBackward) {
  auto inp = randn(kN * kIC, 1), w = randn(kOC * kIC, 2), r = randn(kN * kOC, 3);
  auto dinp0 = randn(kN * kIC, 4), dw0 = randn(kOC * kIC, 5);
  for (double beta : {0.0, 1.0}) {
    auto dinp = dinp0, dw = dw0, dinp_fixed = dinp0, dw_fixed = dw0;
    linear_backward(dinp.data(), beta, dw.data(), 1.0, r.data(), inp.data(), w.data(), kN, kIC, kOC,
                    nullptr);
    linear_backward_fixed_shape(dinp_fixed.data(), beta, dw_fixed.data(), r.data(), inp.data(),
                                w.data(), kN, kIC, kOC, nullptr);
    EXPECT_EQ(dinp_fixed, dinp);
    EXPECT_EQ(dw_fixed, dw);
    auto dinp_f = to_float(dinp0), dw_f = to_float(dw0);
    linear_backward_fixed_shape(dinp_f.data(), static_cast<float>(beta), dw_f.data(),
                                to_float(r).data(), to_float(inp).data(), to_float(w).data(), kN,
                                kIC, kOC, nullptr);
    EXPECT_LT(testing::rel_error(dinp_f, dinp), 1e-5);
    EXPECT_LT(testing::rel_error(dw_f, dw), 1e-5);
  }
}

// dweight_beta 0 writes the weight gradient: the same bits as accumulating onto zeros, the old
// contents (NaN here) never read.
TEST(MatmulTest, LinearBackwardWeightBetaZeroOverwrites) {
  const auto inp = to_float(randn(kN * kIC, 1)), w = to_float(randn(kOC * kIC, 2)),
             r = to_float(randn(kN * kOC, 3));
  std::vector<float> dinp(inp.size()), added(w.size(), 0.f),
      written(w.size(), std::numeric_limits<float>::quiet_NaN());
  linear_backward(dinp.data(), 0.f, added.data(), 1.f, r.data(), inp.data(), w.data(), kN, kIC, kOC,
                  nullptr);
  linear_backward(dinp.data(), 0.f, written.data(), 0.f, r.data(), inp.data(), w.data(), kN, kIC,
                  kOC, nullptr);
  EXPECT_EQ(written, added);
}

}  // namespace
}  // namespace sy
