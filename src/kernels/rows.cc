// Row moves of the MoE layer's dispatch and combine: a gather of rows by index, and the combine's
// backward per row. fp32 rows of whole cache lines are written with streaming stores: these
// outputs ([rows, D], MEDIUM 25 MB per layer) are read by a later pass — the experts — not by
// this one, so fetching their old lines first (a normal store's read-for-ownership) only doubles
// the traffic. Measured on MEDIUM: the dispatch's gather 1.85 -> 0.95 ms per layer, the experts
// that read it unchanged (docs/benchmarks.md).
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/gemm_bf16.h"  // to_bf16
#include "core/vec_math.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

// The dot of the gated rows' backward where it is not written with intrinsics: one function
// (not inlined) for the fp32 and bf16 outputs, so that both sum in the same order.
template <typename T>
[[gnu::noinline]] T row_dot(const T* a, const T* b, int64_t D) {
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < D; ++j) dot += a[j] * b[j];
  return dot;
}

#if defined(__AVX512F__)
// Streaming stores need 64-byte aligned rows of whole 16-float vectors.
bool streamable(const float* out, int64_t D) {
  return D % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 64 == 0;
}
// ... and bf16 rows, whole cache lines of 32 values.
bool streamable(const uint16_t* out, int64_t D) {
  return D % 32 == 0 && reinterpret_cast<uintptr_t>(out) % 64 == 0;
}

// 32 floats (lo, then hi) rounded to bf16: one cache line, streamed to o.
void stream_bf16(uint16_t* o, __m512 lo, __m512 hi) {
  const __m256i l = _mm512_cvtepi32_epi16(detail::to_bf16_16(lo));
  const __m256i h = _mm512_cvtepi32_epi16(detail::to_bf16_16(hi));
  _mm512_stream_si512(reinterpret_cast<__m512i*>(o),
                      _mm512_inserti64x4(_mm512_castsi256_si512(l), h, 1));
}

// A gated row's backward, D a multiple of 16: store(j, g·dy_t[j..j+16)) block by block, and the
// dot dy_t · y_row summed in one set of 16 lanes in that order (the same for every output type).
template <typename Store>
float gated_row16(const float* dyt, float g, const float* yr, int64_t D, Store&& store) {
  const __m512 gv = _mm512_set1_ps(g);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < D; j += 16) {
    const __m512 d = _mm512_loadu_ps(dyt + j);
    acc = _mm512_fmadd_ps(d, _mm512_loadu_ps(yr + j), acc);
    store(j, _mm512_mul_ps(gv, d));
  }
  return _mm512_reduce_add_ps(acc);
}
#endif

}  // namespace

template <typename T>
void gather_rows(T* out, const T* src, const int32_t* index, int64_t rows, int64_t D) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (streamable(out, D)) {
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const float* s = src + static_cast<int64_t>(index[r]) * D;
        float* o = out + r * D;
        for (int64_t j = 0; j < D; j += 16) _mm512_stream_ps(o + j, _mm512_loadu_ps(s + j));
      }
      _mm_sfence();  // the streamed lines are visible to every thread after the join
      return;
    }
  }
#endif
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out + r * D, src + static_cast<int64_t>(index[r]) * D, sizeof(T) * D);
}

void gather_rows_bf16(uint16_t* out, const float* src, const int32_t* index, int64_t rows,
                      int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + static_cast<int64_t>(index[r]) * D;
    uint16_t* o = out + r * D;
#if defined(__AVX512F__)
    if (streamable(o, D)) {
      for (int64_t j = 0; j < D; j += 32)
        stream_bf16(o + j, _mm512_loadu_ps(s + j), _mm512_loadu_ps(s + j + 16));
      continue;
    }
    detail::for_each_block16(D, [&](int64_t j, __mmask16 m) {
      _mm512_mask_cvtepi32_storeu_epi16(o + j, m,
                                        detail::to_bf16_16(_mm512_maskz_loadu_ps(m, s + j)));
    });
#else
    for (int64_t j = 0; j < D; ++j) o[j] = to_bf16(s[j]);
#endif
  }
#if defined(__AVX512F__)
  _mm_sfence();  // the streamed lines are visible to every thread after the join
#endif
}

template <typename T>
T gated_row_backward(const T* dyt, T g, const T* yr, T* dyr, int64_t D) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (streamable(dyr, D))
      return gated_row16(dyt, g, yr, D,
                         [dyr](int64_t j, __m512 v) { _mm512_stream_ps(dyr + j, v); });
  }
#endif
  for (int64_t j = 0; j < D; ++j) dyr[j] = g * dyt[j];
  return row_dot(dyt, yr, D);
}

float gated_row_backward_bf16(const float* dyt, float g, const float* yr, uint16_t* dyr16,
                              int64_t D) {
#if defined(__AVX512F__)
  if (streamable(dyr16, D)) {
    __m512 lo = _mm512_setzero_ps();  // each cache line's first half, streamed with its second
    return gated_row16(dyt, g, yr, D, [dyr16, &lo](int64_t j, __m512 v) {
      if (j % 32 == 0)
        lo = v;
      else
        stream_bf16(dyr16 + j - 16, lo, v);
    });
  }
  if (D % 16 == 0) {
    return gated_row16(dyt, g, yr, D, [dyr16](int64_t j, __m512 v) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dyr16 + j),
                          _mm512_cvtepi32_epi16(detail::to_bf16_16(v)));
    });
  }
#endif
  for (int64_t j = 0; j < D; ++j) dyr16[j] = to_bf16(g * dyt[j]);
  return row_dot(dyt, yr, D);
}

template void gather_rows<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void gather_rows<double>(double*, const double*, const int32_t*, int64_t, int64_t);
template float gated_row_backward<float>(const float*, float, const float*, float*, int64_t);
template double gated_row_backward<double>(const double*, double, const double*, double*, int64_t);

}  // namespace sy
