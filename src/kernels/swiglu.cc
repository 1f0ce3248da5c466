#include "core/vec_math.h"
#include "kernels/kernels.h"

namespace sy {

template <typename T>
void swiglu_forward(T* out, const T* hu, int64_t N, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* g = hu + n * 2 * F;  // [F] gate
    const T* u = g + F;           // [F] up
    T* o = out + n * F;           // [F]
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

template void swiglu_forward<float>(float*, const float*, int64_t, int64_t);
template void swiglu_forward<double>(double*, const double*, int64_t, int64_t);
template void swiglu_backward<float>(float*, const float*, const float*, int64_t, int64_t, bool);
template void swiglu_backward<double>(double*, const double*, const double*, int64_t, int64_t,
                                      bool);

}  // namespace sy
