// Internal to src/routing: the AVX-512 path of BIP's dual coordinate passes for float,
// bip_passes_avx512 (and use_avx512_passes, whether it applies), on the transposed scores: the row
// pass as an insertion network over 16 tokens, the column pass by compaction and radix selection.
// The scalar references are the passes of bip_iterate and bip_iterate_transposed
// (rth_largest_of_row, rth_largest); this path gives the same p and q as values (zeros as +0), for
// any thread count.
//
// Included once, by bip.cc inside `#if defined(__AVX512F__)`, after the scratch layout it shares
// (per_column, per_thread_scratch): its kernels live in that file's anonymous namespace.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <utility>

#include "core/vec_math.h"
#include "routing/bip.h"
#include "routing/kth_select.h"
#include "routing/transposed.h"

namespace sy {
// NOLINTBEGIN(google-build-namespaces, misc-definitions-in-headers): bip.cc's own definitions
// (see above), left as they were there: made `inline`, they might be inlined differently.
namespace {

// Row pass on the transposed scores sT[E,ld] for the 16 tokens t0.. (lanes: those < N): each lane
// keeps its R largest values of s[t,i] − q[i] in registers b[0] ≥ … ≥ b[R−1] (a min/max insertion
// network, exact for a multiset), and p[t] = b[R−1], the R-th largest. A zero p is stored as +0.
template <int R>
void row_pass_block(const float* sT, int64_t ld, int64_t m, const float* q, int64_t t0,
                    __mmask16 lanes, float* p) {
  __m512 b[R];
  for (int j = 0; j < R; ++j) b[j] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < m; ++i) {
    __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, sT + i * ld + t0), _mm512_set1_ps(q[i]));
    for (int j = 0; j < R; ++j) {
      const __m512 hi = _mm512_max_ps(b[j], x);
      x = _mm512_min_ps(b[j], x);
      b[j] = hi;
    }
  }
  _mm512_mask_storeu_ps(p + t0, lanes, _mm512_add_ps(b[R - 1], _mm512_setzero_ps()));
}

using RowPassBlock = void (*)(const float*, int64_t, int64_t, const float*, int64_t, __mmask16,
                              float*);
constexpr int kMaxNetworkRank = 16;  // R = K + 1 ≤ 16 (K ≤ 15) in registers; beyond, scalar

template <int... Rs>
RowPassBlock row_pass_kernel(int r, std::integer_sequence<int, Rs...> /*unused*/) {
  RowPassBlock k = nullptr;
  ((r == Rs + 1 ? (k = &row_pass_block<Rs + 1>, 0) : 0), ...);
  return k;
}

// Column pass input: w[0..a) = the positive values of sT[i,·] − p (in any order); returns a.
// Two vectors per step, so that the running count is one add per 32 tokens.
inline int64_t positive_margins(const float* col, const float* p, int64_t n, float* w) {
  int64_t t = 0, a = 0;
  const __m512 zero = _mm512_setzero_ps();
  for (; t + 32 <= n; t += 32) {
    const __m512 v0 = _mm512_sub_ps(_mm512_loadu_ps(col + t), _mm512_loadu_ps(p + t));
    const __m512 v1 = _mm512_sub_ps(_mm512_loadu_ps(col + t + 16), _mm512_loadu_ps(p + t + 16));
    const __mmask16 m0 = _mm512_cmp_ps_mask(v0, zero, _CMP_GT_OQ);
    const __mmask16 m1 = _mm512_cmp_ps_mask(v1, zero, _CMP_GT_OQ);
    const int c0 = std::popcount(static_cast<uint32_t>(m0));
    const int c1 = std::popcount(static_cast<uint32_t>(m1));
    // w has 16 elements of slack for the full-width stores.
    _mm512_storeu_ps(w + a, _mm512_maskz_compress_ps(m0, v0));
    _mm512_storeu_ps(w + a + c0, _mm512_maskz_compress_ps(m1, v1));
    a += c0 + c1;
  }
  for (; t < n; ++t) {
    const float v = col[t] - p[t];
    if (v > 0.f) w[a++] = v;
  }
  return a;
}

// The passes for float on AVX-512, on the transposed scores sT[E,ld] (if s is non-null, s is first
// transposed into sT, which is then scratch), so that both passes stream contiguous memory. Row
// pass: the insertion network over 16 tokens at a time. Column pass: q[i] = max(0, (c+1)-th
// largest of sT[i,·] − p); only positive values can be that maximum, so they are compacted first
// (about K·N/E of them once q is warm) and, if there are more than c, their c-th (0-based) largest
// is found by radix selection (kth_select.h). The same p and q as the scalar passes (as values;
// zeros as +0), for any number of threads. work: per-thread scratch, per_thread_scratch(N, E) each.
// REQUIRES: min(K, E − 1) + 1 ≤ kMaxNetworkRank.
void bip_passes_avx512(const BipShape& sh, const float* s, const float* sT, float* sT_scratch,
                       int iterations, float* q, float* p, float* work, int threads, double* dual) {
  const int64_t n = sh.n, m = sh.m, c = sh.capacity, ld = bip_transposed_ld(n);
  const int rank = static_cast<int>(std::min(sh.k, m - 1)) + 1;
  const RowPassBlock row_block =
      row_pass_kernel(rank, std::make_integer_sequence<int, kMaxNetworkRank>{});
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel num_threads(threads)
  {
    float* w = work + omp_get_thread_num() * per_thread_scratch(n, m);
    alignas(64) uint32_t hist[detail::kRadixBins];
    if (s != nullptr) {
#pragma omp for schedule(static)
      for (int64_t b = 0; b < blocks; ++b)
        detail::transpose_rows(s, ld, m, b * 16, std::min(n, b * 16 + 16), sT_scratch);
    }
    for (int it = 0; it < iterations; ++it) {
#pragma omp for schedule(static)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t t0 = b * 16;
        const auto lanes = static_cast<__mmask16>(n - t0 >= 16 ? 0xFFFF : (1u << (n - t0)) - 1);
        row_block(sT, ld, m, q, t0, lanes, p);
      }
#pragma omp for schedule(static)
      for (int64_t i = 0; i < m; ++i) {
        const int64_t a = positive_margins(sT + i * ld, p, n, w);
        q[i] = a <= c ? 0.f : detail::rth_largest_radix(w, a, c, w + per_column(n, m), hist).value;
      }
      if (dual != nullptr) {
#pragma omp single
        dual[it] = bip_dual_objective(sh, s, p, q);
      }
    }
  }
}

bool use_avx512_passes(const BipShape& sh) {
  return std::min(sh.k, sh.m - 1) + 1 <= kMaxNetworkRank;
}

}  // namespace
// NOLINTEND(google-build-namespaces, misc-definitions-in-headers)
}  // namespace sy
