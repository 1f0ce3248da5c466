// Internal to src/routing: the exact r-th largest of a float array by radix selection on the
// order-preserving integer image of the float bits. Shared by BIP's column pass and Expert Choice,
// which select over expert columns made contiguous by routing/transposed.h.
//
// Why radix rather than std::nth_element: a column of N scores is selected once per expert (per
// BIP iteration); nth_element costs ~10 ns per element in branch mispredictions, the radix passes
// below are a vectorised key/min/max pass, one histogram increment per element and a vectorised
// compaction, repeated on the ever smaller bin that holds the rank (≤ 3 levels of 11 bits).
//
// The key. float_key maps a float to a uint32 whose unsigned order is the float order: the sign
// bit flipped for x ≥ 0, all bits flipped for x < 0. −0 is first turned into +0 (x + 0.f), so the
// two zeros share one key, as they compare equal as floats: a zero result is returned as +0.
// NaN gets a key above +∞ (or below −∞ for a negative NaN), a defined place where nth_element
// with a float comparator has none; callers document that NaN scores give unspecified routing.
//
// The value selected is the same as nth_element's (the r-th largest of a multiset is a value);
// only which of several equal elements sits where differs, and callers never rely on positions.
//
// Threading: plain functions over caller-owned buffers; call from any thread.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#include "core/vec_math.h"  // <immintrin.h> with GCC 12's false-positive warnings silenced

