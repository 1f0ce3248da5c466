// Internal to src/routing: top-K selection for 16 tokens at once, one token per float lane, over
// values in the transposed layout (one vector per expert, experts fed in ascending index order).
// Used by the top-K router and by Sinkhorn (on its double values rounded to float, with a check).
//
// The K best of each lane are kept sorted, descending, in K value registers and K index registers.
// An expert displaces only on a strictly greater value, so ties go to the lower index: per lane,
// the same experts in the same order as detail::select_top_k (routing/select.h), as long as no
// value is NaN (callers detect NaN lanes and select those tokens with select_top_k). An insertion
// is branch-free: K comparisons against the old values, then every slot takes its old value, its
// upper neighbour's (shifted down) or the new one; the K comparisons are independent of each
// other, so the latency of a step does not grow with K.
//
// Threading: values on the stack of the caller; any thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/vec_math.h"  // <immintrin.h> with GCC 12's false-positive warnings silenced

namespace sy::detail {

#if defined(__AVX512F__)
// 16 float lanes. REQUIRES: insert(w, i, filled) called with filled = min(i, K) for i = 0, 1, ...,
// or insert_full(w, i) once i ≥ K.
template <int K>
struct LaneTopK16 {
  __m512 v[K];
  __m512i ix[K];

  LaneTopK16() {
    for (int j = 0; j < K; ++j) {
      v[j] = _mm512_setzero_ps();
      ix[j] = _mm512_setzero_si512();
    }
  }

  inline void insert(__m512 w, int32_t i, int filled) {
    __mmask16 gt[K];
#pragma GCC unroll 16
    for (int j = 0; j < K; ++j)
      gt[j] =
          j >= filled ? static_cast<__mmask16>(0xFFFF) : _mm512_cmp_ps_mask(w, v[j], _CMP_GT_OQ);
    shift_in(w, _mm512_set1_epi32(i), gt);
  }

  // insert(w, i, K) with the list known to be full: no per-slot test of `filled`, which GCC
  // otherwise compiles into branches and mask moves.
  inline void insert_full(__m512 w, int32_t i) {
    __mmask16 gt[K];
#pragma GCC unroll 16
    for (int j = 0; j < K; ++j) gt[j] = _mm512_cmp_ps_mask(w, v[j], _CMP_GT_OQ);
    shift_in(w, _mm512_set1_epi32(i), gt);
  }

