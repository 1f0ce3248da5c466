#include <type_traits>

#include "core/gemm_bf16.h"  // to_bf16
#include "core/vec_math.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

#if defined(__AVX512F__)
// One row of F values, 16 at a time with a masked tail: the loops below written with the AVX-512
// fast_exp (the scalar one's early NaN return keeps the compiler from vectorising them — they ran
// one float at a time, ≈ 4% of SMALL's fp32 step). The same expressions, so equal to the scalar
// loop but for the last ulp where a multiply-add is fused differently.
inline __m512 sigmoid16(__m512 g) {
  const __m512 one = _mm512_set1_ps(1.f);
  return _mm512_div_ps(one,
                       _mm512_add_ps(one, detail::fast_exp(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}

// store(i, value, mask) writes the 16 outputs at i (those in `mask`), as fp32 or bf16.
template <typename Store>
void swiglu_forward_row(const float* g, const float* u, int64_t F, Store&& store) {
  detail::for_each_block16(F, [&](int64_t i, __mmask16 m) {
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
    store(i, _mm512_mul_ps(_mm512_mul_ps(gv, sigmoid16(gv)), uv), m);
  });
}

// store(i, dgate, dup, mask) writes the 16 gradients at i (those in `mask`).
template <typename Store>
void swiglu_backward_row(const float* go, const float* g, const float* u, int64_t F,
                         Store&& store) {
  const __m512 one = _mm512_set1_ps(1.f);
  detail::for_each_block16(F, [&](int64_t i, __mmask16 m) {
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
    const __m512 gov = _mm512_maskz_loadu_ps(m, go + i);
    const __m512 sig = sigmoid16(gv);
    // go·u·σ·(1 + g·(1 − σ)) and go·g·σ
    __m512 dgv = _mm512_mul_ps(_mm512_mul_ps(gov, uv), sig);
    dgv = _mm512_mul_ps(dgv, _mm512_fmadd_ps(gv, _mm512_sub_ps(one, sig), one));
    store(i, dgv, _mm512_mul_ps(_mm512_mul_ps(gov, gv), sig), m);
  });
}

void store_bf16(uint16_t* d, int64_t i, __m512 v, __mmask16 m) {
  _mm512_mask_cvtepi32_storeu_epi16(d + i, m, detail::to_bf16_16(v));
}
#endif

}  // namespace

template <typename T>
void swiglu_forward(T* out, const T* hu, int64_t N, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* g = hu + n * 2 * F;  // [F] gate
    const T* u = g + F;           // [F] up
    T* o = out + n * F;           // [F]
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      swiglu_forward_row(
          g, u, F, [o](int64_t i, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(o + i, m, v); });
      continue;
    }
#endif
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) {
      const T sig = T(1) / (T(1) + detail::fast_exp(-g[i]));
      o[i] = g[i] * sig * u[i];
    }
  }
}

// silu'(x) = σ(x) + x·σ(x)·(1 − σ(x)) = σ(x)·(1 + x·(1 − σ(x))).
template <typename T>
void swiglu_backward(T* dhu, const T* dout, const T* hu, int64_t N, int64_t F, bool accumulate) {
  // accumulate false writes: the values of accumulating into zeros (a −0 stays −0 here)
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* g = hu + n * 2 * F;  // [F] gate
    const T* u = g + F;           // [F] up
    const T* go = dout + n * F;   // [F]
    T* dg = dhu + n * 2 * F;      // [F]
    T* du = dg + F;               // [F]
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      swiglu_backward_row(go, g, u, F, [&](int64_t i, __m512 dgv, __m512 duv, __mmask16 m) {
        if (accumulate) {
          dgv = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dg + i), dgv);
          duv = _mm512_add_ps(_mm512_maskz_loadu_ps(m, du + i), duv);
        }
        _mm512_mask_storeu_ps(dg + i, m, dgv);
        _mm512_mask_storeu_ps(du + i, m, duv);
      });
      continue;
    }
#endif
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) {
      const T sig = T(1) / (T(1) + detail::fast_exp(-g[i]));
      const T dgi = go[i] * u[i] * sig * (T(1) + g[i] * (T(1) - sig));
      const T dui = go[i] * g[i] * sig;
      dg[i] = accumulate ? dg[i] + dgi : dgi;
      du[i] = accumulate ? du[i] + dui : dui;
    }
  }
}

// The bf16 outputs: each value computed as above (the same vector code, or the same scalar
// expressions), then rounded by to_bf16.
void swiglu_forward_bf16(uint16_t* out16, const float* hu, int64_t N, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* g = hu + n * 2 * F;  // [F] gate
    const float* u = g + F;           // [F] up
    uint16_t* o = out16 + n * F;      // [F]
#if defined(__AVX512F__)
    swiglu_forward_row(g, u, F, [o](int64_t i, __m512 v, __mmask16 m) { store_bf16(o, i, v, m); });
#else
    for (int64_t i = 0; i < F; ++i) {
      const float sig = 1.f / (1.f + detail::fast_exp(-g[i]));
      o[i] = to_bf16(g[i] * sig * u[i]);
    }
#endif
  }
}

void swiglu_backward_bf16(uint16_t* dhu16, const float* dout, const float* hu, int64_t N,
                          int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* g = hu + n * 2 * F;   // [F] gate
    const float* u = g + F;            // [F] up
    const float* go = dout + n * F;    // [F]
    uint16_t* dg = dhu16 + n * 2 * F;  // [F]
    uint16_t* du = dg + F;             // [F]
#if defined(__AVX512F__)
    swiglu_backward_row(go, g, u, F, [&](int64_t i, __m512 dgv, __m512 duv, __mmask16 m) {
      store_bf16(dg, i, dgv, m);
      store_bf16(du, i, duv, m);
    });
#else
    for (int64_t i = 0; i < F; ++i) {
      const float sig = 1.f / (1.f + detail::fast_exp(-g[i]));
      dg[i] = to_bf16(go[i] * u[i] * sig * (1.f + g[i] * (1.f - sig)));
      du[i] = to_bf16(go[i] * g[i] * sig);
    }
#endif
  }
}

template void swiglu_forward<float>(float*, const float*, int64_t, int64_t);
template void swiglu_forward<double>(double*, const double*, int64_t, int64_t);
template void swiglu_backward<float>(float*, const float*, const float*, int64_t, int64_t, bool);
template void swiglu_backward<double>(double*, const double*, const double*, int64_t, int64_t,
                                      bool);

}  // namespace sy
