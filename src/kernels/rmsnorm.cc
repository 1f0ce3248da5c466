#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace sy {

namespace {
// Columns of dweight each task owns: 64 floats = 4 cache lines, small enough to stay in registers.
constexpr int64_t kColumnBlock = 64;
}  // namespace

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t D, T eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = inp + n * D;  // [D]
    T* o = out + n * D;        // [D]
    T ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < D; ++i) ss += x[i] * x[i];
    const T r = T(1) / std::sqrt(ss / T(D) + eps);
    rstd[n] = r;
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) o[i] = x[i] * r * weight[i];
  }
}

// With y = x·r·w and r = (mean(x²) + eps)^(-1/2), ∂r/∂x_j = −r³·x_j/D, so
//   dx_j = r·(g_j·w_j − x_j · r²/D · Σ_i g_i·w_i·x_i),   dw_i = Σ_n g_ni·x_ni·r_n.
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int64_t N, int64_t D) {
  const int64_t num_blocks = (D + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel
  {
    if (dinp != nullptr) {
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        const T* x = inp + n * D;   // [D]
        const T* g = dout + n * D;  // [D]
        T* dx = dinp + n * D;       // [D]
        const T r = rstd[n];
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t i = 0; i < D; ++i) dot += g[i] * weight[i] * x[i];
        const T c = r * r * dot / T(D);
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) dx[i] += r * (g[i] * weight[i] - x[i] * c);
      }
    }
    if (dweight != nullptr) {
      // Each task owns a column block and sums rows in order: no atomics, and the result does not
      // depend on the thread count.
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < num_blocks; ++blk) {
        const int64_t c0 = blk * kColumnBlock;
        const int64_t w = std::min(kColumnBlock, D - c0);
        T acc[kColumnBlock] = {};  // [w]
        for (int64_t n = 0; n < N; ++n) {
          const T* x = inp + n * D + c0;
          const T* g = dout + n * D + c0;
          const T r = rstd[n];
#pragma omp simd
          for (int64_t i = 0; i < w; ++i) acc[i] += g[i] * x[i] * r;
        }
        for (int64_t i = 0; i < w; ++i) dweight[c0 + i] += acc[i];
      }
    }
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int64_t, int64_t,
                                     float);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int64_t,
                                      int64_t, double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*,
                                      const float*, int64_t, int64_t);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*,
                                       const double*, const double*, int64_t, int64_t);

}  // namespace sy
