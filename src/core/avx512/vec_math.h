// Internal: the AVX-512 versions of core/vec_math.h's elementwise math, on 16 floats (8 doubles)
// for loops written with intrinsics (the routers' kernels): fast_exp, fast_exp_nonpositive,
// fast_log; and to_bf16_16, the bf16 rounding of 16 floats. The scalar fast_exp(float) is the
// reference: the same reduction and polynomial, equal but for the last ulp where a multiply-add
// is fused differently; fast_log is within 2 ulp of std::log.
//
// Included by core/vec_math.h inside `#if defined(__AVX512F__)`: include that header, which
// thereby also provides <immintrin.h>.
#pragma once

#include <cstdint>

// GCC 12 warns that the intrinsics' internal _mm512_undefined_* values are used uninitialised
// (GCC bug 105593, a false positive at the header's own lines): silence it for the header only.
// Clang (the fuzz and some sanitizer builds) has no such warning, nor the group's name.
#if defined(__clang__)
#include <immintrin.h>
#else
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace sy::detail {

namespace vec_internal {
// e^x by the reduction and polynomial of the scalar fast_exp, without its clamps: exact to 2e-7
// for x in [−87.3, 88.3]; outside, garbage (up to NaN) that the callers discard or clamp away.
inline __m512 exp_in_range(__m512 x) {
  const __m512 round = _mm512_set1_ps(12582912.0f);
  const __m512 n =
      _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), round), round);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  // p·2^n in one instruction; the same bits as the scalar version's multiplication by a
  // constructed 2^n (both are an exact or correctly rounded product: checked over 2·10^9 inputs).
  return _mm512_scalef_ps(p, n);
}
}  // namespace vec_internal

// fast_exp on 16 floats at once, for loops written with intrinsics (the routers' per-token
// kernels). The same reduction and polynomial as the scalar version; where the compiler fuses a
// multiply-add differently the two may differ in the last ulp. NaN propagates; the clamps are
// min/max with the constant first, so that a NaN x passes through them.
inline __m512 fast_exp(__m512 x) {
  const __m512 hi = _mm512_min_ps(_mm512_set1_ps(88.3f), x);
  const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-87.3f), hi);
  const __m512 result = vec_internal::exp_in_range(xc);
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(under, result, _mm512_setzero_ps());
}

// fast_exp for x ≤ 0 (or NaN), as in a max-subtracted softmax: the same values without the two
// clamps (the upper one cannot act; below −87.3 the result is forced to 0 anyway).
inline __m512 fast_exp_nonpositive(__m512 x) {
  const __m512 result = vec_internal::exp_in_range(x);
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(under, result, _mm512_setzero_ps());
}

// ln x on 16 floats, for positive normal x (the routers' softmax sums, in [1, E]); NaN propagates.
// Error below 2 ulp: x = 2^k·m with m in [0.75, 1.5), ln m = 2·atanh(s), s = (m − 1)/(m + 1),
// |s| < 0.2, by its odd series to s^11 (truncation 0.2^13/13 ≈ 6e-11); k·ln2 in two parts.
inline __m512 fast_log(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
  // getexp gives ⌊log2 x⌋; a mantissa below 1 was halved into [0.75, 1), so k is one more.
  const __m512 k = _mm512_mask_add_ps(_mm512_getexp_ps(x), _mm512_cmp_ps_mask(m, one, _CMP_LT_OQ),
                                      _mm512_getexp_ps(x), one);
  const __m512 s = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one));
  const __m512 s2 = _mm512_mul_ps(s, s);
  __m512 p = _mm512_set1_ps(2.f / 11.f);
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.f / 9.f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.f / 7.f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.f / 5.f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.f / 3.f));
  p = _mm512_mul_ps(_mm512_mul_ps(p, s2), s);  // ln m − 2s
  const __m512 lo = _mm512_fmadd_ps(k, _mm512_set1_ps(1.428606765330187e-06f), p);
  return _mm512_fmadd_ps(k, _mm512_set1_ps(0.693145751953125f),
                         _mm512_fmadd_ps(s, _mm512_set1_ps(2.f), lo));
}

// ln x on 8 doubles, for positive normal x; NaN propagates. Error below 2 ulp: the reduction of
// the float version, with the series of 2·atanh(s) to s^21 (|s| < 0.2: truncation 0.2^23/23 ≈
// 4e-18) and ln2 in two parts.
inline __m512d fast_log(__m512d x) {
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d m = _mm512_getmant_pd(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
  const __m512d k = _mm512_mask_add_pd(_mm512_getexp_pd(x), _mm512_cmp_pd_mask(m, one, _CMP_LT_OQ),
                                       _mm512_getexp_pd(x), one);
  const __m512d s = _mm512_div_pd(_mm512_sub_pd(m, one), _mm512_add_pd(m, one));
  const __m512d s2 = _mm512_mul_pd(s, s);
  __m512d p = _mm512_set1_pd(2.0 / 21.0);
  for (int j = 19; j >= 3; j -= 2) p = _mm512_fmadd_pd(p, s2, _mm512_set1_pd(2.0 / j));
  p = _mm512_mul_pd(_mm512_mul_pd(p, s2), s);  // ln m − 2s
  const __m512d lo = _mm512_fmadd_pd(k, _mm512_set1_pd(1.9082149292705877e-10), p);
  return _mm512_fmadd_pd(k, _mm512_set1_pd(0.6931471803691238),
                         _mm512_fmadd_pd(s, _mm512_set1_pd(2.0), lo));
}

// body(i, mask) over a row of n floats, 16 at a time: full blocks with all lanes, then the tail
// (if any) with only its lanes in the mask — for row kernels written with masked loads/stores.
template <typename Body>
inline void for_each_block16(int64_t n, Body&& body) {
  const int64_t full = n / 16 * 16;
  for (int64_t i = 0; i < full; i += 16) body(i, static_cast<__mmask16>(0xFFFF));
  if (full < n) body(full, static_cast<__mmask16>((1u << (n - full)) - 1u));
}

// to_bf16 (core/gemm_bf16.h) on 16 floats, in the low 16 bits of each lane: the same bits (to
// nearest even, NaN stays NaN); _mm512_mask_cvtepi32_storeu_epi16 stores them. (The instruction
// vcvtneps2bf16 would be shorter but flushes denormal inputs to zero.)
inline __m512i to_bf16_16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return r;
}

}  // namespace sy::detail
