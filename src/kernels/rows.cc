// Row moves of the MoE layer's dispatch and combine: a gather of rows by index, and the combine's
// backward per row. fp32 rows of whole cache lines are written with streaming stores: these
// outputs ([rows, D], MEDIUM 25 MB per layer) are read by a later pass — the experts — not by
// this one, so fetching their old lines first (a normal store's read-for-ownership) only doubles
// the traffic. Measured on MEDIUM: the dispatch's gather 1.85 -> 0.95 ms per layer, the experts
// that read it unchanged (docs/benchmarks.md).
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/vec_math.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

#if defined(__AVX512F__)
// Streaming stores need 64-byte aligned rows of whole 16-float vectors.
bool streamable(const float* out, int64_t D) {
  return D % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 64 == 0;
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

template <typename T>
T gated_row_backward(const T* dyt, T g, const T* yr, T* dyr, int64_t D) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (streamable(dyr, D)) {
      const __m512 gv = _mm512_set1_ps(g);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t j = 0; j < D; j += 16) {
        const __m512 d = _mm512_loadu_ps(dyt + j);
        acc = _mm512_fmadd_ps(d, _mm512_loadu_ps(yr + j), acc);
        _mm512_stream_ps(dyr + j, _mm512_mul_ps(gv, d));
      }
      return _mm512_reduce_add_ps(acc);
    }
  }
#endif
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < D; ++j) {
    dot += dyt[j] * yr[j];
    dyr[j] = g * dyt[j];
  }
  return dot;
}

template void gather_rows<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void gather_rows<double>(double*, const double*, const int32_t*, int64_t, int64_t);
template float gated_row_backward<float>(const float*, float, const float*, float*, int64_t);
template double gated_row_backward<double>(const double*, double, const double*, double*, int64_t);

}  // namespace sy
