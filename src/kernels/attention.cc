#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/gemm.h"
#include "kernels/attention_internal.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

// Query rows per GEMM. Causality means row block [r0, r1) only needs keys [0, r1): blocking
// skips most of the upper triangle (at S = 256, 62.5% of the full S×S work) while keeping each
// GEMM large enough to run near peak.
constexpr int64_t kRowBlock = 64;

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
    for (int64_t t = 0; t < S; ++t) detail::causal_softmax_row(a + t * S, t, S);
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
        detail::softmax_row_backward(p, d, t + 1);
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
