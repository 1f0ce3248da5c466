// The bf16 paths of the kernels with weight GEMMs (matmul, the SwiGLU FFN) and of the attention
// core, forward and backward, against their fp32 paths on the same inputs.
//
// Tolerance: bf16 keeps 8 significant bits, unit roundoff u = 2⁻⁸. A GEMM on rounded operands
// moves each product by ≤ (2u + u²)|a·b|, so its output by ≤ ≈ 2u relative to Σ|a·b|; the FFN
// chains two GEMMs and SiLU between them, so its outputs and gradients carry ≈ 2–3 such
// roundings; the attention core likewise rounds both operands of each of its two chained
// products (scores then P·V; dP then dQ or dK). The checks ask for a norm-wise relative error (max
// |got − want| / max |want|) of ≤ 4u ≈ 1.6% — and at least u/8, so that a bf16 path that silently
// ran in fp32 fails.
#include <gtest/gtest.h>
#include <omp.h>

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

// q, k, v side by side in one buffer [B, S, 3·H·hd], as the model stores them.
struct AttentionCase {
  int64_t B, S, H, hd;
  int64_t D() const { return H * hd; }
  int64_t ld() const { return 3 * D(); }
};

struct AttentionResult {
  std::vector<float> out, att, dqkv;
};

// Forward and backward with the fp32 core (bf16 false) or the bf16 one; the backward of both
// starts from the fp32 forward's probabilities (its own error only). `parts` masks which of
// dq, dk, dv (bits 0, 1, 2) the backward computes; dqkv starts at `init`.
AttentionResult run_attention(const AttentionCase& c, bool bf16, int parts = 7, float init = 0.f,
                              bool accumulate = false) {
  const int64_t D = c.D(), ld = c.ld(), N = c.B * c.S;
  const auto qkv = to_float(randn(N * ld, 21)), dout = to_float(randn(N * D, 22));
  AttentionResult r;
  r.out.assign(N * D, 0.f);
  r.att.assign(c.B * c.H * c.S * c.S, -1.f);
  std::vector<float> att32(r.att.size()), out32(N * D);
  std::vector<float> scratch(attention_scratch_size(c.S, omp_get_max_threads()));
  std::vector<uint32_t> scratch16(attention_bf16_scratch_size(c.S, c.hd, omp_get_max_threads()));
  attention_forward(out32.data(), att32.data(), qkv.data(), qkv.data() + D, qkv.data() + 2 * D, c.B,
                    c.S, c.H, c.hd, ld);
  if (bf16)
    attention_forward_bf16(r.out.data(), r.att.data(), qkv.data(), qkv.data() + D,
                           qkv.data() + 2 * D, c.B, c.S, c.H, c.hd, ld, scratch16.data());
  else
    r.out = out32, r.att = att32;
  r.dqkv.assign(N * ld, init);
  float* dq = (parts & 1) != 0 ? r.dqkv.data() : nullptr;
  float* dk = (parts & 2) != 0 ? r.dqkv.data() + D : nullptr;
  float* dv = (parts & 4) != 0 ? r.dqkv.data() + 2 * D : nullptr;
  if (bf16)
    attention_backward_bf16(dq, dk, dv, scratch.data(), scratch16.data(), dout.data(), qkv.data(),
                            qkv.data() + D, qkv.data() + 2 * D, att32.data(), c.B, c.S, c.H, c.hd,
                            ld, accumulate);
  else
    attention_backward(dq, dk, dv, scratch.data(), dout.data(), qkv.data(), qkv.data() + D,
                       qkv.data() + 2 * D, att32.data(), c.B, c.S, c.H, c.hd, ld, accumulate);
  return r;
}

// One of q, k, v's gradients (0, 1, 2) out of dqkv.
std::vector<float> part(const AttentionCase& c, const std::vector<float>& dqkv, int which) {
  std::vector<float> g;
  for (int64_t n = 0; n < c.B * c.S; ++n)
    g.insert(g.end(), dqkv.begin() + n * c.ld() + which * c.D(),
             dqkv.begin() + n * c.ld() + (which + 1) * c.D());
  return g;
}

