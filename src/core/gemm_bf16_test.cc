#include "core/gemm_bf16.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/rng.h"

namespace sy {
namespace {

// bf16 keeps 8 significant bits: rounding to nearest moves a value by at most u = 2⁻⁸ of itself
// (half a unit in the 8th bit, relative to the leading bit's value 1 ≤ m < 2: 2⁻⁸ · m / m ≤ 2⁻⁸).
constexpr double kU = 1.0 / 256;

float round_trip(float x) { return from_bf16(to_bf16(x)); }

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.f), 0x3f80);
  EXPECT_EQ(to_bf16(-2.f), 0xc000);
  EXPECT_EQ(to_bf16(0.f), 0x0000);
  // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even neighbour, 1.
  EXPECT_EQ(round_trip(1.f + 1.f / 256), 1.f);
  // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even): up.
  EXPECT_EQ(round_trip(1.f + 3.f / 256), 1.f + 1.f / 64);
  // Just above the halfway point rounds up.
  EXPECT_EQ(round_trip(1.f + 1.f / 256 + 1.f / 4096), 1.f + 1.f / 128);
  EXPECT_TRUE(std::isinf(round_trip(std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(round_trip(std::numeric_limits<float>::quiet_NaN())));
  // The largest float rounds past the largest bf16: to infinity, as the hardware does.
  EXPECT_TRUE(std::isinf(round_trip(std::numeric_limits<float>::max())));
  Rng rng(3);
  for (int i = 0; i < 10000; ++i) {
    const float x = static_cast<float>(rng.normal() * 100);
    EXPECT_LE(std::abs(round_trip(x) - x), kU * std::abs(x)) << x;
  }
}

TEST(Bf16, ArrayConversionMatchesScalar) {
  Rng rng(4);
  std::vector<float> x(200003);
  for (auto& v : x) v = static_cast<float>(rng.normal());
  std::vector<uint16_t> h(x.size());
  to_bf16(x.data(), h.data(), static_cast<int64_t>(x.size()));
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(h[i], to_bf16(x[i])) << i;
}

TEST(Bf16, UnsupportedCpuIsAnErrorNamingTheInstructions) {
  if (cpu_has_bf16()) {
    EXPECT_TRUE(bf16_unsupported_reason().empty());
    GTEST_SKIP() << "this CPU has AVX512-BF16; the error path is for CPUs without it";
  }
  float w = 0;
  try {
    Bf16Gemm g(&w, 1);
    FAIL() << "constructed without AVX512-BF16";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("AVX512-BF16"), std::string::npos) << e.what();
  }
}

class Bf16GemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_bf16()) GTEST_SKIP() << bf16_unsupported_reason();
  }
};

// C = alpha·op(A)·op(B) + beta·C in double, from operands rounded to bf16 first (`round`) or not.
void reference(bool ta, bool tb, int m, int n, int k, double alpha, const float* a, int lda,
               const float* b, int ldb, double beta, std::vector<double>& c, int ldc, bool round,
               std::vector<double>* abs_sum) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0, sa = 0;
      for (int p = 0; p < k; ++p) {
        float av = ta ? a[p * lda + i] : a[i * lda + p];
        float bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        if (round) av = round_trip(av), bv = round_trip(bv);
        s += static_cast<double>(av) * bv;
        sa += std::abs(static_cast<double>(av) * bv);
      }
      c[i * ldc + j] = alpha * s + beta * c[i * ldc + j];
      if (abs_sum) (*abs_sum)[i * ldc + j] = std::abs(alpha) * sa;
    }
}

// Every transpose pair, padded strides, alpha and beta; B inside the weight block (read from the
// copy) and outside it (rounded per call); m a multiple of 32 (fixed-shape pieces) and not (without
// AMX: one GEMM for any m).
TEST_F(Bf16GemmTest, MatchesTheRoundedProductAndTheFp32OneWithinBf16Error) {
  Rng rng(7);
  const int n = 29, k = 131;
  for (const int m : {37, 64})
    for (int in_block = 0; in_block < 2; ++in_block)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
          std::vector<float> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc);
          for (auto& v : a) v = static_cast<float>(rng.normal());
          for (auto& v : b) v = static_cast<float>(rng.normal());
          for (auto& v : c) v = static_cast<float>(rng.normal());
          std::vector<float> other(16);
          Bf16Gemm g(in_block ? b.data() : other.data(),
                     in_block ? static_cast<int64_t>(b.size()) : 16);
          g.refresh();
          const float alpha = 0.5f, beta = 1.f;
          std::vector<double> exact(c.begin(), c.end()), rounded(c.begin(), c.end()), mag(c.size());
          reference(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, exact, ldc, false,
                    &mag);
          reference(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, rounded, ldc, true,
                    nullptr);
          g.gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
          for (int i = 0; i < m; ++i)
            for (int j = 0; j < n; ++j) {
              const int at = i * ldc + j;
              // Against the product of the rounded operands only fp32 accumulation differs:
              // ≤ k·2⁻²⁴·Σ|a·b| (a generous bound on any summation order), plus C's own rounding.
              const double acc = k * std::ldexp(1.0, -24) * mag[at] + 1e-6 * std::abs(rounded[at]);
              EXPECT_NEAR(c[at], rounded[at], acc)
                  << "m " << m << ": " << ta << tb << in_block << " " << i << "," << j;
              // Against the exact product: each operand moves ≤ u, each term ≤ (2u + u²)|a·b|.
              EXPECT_NEAR(c[at], exact[at], (2 * kU + kU * kU) * mag[at] + acc);
            }
        }
}

