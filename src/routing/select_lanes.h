// Internal to src/routing: top-K selection for several tokens at once, one token per vector lane
// (16 floats or 8 doubles), over values in the transposed layout (one vector per expert, experts
// fed in ascending index order). Used by the top-K router (float) and Sinkhorn (double).
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

#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/vec_math.h"  // <immintrin.h> with GCC 12's false-positive warnings silenced

namespace sy::detail {

#if defined(__AVX512F__)
// 16 float lanes. REQUIRES: insert(w, i, filled) called with filled = min(i, K) for i = 0, 1, ...
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

  inline void insert(__m512 w, int32_t i, int filled) { insert(w, _mm512_set1_epi32(i), filled); }

  // An entry with a per-lane index: for merging another LaneTopK16 that holds only higher
  // indices (insert its K entries in slot order: the result is that of one pass over both).
  inline void insert(__m512 w, __m512i wi, int filled) {
    __mmask16 gt[K];
#pragma GCC unroll 16
    for (int j = 0; j < K; ++j)
      gt[j] =
          j >= filled ? static_cast<__mmask16>(0xFFFF) : _mm512_cmp_ps_mask(w, v[j], _CMP_GT_OQ);
#pragma GCC unroll 16
    for (int j = K - 1; j > 0; --j) {
      // Lanes where w goes above slot j: slot j takes slot j−1's old entry, or w if w lands here.
      v[j] = _mm512_mask_blend_ps(gt[j], v[j], _mm512_mask_blend_ps(gt[j - 1], w, v[j - 1]));
      ix[j] =
          _mm512_mask_blend_epi32(gt[j], ix[j], _mm512_mask_blend_epi32(gt[j - 1], wi, ix[j - 1]));
    }
    v[0] = _mm512_mask_blend_ps(gt[0], v[0], w);
    ix[0] = _mm512_mask_blend_epi32(gt[0], ix[0], wi);
  }
};

// 8 double lanes, the same network.
template <int K>
struct LaneTopK8 {
  __m512d v[K];
  __m256i ix[K];

  LaneTopK8() {
    for (int j = 0; j < K; ++j) {
      v[j] = _mm512_setzero_pd();
      ix[j] = _mm256_setzero_si256();
    }
  }

  inline void insert(__m512d w, int32_t i, int filled) {
    const __m256i wi = _mm256_set1_epi32(i);
    __mmask8 gt[K];
#pragma GCC unroll 16
    for (int j = 0; j < K; ++j)
      gt[j] = j >= filled ? static_cast<__mmask8>(0xFF) : _mm512_cmp_pd_mask(w, v[j], _CMP_GT_OQ);
#pragma GCC unroll 16
    for (int j = K - 1; j > 0; --j) {
      v[j] = _mm512_mask_blend_pd(gt[j], v[j], _mm512_mask_blend_pd(gt[j - 1], w, v[j - 1]));
      ix[j] =
          _mm256_mask_blend_epi32(gt[j], ix[j], _mm256_mask_blend_epi32(gt[j - 1], wi, ix[j - 1]));
    }
    v[0] = _mm512_mask_blend_pd(gt[0], v[0], w);
    ix[0] = _mm256_mask_blend_epi32(gt[0], ix[0], wi);
  }
};
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
