#include "core/gemm.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "core/rng.h"

namespace sy {
namespace {

// Naive row-major reference: C = alpha op(A) op(B) + beta C.
template <typename T>
void gemm_ref(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
              int ldb, T beta, T* c, int ldc) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        double av = ta ? a[p * lda + i] : a[i * lda + p];
        double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        s += av * bv;
      }
      c[i * ldc + j] = static_cast<T>(alpha * s + beta * c[i * ldc + j]);
    }
}

template <typename T>
void check_all_transposes(double tol) {
  Rng rng(7);
  const int m = 37, n = 23, k = 19;
  for (GemmBackend be : {GemmBackend::kOneDnn, GemmBackend::kOpenBlas, GemmBackend::kMixed}) {
    set_gemm_backend(be);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        // Padded leading dimensions, to exercise strides.
        int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
        std::vector<T> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc), c_ref;
        for (auto& v : a) v = static_cast<T>(rng.normal());
        for (auto& v : b) v = static_cast<T>(rng.normal());
        for (auto& v : c) v = static_cast<T>(rng.normal());
        c_ref = c;
        gemm(ta, tb, m, n, k, T(0.5), a.data(), lda, b.data(), ldb, T(1.5), c.data(), ldc);
        gemm_ref<T>(ta, tb, m, n, k, T(0.5), a.data(), lda, b.data(), ldb, T(1.5), c_ref.data(),
                    ldc);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j)
            ASSERT_NEAR(c[i * ldc + j], c_ref[i * ldc + j], tol)
                << gemm_backend_name(be) << " ta=" << ta << " tb=" << tb << " at " << i << "," << j;
      }
  }
  set_gemm_backend(GemmBackend::kOneDnn);
}

TEST(GemmTest, FloatMatchesNaiveForAllTransposesAndBackends) { check_all_transposes<float>(1e-4); }
TEST(GemmTest, DoubleMatchesNaiveForAllTransposes) { check_all_transposes<double>(1e-12); }

TEST(GemmTest, ZeroInnerDimensionScalesC) {
  std::vector<float> c = {1, 2, 3, 4};
  gemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.f, c.data(), 2);
  for (float v : c) EXPECT_EQ(v, 0.f);
}

TEST(GemmTest, ParseBackendRejectsUnknownName) {
  EXPECT_EQ(parse_gemm_backend("openblas"), GemmBackend::kOpenBlas);
  EXPECT_EQ(parse_gemm_backend("mixed"), GemmBackend::kMixed);
  EXPECT_THROW(parse_gemm_backend("mkl"), Error);
}

// "auto" is oneDNN exactly where the CPU has AVX-512.
TEST(GemmTest, AutoFollowsTheCpu) {
  EXPECT_EQ(parse_gemm_backend("auto"),
            __builtin_cpu_supports("avx512f") ? GemmBackend::kOneDnn : GemmBackend::kMixed);
  EXPECT_STREQ(gemm_backend_name(GemmBackend::kMixed), "mixed");
}

}  // namespace
}  // namespace sy