namespace sy::detail {

constexpr int kRadixBits = 11;
constexpr int64_t kRadixBins = int64_t(1) << kRadixBits;  // histogram size (uint32 elements)
constexpr int64_t kRadixSmall = 32;  // at or below, nth_element on the keys finishes the job

inline uint32_t float_key(float x) {
  const auto b = std::bit_cast<uint32_t>(x + 0.f);  // −0 → +0
  return b ^ (static_cast<uint32_t>(static_cast<int32_t>(b) >> 31) | 0x80000000u);
}

inline float key_float(uint32_t k) {
  return std::bit_cast<float>(k ^ ((k >> 31) ? 0x80000000u : 0xFFFFFFFFu));
}

#if defined(__AVX512F__)
inline __m512i float_key(__m512 x) {
  const __m512i b = _mm512_castps_si512(_mm512_add_ps(x, _mm512_setzero_ps()));
  const __m512i flip = _mm512_or_si512(_mm512_srai_epi32(b, 31), _mm512_set1_epi32(INT32_MIN));
  return _mm512_xor_si512(b, flip);
}
#endif

// The r-th largest (0-based) of v[0..n) and how many elements are strictly greater than it.
struct KthResult {
  float value;
  int64_t above;
};

namespace radix_internal {

// min and max key of v[0..n), n ≥ 1.
inline void key_range(const float* v, int64_t n, uint32_t& lo, uint32_t& hi) {
  int64_t j = 0;
  lo = UINT32_MAX;
  hi = 0;
#if defined(__AVX512F__)
  if (n >= 16) {
    __m512i vlo = _mm512_set1_epi32(-1), vhi = _mm512_setzero_si512();
    for (; j + 16 <= n; j += 16) {
      const __m512i k = float_key(_mm512_loadu_ps(v + j));
      vlo = _mm512_min_epu32(vlo, k);
      vhi = _mm512_max_epu32(vhi, k);
    }
    lo = _mm512_reduce_min_epu32(vlo);
    hi = _mm512_reduce_max_epu32(vhi);
  }
#endif
  for (; j < n; ++j) {
    const uint32_t k = float_key(v[j]);
    lo = std::min(lo, k);
    hi = std::max(hi, k);
  }
}

// hist[(key − lo) >> shift] += 1 over v[0..n); hist is already zeroed.
inline void histogram(const float* v, int64_t n, uint32_t lo, int shift, uint32_t* hist) {
  int64_t j = 0;
#if defined(__AVX512F__)
  alignas(64) uint32_t bins[16];
  const __m512i vlo = _mm512_set1_epi32(static_cast<int32_t>(lo));
  const __m128i sh = _mm_cvtsi32_si128(shift);
  for (; j + 16 <= n; j += 16) {
    const __m512i k = float_key(_mm512_loadu_ps(v + j));
    _mm512_store_si512(bins, _mm512_srl_epi32(_mm512_sub_epi32(k, vlo), sh));
    for (const uint32_t b : bins) ++hist[b];
  }
#endif
  for (; j < n; ++j) ++hist[(float_key(v[j]) - lo) >> shift];
}

// Copies the elements of bin b of in[0..n) to out (any order; out may be in); returns how many.
inline int64_t keep_bin(const float* in, int64_t n, uint32_t lo, int shift, uint32_t b,
                        float* out) {
  int64_t j = 0, w = 0;
#if defined(__AVX512F__)
  const __m512i vlo = _mm512_set1_epi32(static_cast<int32_t>(lo));
  const __m512i vb = _mm512_set1_epi32(static_cast<int32_t>(b));
  const __m128i sh = _mm_cvtsi32_si128(shift);
  for (; j + 16 <= n; j += 16) {
    const __m512 x = _mm512_loadu_ps(in + j);
    const __m512i bin = _mm512_srl_epi32(_mm512_sub_epi32(float_key(x), vlo), sh);
    const __mmask16 keep = _mm512_cmpeq_epi32_mask(bin, vb);
    // Compress in a register and store 16 lanes: w ≤ j, so the store stays inside out[0..j+16),
    // and when out is in, its lanes from j on are already loaded (a compress straight to memory
    // is slow on Zen 4).
    _mm512_storeu_ps(out + w, _mm512_maskz_compress_ps(keep, x));
    w += std::popcount(static_cast<uint32_t>(keep));
  }
#endif
  for (; j < n; ++j)
    if (((float_key(in[j]) - lo) >> shift) == b) out[w++] = in[j];
  return w;
}

// The bin b holding rank r (0-based from the top) of a histogram of `bins` bins over n elements,
// and the count of elements in the bins above it. Walks from the nearer end, 16 bins at a time
// while a whole vector of bins lies before the rank.
inline void find_bin(const uint32_t* hist, int64_t bins, int64_t n, int64_t r, int64_t& b,
                     int64_t& above) {
  above = 0;
  if (r < n / 2) {
    b = bins - 1;
#if defined(__AVX512F__)
    for (; b >= 15; b -= 16) {
      const int64_t sum = _mm512_reduce_add_epi32(_mm512_loadu_si512(hist + b - 15));
      if (above + sum > r) break;
      above += sum;
    }
#endif
    for (; above + hist[b] <= r; --b) above += hist[b];
    return;
  }
  const int64_t from_bottom = n - 1 - r;
  int64_t below = 0;
  b = 0;
#if defined(__AVX512F__)
  for (; b + 16 <= bins; b += 16) {
    const int64_t sum = _mm512_reduce_add_epi32(_mm512_loadu_si512(hist + b));
    if (below + sum > from_bottom) break;
    below += sum;
  }
#endif
  for (; below + hist[b] <= from_bottom; ++b) below += hist[b];
  above = n - below - hist[b];
}

// A Floyd–Rivest step before the radix levels, for large n: the values of ranks r ∓ 3 standard
// deviations in a sample of 64 elements bracket the r-th largest with high probability; one
// vectorised pass counts the elements above the bracket and compacts those inside it into work.
// Returns whether rank r lies inside; if so, work[0..inside) holds the bracket's elements and
// `above` counts those above it. Otherwise (rarely) the caller selects from all of src.
constexpr int64_t kSampleMin = 1024;  // below it, the radix levels alone are cheaper

// The bracket's keys [klo, khi] (descending order: khi the upper end) from the sample; an open
// side is 0 or UINT32_MAX.
constexpr int64_t kSample = 64;

// The sample ranks of the bracket's ends: rs ∓ d.
inline void bracket_ranks(int64_t n, int64_t r, int64_t& rs, int64_t& d) {
  constexpr int64_t m = kSample;
  rs = r * m / n;
  const double f = static_cast<double>(rs) / m;
  d = static_cast<int64_t>(3.0 * std::sqrt(m * f * (1 - f))) + 2;
}

inline void sample_bracket(const float* src, int64_t n, int64_t r, uint32_t& khi, uint32_t& klo) {
  constexpr int64_t m = kSample;
  uint32_t sample[m];
  for (int64_t j = 0; j < m; ++j) sample[j] = float_key(src[(2 * j + 1) * n / (2 * m)]);
  int64_t rs, d;
  bracket_ranks(n, r, rs, d);
  khi = UINT32_MAX;
  klo = 0;
  int64_t first = 0;
  if (rs - d >= 0) {
    std::nth_element(sample, sample + (rs - d), sample + m, std::greater<>());
    khi = sample[rs - d];
    first = rs - d + 1;
  }
  if (rs + d < m) {
    std::nth_element(sample + first, sample + (rs + d), sample + m, std::greater<>());
    klo = sample[rs + d];
  }
}

inline bool bracket(const float* src, int64_t n, int64_t r, float* work, int64_t& inside,
                    int64_t& above) {
  uint32_t khi, klo;
  sample_bracket(src, n, r, khi, klo);
  int64_t j = 0, w = 0, gt_count = 0;
#if defined(__AVX512F__)
  const __m512i vhi = _mm512_set1_epi32(static_cast<int32_t>(khi));
  const __m512i vlo = _mm512_set1_epi32(static_cast<int32_t>(klo));
  for (; j + 16 <= n; j += 16) {
    const __m512 x = _mm512_loadu_ps(src + j);
    const __m512i k = float_key(x);
    const __mmask16 gt = _mm512_cmpgt_epu32_mask(k, vhi);
    const __mmask16 in = _mm512_mask_cmpge_epu32_mask(static_cast<__mmask16>(~gt), k, vlo);
    gt_count += std::popcount(static_cast<uint32_t>(gt));
    _mm512_storeu_ps(work + w, _mm512_maskz_compress_ps(in, x));  // w ≤ j: inside work[0..n)
    w += std::popcount(static_cast<uint32_t>(in));
  }
#endif
  for (; j < n; ++j) {
    const uint32_t k = float_key(src[j]);
    if (k > khi) {
      ++gt_count;
    } else if (k >= klo) {
      work[w++] = src[j];
    }
  }
  inside = w;
  above = gt_count;
  return gt_count <= r && r < gt_count + w;
}

}  // namespace radix_internal

// The elements of src[0..n) that can rank r (0-based from the top) or higher, with their positions
// and in position order: vals[0..c) and pos[0..c) (room for n each) receive every element whose
// key is at least the lower end of the sampled bracket above, so that c > r, the r-th largest of
// vals is src's and as many elements are above it, and every element equal to it is there. For a
// selection followed by a pass that takes the selected elements in order (Expert Choice with
// k ≪ n): that pass then reads c elements instead of n. Returns c, or −1 (nothing useful
// written) when top_candidates_apply(n, r) is false or, rarely, when fewer than r + 1 elements
// reach the bound. REQUIRES: 0 ≤ r < n.
//
// top_candidates_apply: whether there is a sample (n ≥ kSampleMin) and the bracket is open above
// (r among the few largest; otherwise the candidates would include every element above the
// bracket, which bracket() merely counts) and closed below (else it would keep everything).
inline bool top_candidates_apply(int64_t n, int64_t r) {
  if (n < radix_internal::kSampleMin) return false;
  int64_t rs, d;
  radix_internal::bracket_ranks(n, r, rs, d);
  return rs - d < 0 && rs + d < radix_internal::kSample;  // open above, closed below
}

inline int64_t top_candidates(const float* src, int64_t n, int64_t r, float* vals, int32_t* pos) {
  if (!top_candidates_apply(n, r)) return -1;
  uint32_t khi, klo;
  radix_internal::sample_bracket(src, n, r, khi, klo);
  int64_t j = 0, w = 0;
#if defined(__AVX512F__)
  const __m512i vlo = _mm512_set1_epi32(static_cast<int32_t>(klo));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (; j + 16 <= n; j += 16) {
    const __m512 x = _mm512_loadu_ps(src + j);
    const __mmask16 in = _mm512_cmpge_epu32_mask(float_key(x), vlo);
    // Compressed in registers, 16 lanes stored: w ≤ j, so the stores stay inside [0, n).
    _mm512_storeu_ps(vals + w, _mm512_maskz_compress_ps(in, x));
    _mm512_storeu_si512(
        pos + w, _mm512_maskz_compress_epi32(
                     in, _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(j)))));
    w += std::popcount(static_cast<uint32_t>(in));
  }