TEST_F(Bf16GemmTest, WeightsAreReadFromTheCopyUntilRefreshed) {
  const int m = 4, n = 3, k = 8;
  std::vector<float> w(n * k, 1.f), x(m * k, 1.f), y(m * n);
  Bf16Gemm g(w.data(), static_cast<int64_t>(w.size()));
  g.refresh();
  g.gemm(false, true, m, n, k, 1.f, x.data(), k, w.data(), k, 0.f, y.data(), n);
  EXPECT_EQ(y[0], 8.f);
  for (auto& v : w) v = 2.f;  // the block changed; the copy has not
  g.gemm(false, true, m, n, k, 1.f, x.data(), k, w.data(), k, 0.f, y.data(), n);
  EXPECT_EQ(y[0], 8.f);
  g.refresh();
  g.gemm(false, true, m, n, k, 1.f, x.data(), k, w.data(), k, 0.f, y.data(), n);
  EXPECT_EQ(y[0], 16.f);
}

// The same call gives the same bits whatever ran before it, and on either thread of a parallel
// region (what bit-exact resume and side-by-side experts rely on).
TEST_F(Bf16GemmTest, SameCallSameBits) {
  Rng rng(9);
  const int m = 190, n = 256, k = 512;
  std::vector<float> w(n * k), x(m * k);
  for (auto& v : w) v = static_cast<float>(rng.normal());
  for (auto& v : x) v = static_cast<float>(rng.normal());
  Bf16Gemm g(w.data(), static_cast<int64_t>(w.size()));
  g.refresh();
  std::vector<float> first(m * n), again(m * n), other(97 * n);
  g.gemm(false, true, m, n, k, 1.f, x.data(), k, w.data(), k, 0.f, first.data(), n);
  g.gemm(false, true, 97, n, k, 1.f, x.data(), k, w.data(), k, 0.f, other.data(), n);
  g.gemm(false, true, m, n, k, 1.f, x.data(), k, w.data(), k, 0.f, again.data(), n);
  EXPECT_EQ(first, again);
  std::vector<std::vector<float>> per_thread(2, std::vector<float>(m * n));
#pragma omp parallel for num_threads(2)
  for (int t = 0; t < 2; ++t)
    g.gemm(false, true, m, n, k, 1.f, x.data(), k, w.data(), k, 0.f, per_thread[t].data(), n);
  EXPECT_EQ(per_thread[0], per_thread[1]);
  // Activations rounded per call (not in the block) take the same path.
  std::vector<float> w2(w), via_scratch(m * n);
  g.gemm(false, true, m, n, k, 1.f, x.data(), k, w2.data(), k, 0.f, via_scratch.data(), n);
  EXPECT_EQ(via_scratch, first);
}

// A linear layer's backward rounds its output gradient once for both GEMMs: dX = dY·W (dY not
// transposed, W in the block) and dW += dYᵀ·X (dY transposed, k padded): the same bits as the
// GEMMs that round dY themselves, for row counts on and off the multiples of 32.
TEST_F(Bf16GemmTest, RoundedOnceGivesTheSameBitsAsRoundingPerCall) {
  Rng rng(11);
  const int ic = 64, oc = 96;
  std::vector<float> w(oc * ic);
  for (auto& v : w) v = static_cast<float>(rng.normal());
  Bf16Gemm g(w.data(), static_cast<int64_t>(w.size()));
  g.refresh();
  for (const int rows : {1, 31, 32, 190, 300}) {
    std::vector<float> dy(rows * oc), x(rows * ic);
    for (auto& v : dy) v = static_cast<float>(rng.normal());
    for (auto& v : x) v = static_cast<float>(rng.normal());
    std::vector<float> dx1(rows * ic, 0.5f), dx2(dx1), dw1(oc * ic, 0.25f), dw2(dw1);
    g.gemm(false, false, rows, ic, oc, 1.f, dy.data(), oc, w.data(), ic, 1.f, dx1.data(), ic);
    g.gemm(true, false, oc, ic, rows, 1.f, dy.data(), oc, x.data(), ic, 1.f, dw1.data(), ic);
    const Bf16Gemm::Rounded d = g.round_once(dy.data(), rows, oc, oc);
    g.gemm(false, false, rows, ic, oc, 1.f, d, w.data(), ic, 1.f, dx2.data(), ic);
    g.gemm(true, false, oc, ic, rows, 1.f, d, x.data(), ic, 1.f, dw2.data(), ic);
    EXPECT_EQ(dx1, dx2) << rows;
    EXPECT_EQ(dw1, dw2) << rows;
  }
  // A shape that does not match the rounded operand is refused.
  std::vector<float> dy(8 * oc), dx(8 * ic);
  const Bf16Gemm::Rounded d = g.round_once(dy.data(), 8, oc, oc);
  EXPECT_THROW(g.gemm(false, false, 9, ic, oc, 1.f, d, w.data(), ic, 0.f, dx.data(), ic), Error);
}

TEST_F(Bf16GemmTest, EmptyDimensionsFollowGemm) {
  std::vector<float> w(4, 1.f), c(4, 3.f);
  Bf16Gemm g(w.data(), 4);
  g.gemm(false, false, 2, 2, 0, 1.f, w.data(), 1, w.data(), 2, 0.5f, c.data(), 2);
  EXPECT_EQ(c, std::vector<float>(4, 1.5f));
  g.gemm(false, false, 0, 2, 2, 1.f, w.data(), 2, w.data(), 2, 0.f, c.data(), 2);
  EXPECT_EQ(c, std::vector<float>(4, 1.5f));
}

}  // namespace
}  // namespace sy
