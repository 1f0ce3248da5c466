#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "core/gemm.h"
#include "core/vec_math.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

// Query rows per GEMM. Causality means row block [r0, r1) only needs keys [0, r1): blocking
// skips most of the upper triangle (at S = 256, 62.5% of the full S×S work) while keeping each
// GEMM large enough to run near peak.
constexpr int64_t kRowBlock = 64;

// p[0..t] ← softmax(p[0..t]) (max-subtracted), p[t+1..S) ← 0. A NaN anywhere in the row makes
// the whole row NaN (through the sum). fp32 16 values at a time in AVX-512 (MEDIUM's rows: 14 →
// 7 ms per step; the compiler's own vectorisation of the loops below used 8-wide vectors).
template <typename T>
void causal_softmax_row(T* p, int64_t t, int64_t S) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const int64_t n = t + 1;
    __m512 vm = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    detail::for_each_block16(n, [&](int64_t j, __mmask16 k) {
      vm = _mm512_mask_max_ps(vm, k, vm, _mm512_maskz_loadu_ps(k, p + j));
    });
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
    __m512 sum = _mm512_setzero_ps();
    detail::for_each_block16(n, [&](int64_t j, __mmask16 k) {
      const __m512 e =
          detail::fast_exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + j), m));
      _mm512_mask_storeu_ps(p + j, k, e);
      sum = _mm512_mask_add_ps(sum, k, sum, e);
    });
    const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
    detail::for_each_block16(n, [&](int64_t j, __mmask16 k) {
      _mm512_mask_storeu_ps(p + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), inv));
    });
    std::fill(p + n, p + S, 0.f);
    return;
  }
#endif
  T m = p[0];
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j <= t; ++j) m = p[j] > m ? p[j] : m;
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j <= t; ++j) {
    const T e = detail::fast_exp(p[j] - m);
    p[j] = e;
    sum += e;
  }
  const T inv = T(1) / sum;
#pragma omp simd
  for (int64_t j = 0; j <= t; ++j) p[j] *= inv;
  std::fill(p + t + 1, p + S, T(0));
}

// d[0..n) ← p ⊙ (d − Σ p ⊙ d) for one row of probabilities p and their gradient d (the softmax's
// backward), fp32 16 values at a time in AVX-512 like causal_softmax_row.
template <typename T>
void softmax_row_backward(const T* p, T* d, int64_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    __m512 acc = _mm512_setzero_ps();
    detail::for_each_block16(n, [&](int64_t j, __mmask16 k) {
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, p + j), _mm512_maskz_loadu_ps(k, d + j), acc);
    });
    const __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
    detail::for_each_block16(n, [&](int64_t j, __mmask16 k) {
      const __m512 pj = _mm512_maskz_loadu_ps(k, p + j);
      _mm512_mask_storeu_ps(d + j, k,
                            _mm512_mul_ps(pj, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, d + j), dot)));
    });
    return;
  }
#endif
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j) dot += p[j] * d[j];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) d[j] = p[j] * (d[j] - dot);
}

}  // namespace

int64_t attention_scratch_size(int64_t S, int max_threads) {
  return S * S * static_cast<int64_t>(max_threads);
}

template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int64_t B, int64_t S,
                       int64_t H, int64_t hd, int64_t ld) {
  SY_DCHECK(ld >= H * hd);
  const int64_t D = H * hd;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  // One (sequence, head) per task; the GEMMs inside run on the calling thread.
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H;
    const int64_t h = bh % H;
    const T* qb = q + b * S * ld + h * hd;  // [S, hd], row stride ld
    const T* kb = k + b * S * ld + h * hd;  // [S, hd], row stride ld
    const T* vb = v + b * S * ld + h * hd;  // [S, hd], row stride ld
    T* a = att + bh * S * S;                // [S, S]
    T* o = out + b * S * D + h * hd;        // [S, hd], row stride D
    for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
      const int64_t r1 = std::min(S, r0 + kRowBlock);
      gemm(false, true, r1 - r0, r1, hd, scale, qb + r0 * ld, ld, kb, ld, T(0), a + r0 * S, S);
    }
    for (int64_t t = 0; t < S; ++t) causal_softmax_row(a + t * S, t, S);
    for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
      const int64_t r1 = std::min(S, r0 + kRowBlock);
      gemm(false, false, r1 - r0, hd, r1, T(1), a + r0 * S, S, vb, ld, T(0), o + r0 * D, D);
    }
  }
}