 private:
  // gt[j]: the lanes where w goes above slot j. There slot j takes slot j−1's old entry, or w
  // if w lands at j.
  inline void shift_in(__m512 w, __m512i wi, const __mmask16* gt) {
#pragma GCC unroll 16
    for (int j = K - 1; j > 0; --j) {
      v[j] = _mm512_mask_blend_ps(gt[j], v[j], _mm512_mask_blend_ps(gt[j - 1], w, v[j - 1]));
      ix[j] =
          _mm512_mask_blend_epi32(gt[j], ix[j], _mm512_mask_blend_epi32(gt[j - 1], wi, ix[j - 1]));
    }
    v[0] = _mm512_mask_blend_ps(gt[0], v[0], w);
    ix[0] = _mm512_mask_blend_epi32(gt[0], ix[0], wi);
  }
};

// The K per-slot vectors of 16 tokens (rows[k], lane l = token l's slot k) written token-major:
// out[l·K + k] = rows[k][l] for the first cnt tokens, nothing past them. A register transposition
// (the rows padded to 4 or 8, unpacks, 128-bit shuffles, and a compress for K ∉ {1, 4, 8})
// instead of 16·K scalar loads from a just-stored vector and 16·K scalar stores.
template <int K>
inline void store_token_major(const __m512i* rows, int64_t cnt, int32_t* out) {
  static_assert(K >= 1 && K <= 8);
  const auto valid = [&](int64_t first, int64_t per) {  // tokens of an output vector held
    return std::max<int64_t>(0, std::min<int64_t>(per, cnt - first));
  };
  const auto store = [&](__m512i v, int64_t first, int64_t per) {
    // per tokens of 16/per slots each, the first K of each kept: (per·K) ints at out + first·K.
    const int64_t n = valid(first, per);
    if (n == 0) return;
    if (16 / per != K) {
      const uint32_t one = (1u << K) - 1;
      uint32_t keep = 0;
      for (int64_t j = 0; j < per; ++j) keep |= one << (j * (16 / per));
      v = _mm512_maskz_compress_epi32(static_cast<__mmask16>(keep), v);
    }
    _mm512_mask_storeu_epi32(out + first * K, static_cast<__mmask16>((1u << (n * K)) - 1), v);
  };
  const __m512i zero = _mm512_setzero_si512();
  const auto row = [&](int k) { return k < K ? rows[k] : zero; };
  if constexpr (K == 1) {
    store(rows[0], 0, 16);
    return;
  } else {
    // Rows 0–3 → x[m]: 128-bit chunk q holds token 4q + m's slots 0–3 (and y[m] slots 4–7).
    __m512i x[4], y[4];
    const auto four = [&](int k0, __m512i* dst) {
      const __m512i a = _mm512_unpacklo_epi32(row(k0), row(k0 + 1));
      const __m512i b = _mm512_unpackhi_epi32(row(k0), row(k0 + 1));
      const __m512i c = _mm512_unpacklo_epi32(row(k0 + 2), row(k0 + 3));
      const __m512i d = _mm512_unpackhi_epi32(row(k0 + 2), row(k0 + 3));
      dst[0] = _mm512_unpacklo_epi64(a, c);
      dst[1] = _mm512_unpackhi_epi64(a, c);
      dst[2] = _mm512_unpacklo_epi64(b, d);
      dst[3] = _mm512_unpackhi_epi64(b, d);
    };
    four(0, x);
    if constexpr (K <= 4) {
      // 4×4 transposition of the chunks: output q = tokens 4q..4q+3.
      const __m512i y0 = _mm512_shuffle_i32x4(x[0], x[1], 0x44);
      const __m512i y1 = _mm512_shuffle_i32x4(x[0], x[1], 0xEE);
      const __m512i y2 = _mm512_shuffle_i32x4(x[2], x[3], 0x44);
      const __m512i y3 = _mm512_shuffle_i32x4(x[2], x[3], 0xEE);
      store(_mm512_shuffle_i32x4(y0, y2, 0x88), 0, 4);
      store(_mm512_shuffle_i32x4(y0, y2, 0xDD), 4, 4);
      store(_mm512_shuffle_i32x4(y1, y3, 0x88), 8, 4);
      store(_mm512_shuffle_i32x4(y1, y3, 0xDD), 12, 4);
    } else {
      four(4, y);
      // a[m] = [token m, token 4 + m] and b[m] = [token 8 + m, token 12 + m], 8 slots each.
      const __m512i lo = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
      const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
      __m512i a[4], b[4];
      for (int m = 0; m < 4; ++m) {
        a[m] = _mm512_permutex2var_epi64(x[m], lo, y[m]);
        b[m] = _mm512_permutex2var_epi64(x[m], hi, y[m]);
      }
      // Output p = tokens 2p, 2p + 1.
      for (int m = 0; m < 4; m += 2) {
        store(_mm512_shuffle_i32x4(a[m], a[m + 1], 0x44), m, 2);
        store(_mm512_shuffle_i32x4(a[m], a[m + 1], 0xEE), 4 + m, 2);
        store(_mm512_shuffle_i32x4(b[m], b[m + 1], 0x44), 8 + m, 2);
        store(_mm512_shuffle_i32x4(b[m], b[m + 1], 0xEE), 12 + m, 2);
      }
    }
  }
}

#endif

// The lane kernels are templates on K (their per-lane lists live in registers): calls
// f(std::integral_constant<int, K>{}) for 1 ≤ K ≤ kLaneMaxK and returns true, else false.
constexpr int kLaneMaxK = 8;

template <int KK = 1, typename F>
inline bool with_lane_k(int64_t K, F&& f) {
  if constexpr (KK > kLaneMaxK) {
    return false;
  } else {
    if (K == KK) {
      f(std::integral_constant<int, KK>{});
      return true;
    }
    return with_lane_k<KK + 1>(K, std::forward<F>(f));
  }
}

}  // namespace sy::detail