// Shapes: a few rows; S = 100 crosses the 48-row blocks with a partial one and hd = 80 two
// 64-column tiles; odd S and hd need the zero pair padding; 256 × 64 is the models' head.
constexpr AttentionCase kAttentionCases[] = {
    {2, 5, 2, 4}, {1, 100, 2, 80}, {1, 53, 1, 7}, {2, 256, 2, 64}};

TEST_F(KernelsBf16Test, AttentionForwardAndBackward) {
  for (const AttentionCase& c : kAttentionCases) {
    SCOPED_TRACE("S=" + std::to_string(c.S) + " hd=" + std::to_string(c.hd));
    const AttentionResult r32 = run_attention(c, false), r16 = run_attention(c, true);
    expect_bf16_close(r16.out, r32.out, "out");
    expect_bf16_close(r16.att, r32.att, "att");
    for (int64_t bh = 0; bh < c.B * c.H; ++bh)  // the causal zeros are written, not left
      for (int64_t t = 0; t < c.S; ++t)
        for (int64_t j = t + 1; j < c.S; ++j) ASSERT_EQ(r16.att[(bh * c.S + t) * c.S + j], 0.f);
    const char* names[] = {"dq", "dk", "dv"};
    for (int which = 0; which < 3; ++which)
      expect_bf16_close(part(c, r16.dqkv, which), part(c, r32.dqkv, which), names[which]);
  }
}

// One position per sequence: P = 1, so out is v rounded, dv is dout rounded and dq = dk = 0,
// exactly (the products' only terms are 1 × a bf16 value).
TEST_F(KernelsBf16Test, AttentionOfOnePositionIsTheRoundedValue) {
  const AttentionCase c{3, 1, 2, 6};
  const int64_t D = c.D(), N = c.B * c.S;
  // run_attention's inputs.
  const auto qkv = to_float(randn(N * c.ld(), 21)), dout = to_float(randn(N * D, 22));
  const AttentionResult r = run_attention(c, true);
  const auto rounded = [](float x) { return from_bf16(to_bf16(x)); };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < D; ++i) {
      EXPECT_EQ(r.out[n * D + i], rounded(qkv[n * c.ld() + 2 * D + i]));
      EXPECT_EQ(r.dqkv[n * c.ld() + i], 0.f);
      EXPECT_EQ(r.dqkv[n * c.ld() + D + i], 0.f);
      EXPECT_EQ(r.dqkv[n * c.ld() + 2 * D + i], rounded(dout[n * D + i]));
    }
}

TEST_F(KernelsBf16Test, AttentionBackwardPartsAndAccumulate) {
  const AttentionCase c{1, 100, 2, 80};
  const AttentionResult all = run_attention(c, true);
  for (int which = 0; which < 3; ++which) {  // one gradient alone: the same bits
    const AttentionResult one = run_attention(c, true, 1 << which);
    EXPECT_EQ(part(c, one.dqkv, which), part(c, all.dqkv, which)) << which;
  }
  const AttentionResult acc = run_attention(c, true, 7, 0.5f, /*accumulate=*/true);
  for (int which = 0; which < 3; ++which) {
    const auto got = part(c, acc.dqkv, which), want = part(c, all.dqkv, which);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i] + 0.5f, 1e-5f) << i;
  }
}

TEST_F(KernelsBf16Test, AttentionIsIndependentOfThreadCount) {
  const AttentionCase c{2, 100, 3, 64};
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const AttentionResult one = run_attention(c, true);
  omp_set_num_threads(2);
  const AttentionResult two = run_attention(c, true);
  omp_set_num_threads(threads);
  EXPECT_EQ(one.out, two.out);
  EXPECT_EQ(one.dqkv, two.dqkv);
}

}  // namespace
}  // namespace sy
