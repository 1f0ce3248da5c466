// Internal to the attention kernels (attention.cc, attention_bf16.cc): the causal softmax of one
// row of scores and its backward, shared by the fp32/fp64 core and the bf16 one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/vec_math.h"

namespace sy::detail {

// p[0..t] ← softmax(p[0..t]) (max-subtracted), p[t+1..S) ← 0. A NaN anywhere in the row makes
// the whole row NaN (through the sum). fp32 16 values at a time in AVX-512 (MEDIUM's rows: 14 →
// 7 ms per step; the compiler's own vectorisation of the loops below used 8-wide vectors).
// `also`, if given (T = float with AVX-512 only), is called as also(j, values, lanes) with each
// 16 results as they are stored: the bf16 core rounds them there, in registers.
template <typename T, typename Also = std::nullptr_t>
inline void causal_softmax_row(T* p, int64_t t, int64_t S, Also&& also = nullptr) {
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
      const __m512 r = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), inv);
      _mm512_mask_storeu_ps(p + j, k, r);
      if constexpr (!std::is_same_v<std::decay_t<Also>, std::nullptr_t>) also(j, r, k);
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
// backward), fp32 16 values at a time in AVX-512 like causal_softmax_row, `also` as there.
template <typename T, typename Also = std::nullptr_t>
inline void softmax_row_backward(const T* p, T* d, int64_t n, Also&& also = nullptr) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    __m512 acc = _mm512_setzero_ps();
    detail::for_each_block16(n, [&](int64_t j, __mmask16 k) {
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, p + j), _mm512_maskz_loadu_ps(k, d + j), acc);
    });
    const __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
    detail::for_each_block16(n, [&](int64_t j, __mmask16 k) {
      const __m512 pj = _mm512_maskz_loadu_ps(k, p + j);
      const __m512 r = _mm512_mul_ps(pj, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, d + j), dot));
      _mm512_mask_storeu_ps(d + j, k, r);
      if constexpr (!std::is_same_v<std::decay_t<Also>, std::nullptr_t>) also(j, r, k);
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

}  // namespace sy::detail
