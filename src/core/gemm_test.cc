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

// `entry` (gemm or gemm_fixed_shape) against the reference for every transpose pairing and
// backend, with alpha 0.5 and beta 1.5 and 0; a second call of the same shape gives the same bits.
template <typename T, typename Gemm>
void check_all_transposes(double tol, Gemm entry) {
  Rng rng(7);
  const int m = 37, n = 23, k = 19;
  for (GemmBackend be : {GemmBackend::kOneDnn, GemmBackend::kOpenBlas, GemmBackend::kMixed}) {
    set_gemm_backend(be);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (T beta : {T(1.5), T(0)}) {
          // Padded leading dimensions, to exercise strides.
          int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
          std::vector<T> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc), c_ref;
          for (auto& v : a) v = static_cast<T>(rng.normal());
          for (auto& v : b) v = static_cast<T>(rng.normal());
          for (auto& v : c) v = static_cast<T>(rng.normal());
          c_ref = c;
          std::vector<T> c_again = c;
          entry(ta, tb, m, n, k, T(0.5), a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
          entry(ta, tb, m, n, k, T(0.5), a.data(), lda, b.data(), ldb, beta, c_again.data(), ldc);
          gemm_ref<T>(ta, tb, m, n, k, T(0.5), a.data(), lda, b.data(), ldb, beta, c_ref.data(),
                      ldc);
          ASSERT_EQ(c, c_again) << gemm_backend_name(be) << " ta=" << ta << " tb=" << tb;
          for (int i = 0; i < m; ++i)
            for (int j = 0; j < n; ++j)
              ASSERT_NEAR(c[i * ldc + j], c_ref[i * ldc + j], tol)
                  << gemm_backend_name(be) << " ta=" << ta << " tb=" << tb << " beta=" << beta
                  << " at " << i << "," << j;
        }
  }
  set_gemm_backend(GemmBackend::kOneDnn);
}

template <typename T>
void gemm_entry(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
template <typename T>
void fixed_shape_entry(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                       int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  gemm_fixed_shape(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

TEST(GemmTest, FloatMatchesNaiveForAllTransposesAndBackends) {
  check_all_transposes<float>(1e-4, gemm_entry<float>);
}
TEST(GemmTest, DoubleMatchesNaiveForAllTransposes) {
  check_all_transposes<double>(1e-12, gemm_entry<double>);
}
// The matmul-primitive path (oneDNN backend) and its fallbacks (the others, fp64).
TEST(GemmTest, FixedShapeMatchesNaiveForAllTransposesAndBackends) {
  check_all_transposes<float>(1e-4, fixed_shape_entry<float>);
  check_all_transposes<double>(1e-12, fixed_shape_entry<double>);
}

TEST(GemmTest, ZeroInnerDimensionScalesC) {
  std::vector<float> c = {1, 2, 3, 4};
  gemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.f, c.data(), 2);
  for (float v : c) EXPECT_EQ(v, 0.f);
  std::vector<float> d = {1, 2, 3, 4};
  gemm_fixed_shape(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 2.f, d.data(), 2);
  EXPECT_EQ(d, (std::vector<float>{2, 4, 6, 8}));
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
