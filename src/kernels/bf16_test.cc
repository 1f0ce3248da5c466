// The bf16 paths of the kernels with weight GEMMs (matmul, the SwiGLU FFN), forward and backward,
// against their fp32 paths on the same inputs.
//
// Tolerance: bf16 keeps 8 significant bits, unit roundoff u = 2⁻⁸. A GEMM on rounded operands
// moves each product by ≤ (2u + u²)|a·b|, so its output by ≤ ≈ 2u relative to Σ|a·b|; the FFN
// chains two GEMMs and SiLU between them, so its outputs and gradients carry ≈ 2–3 such
// roundings. The checks ask for a norm-wise relative error (max |got − want| / max |want|) of
// ≤ 4u ≈ 1.6% — and at least u/8, so that a bf16 path that silently ran in fp32 fails.
#include <gtest/gtest.h>

#include <vector>

#include "core/gemm_bf16.h"
#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::rel_error;
using testing::to_float;

constexpr double kU = 1.0 / 256;

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

void expect_bf16_close(const std::vector<float>& bf16, const std::vector<float>& fp32,
                       const char* what) {
  const double e = rel_error(bf16, to_double(fp32));
  EXPECT_LE(e, 4 * kU) << what;
  EXPECT_GE(e, kU / 8) << what << ": no bf16 rounding visible";
}

class KernelsBf16Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_bf16()) GTEST_SKIP() << bf16_unsupported_reason();
  }
};

TEST_F(KernelsBf16Test, MatmulForwardAndBackward) {
  const int64_t N = 64, IC = 96, OC = 80;
  const auto inp = to_float(randn(N * IC, 1)), w = to_float(randn(OC * IC, 2, 0.1)),
             dout = to_float(randn(N * OC, 3));
  Bf16Gemm bf(w.data(), static_cast<int64_t>(w.size()));
  bf.refresh();
  std::vector<float> out32(N * OC), out16(N * OC);
  matmul_forward(out32.data(), inp.data(), w.data(), N, IC, OC);
  matmul_forward(out16.data(), inp.data(), w.data(), N, IC, OC, &bf);
  expect_bf16_close(out16, out32, "out");
  std::vector<float> di32(N * IC), di16(N * IC), dw32(OC * IC), dw16(OC * IC);
  matmul_backward(di32.data(), dw32.data(), dout.data(), inp.data(), w.data(), N, IC, OC);
  matmul_backward(di16.data(), dw16.data(), dout.data(), inp.data(), w.data(), N, IC, OC, &bf);
  expect_bf16_close(di16, di32, "dinp");
  expect_bf16_close(dw16, dw32, "dweight");
}

TEST_F(KernelsBf16Test, SwigluFfnForwardAndBackward) {
  const int64_t N = 48, D = 64, F = 40;
  // The weights as one block, as the model holds them.
  std::vector<float> w = to_float(randn(3 * F * D, 4, 0.15));
  const float* wgu = w.data();
  const float* wd = w.data() + 2 * F * D;
  const auto x = to_float(randn(N * D, 5)), dy = to_float(randn(N * D, 6));
  Bf16Gemm bf(w.data(), static_cast<int64_t>(w.size()));
  bf.refresh();
  std::vector<float> y32(N * D), y16(N * D), hu32(N * 2 * F), hu16(N * 2 * F), act32(N * F),
      act16(N * F);
  swiglu_ffn_forward(y32.data(), 0.f, hu32.data(), act32.data(), x.data(), wgu, wd, N, D, F);
  swiglu_ffn_forward(y16.data(), 0.f, hu16.data(), act16.data(), x.data(), wgu, wd, N, D, F, &bf);
  expect_bf16_close(y16, y32, "y");
  expect_bf16_close(hu16, hu32, "hu");
  std::vector<float> dx32(N * D), dx16(N * D), dwgu32(2 * F * D), dwgu16(2 * F * D), dwd32(D * F),
      dwd16(D * F), dhu(N * 2 * F), dact(N * F);
  // Both backward passes from the fp32 forward's activations: the backward's own error only.
  swiglu_ffn_backward(dx32.data(), 0.f, dwgu32.data(), dwd32.data(), 1.f, dhu.data(), dact.data(),
                      dy.data(), x.data(), hu32.data(), act32.data(), wgu, wd, N, D, F);
  swiglu_ffn_backward(dx16.data(), 0.f, dwgu16.data(), dwd16.data(), 1.f, dhu.data(), dact.data(),
                      dy.data(), x.data(), hu32.data(), act32.data(), wgu, wd, N, D, F, &bf);
  expect_bf16_close(dx16, dx32, "dx");
  expect_bf16_close(dwgu16, dwgu32, "dw_gate_up");
  expect_bf16_close(dwd16, dwd32, "dw_down");
}

}  // namespace
}  // namespace sy
