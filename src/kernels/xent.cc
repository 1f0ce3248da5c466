#include <algorithm>
#include <cmath>

#include "core/vec_math.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

template <typename T>
T row_max(const T* x, int64_t V) {
  T m = x[0];
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < V; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

}  // namespace

template <typename T>
void xent_forward(T* losses, const T* logits, const int32_t* targets, int64_t N, int64_t V) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) {
      losses[n] = 0;
      continue;
    }
    const T* x = logits + n * V;  // [V]
    const T m = row_max(x, V);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; ++j) sum += detail::fast_exp(x[j] - m);
    // (m − x_t) first: both are large and close for confident predictions, the log term is small.
    losses[n] = (m - x[targets[n]]) + std::log(sum);
  }
}

template <typename T>
void xent_backward(T* dlogits, const T* logits, const int32_t* targets, T scale, int64_t N,
                   int64_t V) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* d = dlogits + n * V;       // [V]
    const T* x = logits + n * V;  // [V], may be d itself
    if (targets[n] < 0) {
      std::fill(d, d + V, T(0));
      continue;
    }
    const T m = row_max(x, V);
    // Every pass reads x[j] before writing d[j] at the same j, so d == x is safe; the exps are
    // stored once rather than recomputed (a row of V = 8192 floats stays in L1).
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; ++j) {
      const T e = detail::fast_exp(x[j] - m);
      d[j] = e;
      sum += e;
    }
    const T c = scale / sum;
#pragma omp simd
    for (int64_t j = 0; j < V; ++j) d[j] *= c;
    d[targets[n]] -= scale;
  }
}

template void xent_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void xent_forward<double>(double*, const double*, const int32_t*, int64_t, int64_t);
template void xent_backward<float>(float*, const float*, const int32_t*, float, int64_t, int64_t);
template void xent_backward<double>(double*, const double*, const int32_t*, double, int64_t,
                                    int64_t);

}  // namespace sy