// With P = att, dO = dout:  dV = Pᵀ·dO,  dP = dO·Vᵀ,  dZ = P ⊙ (dP − rowsum(P ⊙ dP)),
// dQ = scale·dZ·K,  dK = scale·dZᵀ·Q.  P and dZ are lower triangular, so each GEMM is cut into
// row blocks (dQ, dP) or column blocks (dV, dK) that skip the zero upper part.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, const T* q, const T* k,
                        const T* v, const T* att, int64_t B, int64_t S, int64_t H, int64_t hd,
                        int64_t ld, bool accumulate) {
  SY_DCHECK(ld >= H * hd);
  const int64_t D = H * hd;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  // Each block of dv, dq, dk below is one GEMM's output, written once: beta 0 overwrites.
  const T beta = accumulate ? T(1) : T(0);
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H;
    const int64_t h = bh % H;
    const int64_t off = b * S * ld + h * hd;
    const T* qb = q + off;                    // [S, hd], row stride ld
    const T* kb = k + off;                    // [S, hd], row stride ld
    const T* vb = v + off;                    // [S, hd], row stride ld
    const T* a = att + bh * S * S;            // [S, S]
    const T* go = dout + b * S * D + h * hd;  // [S, hd], row stride D
    if (dv != nullptr) {
      // dV[c0:c1] += P[c0:S, c0:c1]ᵀ · dO[c0:S]  (P[t, j] = 0 for t < j)
      for (int64_t c0 = 0; c0 < S; c0 += kRowBlock) {
        const int64_t c1 = std::min(S, c0 + kRowBlock);
        gemm(true, false, c1 - c0, hd, S - c0, T(1), a + c0 * S + c0, S, go + c0 * D, D, beta,
             dv + off + c0 * ld, ld);
      }
    }
    if (dq == nullptr && dk == nullptr) continue;
    T* dz = scratch + static_cast<int64_t>(omp_get_thread_num()) * S * S;  // [S, S]
    for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
      const int64_t r1 = std::min(S, r0 + kRowBlock);
      gemm(false, true, r1 - r0, r1, hd, T(1), go + r0 * D, D, vb, ld, T(0), dz + r0 * S, S);
      for (int64_t t = r0; t < r1; ++t) {
        const T* p = a + t * S;
        T* d = dz + t * S;
        softmax_row_backward(p, d, t + 1);
        // The blocked GEMMs below read this row up to the end of its diagonal block.
        std::fill(d + t + 1, d + r1, T(0));
      }
    }
    if (dq != nullptr) {
      for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
        const int64_t r1 = std::min(S, r0 + kRowBlock);
        gemm(false, false, r1 - r0, hd, r1, scale, dz + r0 * S, S, kb, ld, beta, dq + off + r0 * ld,
             ld);
      }
    }
    if (dk != nullptr) {
      for (int64_t c0 = 0; c0 < S; c0 += kRowBlock) {
        const int64_t c1 = std::min(S, c0 + kRowBlock);
        gemm(true, false, c1 - c0, hd, S - c0, scale, dz + c0 * S + c0, S, qb + c0 * ld, ld, beta,
             dk + off + c0 * ld, ld);
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*,
                                       int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_forward<double>(double*, double*, const double*, const double*,
                                        const double*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<float>(float*, float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int64_t, int64_t,
                                        int64_t, int64_t, int64_t, bool);
template void attention_backward<double>(double*, double*, double*, double*, const double*,
                                         const double*, const double*, const double*, const double*,
                                         int64_t, int64_t, int64_t, int64_t, int64_t, bool);

}  // namespace sy