#endif
  for (; j < n; ++j) {
    if (float_key(src[j]) >= klo) {
      vals[w] = src[j];
      pos[w++] = static_cast<int32_t>(j);
    }
  }
  return w > r ? w : -1;
}

// The r-th largest (0-based) of src[0..n), exactly: for n ≥ kSampleMin first a sampled bracket
// (above), then MSD radix selection on float_key with digits
// of up to kRadixBits bits taken below the highest bit in which the remaining keys differ (the key
// range adapts to the data, so scores crowded into a few octaves still spread over the bins; each
// level leaves the candidates of one bin, and at most 32 / 4 levels can run). The
// first level reads src, which is left unchanged unless it is work; the candidates of later levels
// live in work (n elements). hist has kRadixBins elements. REQUIRES: 0 ≤ r < n.
inline KthResult rth_largest_radix(const float* src, int64_t n, int64_t r, float* work,
                                   uint32_t* hist) {
  int64_t above = 0;
  const float* in = src;
  // In place (src == work) the bracket's compaction would overwrite src before knowing whether
  // the bracket holds the rank: only out of place.
  if (n >= radix_internal::kSampleMin && src != work) {
    int64_t inside, above_bracket;
    if (radix_internal::bracket(src, n, r, work, inside, above_bracket)) {
      in = work;
      n = inside;
      r -= above_bracket;
      above = above_bracket;
    }
  }
  for (;;) {
    if (n <= kRadixSmall) {
      if (in != work) std::copy(in, in + n, work);
      const auto gt = [](float a, float b) { return float_key(a) > float_key(b); };
      std::nth_element(work, work + r, work + n, gt);
      const uint32_t kr = float_key(work[r]);
      for (int64_t j = 0; j < r; ++j) above += float_key(work[j]) > kr;
      return {key_float(kr), above};
    }
    uint32_t lo, hi;
    radix_internal::key_range(in, n, lo, hi);
    if (lo == hi) return {key_float(lo), above};
    // Digits of about log2(n) − 1 bits (2 elements per bin on average, at most kRadixBits): a
    // small candidate set does not pay for clearing and walking 2^11 bins.
    const int digit =
        std::clamp(static_cast<int>(std::bit_width(static_cast<uint64_t>(n))) - 1, 4, kRadixBits);
    const int shift = std::max(0, static_cast<int>(std::bit_width(hi - lo)) - digit);
    const int64_t bins = static_cast<int64_t>((hi - lo) >> shift) + 1;
    std::memset(hist, 0, static_cast<size_t>(bins) * sizeof(uint32_t));
    radix_internal::histogram(in, n, lo, shift, hist);
    int64_t b, above_bin;
    radix_internal::find_bin(hist, bins, n, r, b, above_bin);
    r -= above_bin;
    above += above_bin;
    n = radix_internal::keep_bin(in, n, lo, shift, static_cast<uint32_t>(b), work);
    in = work;
  }
}

// The same in place: v is the working buffer, reordered and overwritten.
inline KthResult rth_largest_radix(float* v, int64_t n, int64_t r, uint32_t* hist) {
  return rth_largest_radix(v, n, r, v, hist);
}

}  // namespace sy::detail
