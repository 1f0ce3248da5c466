#include "core/gemm.h"

#include <cblas.h>
#include <dnnl.h>

#include "core/error.h"
#include "core/onednn_matmul.h"

namespace sy {

namespace {
GemmBackend g_backend = GemmBackend::kOneDnn;
}

void set_gemm_backend(GemmBackend b) { g_backend = b; }
GemmBackend gemm_backend() { return g_backend; }

GemmBackend auto_gemm_backend() {
  return __builtin_cpu_supports("avx512f") ? GemmBackend::kOneDnn : GemmBackend::kMixed;
}

GemmBackend parse_gemm_backend(const std::string& name) {
  if (name == "auto") return auto_gemm_backend();
  if (name == "onednn") return GemmBackend::kOneDnn;
  if (name == "openblas") return GemmBackend::kOpenBlas;
  if (name == "mixed") return GemmBackend::kMixed;
  fail(fmt::format("gemm backend must be one of \"onednn\", \"openblas\", \"mixed\", got \"{}\"",
                   name));
}

const char* gemm_backend_name(GemmBackend b) {
  switch (b) {
    case GemmBackend::kOneDnn:
      return "onednn";
    case GemmBackend::kOpenBlas:
      return "openblas";
    case GemmBackend::kMixed:
      return "mixed";
  }
  return "?";
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // Backends disagree on k == 0; define it: C = beta * C.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  const bool onednn = g_backend == GemmBackend::kOneDnn ||
                      (g_backend == GemmBackend::kMixed && !trans_a && trans_b);
  if (onednn) {
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda,
                                  b, ldb, beta, c, ldc);
    SY_CHECK(st == dnnl_success, "gemm: dnnl_sgemm failed with status {} (m={} n={} k={})",
             static_cast<int>(st), m, n, k);
  } else {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                beta, c, static_cast<int>(ldc));
  }
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0 ? 0.0 : beta * c[i * ldc + j];
    return;
  }
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

void gemm_fixed_shape(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc) {
  if (g_backend != GemmBackend::kOneDnn || m == 0 || n == 0 || k == 0) {
    gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  using dt = dnnl::memory::data_type;
  // An engine and a stream are cheap to make (microseconds, against the product's milliseconds);
  // the compiled kernel comes from oneDNN's primitive cache after the first call of a shape.
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  onednn::matmul(engine, stream, onednn::matrix(m, k, dt::f32, trans_a, lda), a,
                 onednn::matrix(k, n, dt::f32, trans_b, ldb), b,
                 onednn::matrix(m, n, dt::f32, false, ldc), c, alpha, beta);
  stream.wait();
}

void gemm_fixed_shape(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                      const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                      double* c, int64_t ldc) {
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace sy

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/buffer.h"

namespace sy {

double measure_sgemm_gflops(int64_t m, int64_t n, int64_t k, int reps) {
  Buffer<float> a(m * k), b(k * n), c(m * n);
  for (int64_t i = 0; i < m * k; ++i) a[i] = static_cast<float>((i % 17) - 8) * 0.01f;
  for (int64_t i = 0; i < k * n; ++i) b[i] = static_cast<float>((i % 13) - 6) * 0.01f;
  gemm(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n);  // warm-up
  std::vector<double> secs;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    gemm(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n);
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  return 2.0 * m * n * k / secs[secs.size() / 2] / 1e9;
}

double measure_sgemm_peak() {
  const GemmBackend chosen = g_backend;
  double best = 0;
  for (GemmBackend b : {GemmBackend::kOneDnn, GemmBackend::kOpenBlas}) {
    if (chosen != GemmBackend::kMixed && b != chosen) continue;
    g_backend = b;
    best = std::max({best, measure_sgemm_gflops(1024, 1024, 1024, 9),
                     measure_sgemm_gflops(2048, 2048, 2048, 5)});
  }
  g_backend = chosen;
  return best;
}

}  // namespace sy
