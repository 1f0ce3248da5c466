// The one matrix-multiply entry point. Every GEMM in switchyard goes through here.
//
// Row-major: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, op(X) = X or Xᵀ.
// lda/ldb/ldc are row strides of A, B, C as stored. fp32 runs on the backend chosen at start-up
// (oneDNN's sgemm by default), or "mixed": oneDNN for A·Bᵀ (the forward's projections) and
// OpenBLAS for A·B and Aᵀ·B (the backward's), the faster pairing where oneDNN 2.6 has no AVX-512
// kernels (docs/benchmarks.md, bench/gemm_bench.cc); fp64 (tests only) runs on OpenBLAS's dgemm.
// Threading: called from outside a parallel region, the backend uses all OpenMP threads; called
// from inside one (nested parallelism off), it runs on the calling thread only. Thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace sy {

enum class GemmBackend { kOneDnn, kOpenBlas, kMixed };

// Selects the fp32 backend for the whole process. Not thread-safe: call at start-up.
void set_gemm_backend(GemmBackend b);
GemmBackend gemm_backend();
// "onednn" | "openblas" | "mixed", or "auto": oneDNN where the CPU has AVX-512 (its AVX-512
// kernels are the fastest there), else mixed — the measured choices (docs/benchmarks.md).
GemmBackend parse_gemm_backend(const std::string& name);
GemmBackend auto_gemm_backend();
const char* gemm_backend_name(GemmBackend b);

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// gemm() for a product whose shape repeats step after step (the LM head's): under the oneDNN
// backend (fp32) it runs through oneDNN's fp32 matmul primitive instead of sgemm, which is
// faster for the LM head's weight gradient Aᵀ·B (1.3–1.5× at 8192 × D × 2048;
// docs/benchmarks.md); under the others, and for fp64, it is gemm(). oneDNN compiles a kernel
// per shape (strides and beta included; milliseconds) and keeps it in its primitive cache, so a
// shape that changes every call (an expert's rows) belongs in gemm(). The same shape gives the
// same bits every call. Threading: as gemm().
void gemm_fixed_shape(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc);
void gemm_fixed_shape(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                      const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                      double* c, int64_t ldc);

}  // namespace sy

namespace sy {
// Measures the fp32 GEMM rate (GFLOP/s) of the current backend on this machine with the current
// OpenMP thread count: the median of `reps` multiplications of [m,k]·[k,n] after a warm-up.
// The MFU denominator. Allocates its operands (call it outside the step loop).
double measure_sgemm_gflops(int64_t m = 1024, int64_t n = 1024, int64_t k = 1024, int reps = 7);
// The MFU denominator everywhere (trainer and benchmarks): the best of 1024³ and 2048³ GEMMs on
// the current backend (mixed: on both) and thread count (≈ 0.4 s; 0.8 s mixed).
double measure_sgemm_peak();
}  // namespace sy
