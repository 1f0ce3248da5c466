// Internal to src/routing: the AVX-512 code of routing/select_lanes.h, the selection of the K
// largest of 16 float lanes by packed keys (LaneTopKeys16) and the token-major store of the
// selected slots (store_token_major). The reference is detail::select_top_k (routing/select.h),
// whose experts and order the exact() lanes reproduce; callers re-select the other lanes with it.
//
// Included by routing/select_lanes.h inside `#if defined(__AVX512F__)`: include that header.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/vec_math.h"  // <immintrin.h> with GCC 12's false-positive warnings silenced

namespace sy::detail {

// The K largest of 16 float lanes by packed keys: each value's order-preserving int32 image
// (the bits, with the non-sign bits flipped for negatives) with its low `bits` bits replaced by
// 2^bits − 1 − i, i the expert. The keys are distinct, their order is the values' order with the
// lowest `bits` bits of the image ignored and ties to the lower index, and an insertion is
// K integer max/min pairs (2K operations; a network of float comparisons that carries the
// indices in separate registers takes K comparisons and 4K blends: 10–20% slower routing at
// E = 64). Where the K keys of a lane, truncated to their high bits, are strictly decreasing
// (exact() lanes), the lane's K are exactly the K largest values in descending order: truncation
// is monotone, so every value left out truncates to at most the K-th's, below each kept one.
// Callers keep one slot more than they need so that the boundary is checked too, and select
// the other lanes (ties, values within 2^bits units in the last place of each other, NaN) with
// select_top_k. ±0 compare equal as floats but not as keys: values must not be −0 (x + 0.f makes
// −0 into +0 and changes nothing else).
template <int K>
class LaneTopKeys16 {
 public:
  // n_values: the number of experts fed, 1 ≤ n_values ≤ 2^16.
  explicit LaneTopKeys16(int64_t n_values)
      : bits_(n_values <= 1 ? 1 : 64 - __builtin_clzll(static_cast<uint64_t>(n_values - 1))),
        low_(_mm512_set1_epi32((1 << bits_) - 1)) {
    for (__m512i& k : key) k = _mm512_set1_epi32(INT32_MIN);
  }

  // w: expert i's values, i = 0, 1, ... in order (any order gives the same set; ties go to the
  // lower index either way).
  inline void insert(__m512 w, int32_t i) {
    const __m512i s = _mm512_castps_si512(w);
    // s ^ (sign ? 0x7FFFFFFF : 0): one ternary-logic operation on s, its sign spread, the mask.
    const __m512i ord =
        _mm512_ternarylogic_epi32(s, _mm512_srai_epi32(s, 31), _mm512_set1_epi32(0x7FFFFFFF), 0x78);
    // (ord & ~low) | (tag & low)
    __m512i x = _mm512_ternarylogic_epi32(ord, low_, _mm512_set1_epi32((1 << bits_) - 1 - i), 0xB8);
#pragma GCC unroll 16
    for (int j = 0; j < K; ++j) {
      const __m512i hi = _mm512_max_epi32(key[j], x);
      x = _mm512_min_epi32(key[j], x);
      key[j] = hi;
    }
  }

  // Slot j's experts.
  [[nodiscard]] inline __m512i index(int j) const {
    return _mm512_sub_epi32(low_, _mm512_and_si512(key[j], low_));
  }

  // The lanes whose slots 0..n−1 (n ≤ K) are strictly decreasing with the low bits ignored.
  [[nodiscard]] inline __mmask16 exact(int n) const {
    auto ok = static_cast<__mmask16>(0xFFFF);
    for (int j = 0; j + 1 < n; ++j)
      ok &= _mm512_cmpgt_epi32_mask(_mm512_andnot_si512(low_, key[j]),
                                    _mm512_andnot_si512(low_, key[j + 1]));
    return ok;
  }

  __m512i key[K];

 private:
  int bits_;
  __m512i low_;
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

}  // namespace sy::detail
