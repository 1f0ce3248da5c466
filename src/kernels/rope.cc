#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sy {

template <typename T>
void rope_tables(T* cos, T* sin, int64_t S, int64_t hd, double theta) {
  const int64_t half = hd / 2;
  // Angles in double: at s ≈ 10⁴ a float angle would already be off by ~1e-3 rad.
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq =
          std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
      const double angle = static_cast<double>(s) * inv_freq;
      cos[s * half + i] = static_cast<T>(std::cos(angle));
      sin[s * half + i] = static_cast<T>(std::sin(angle));
    }
  }
}

namespace {

// Applies the rotation by +angle (forward) or −angle (backward = Rᵀ) to every head of every row.
template <typename T, bool kInverse>
void rope_rotate(T* x, const T* cos, const T* sin, int64_t B, int64_t S, int64_t H, int64_t hd,
                 int64_t ld) {
  SY_DCHECK(hd % 2 == 0 && ld >= H * hd);
  const int64_t half = hd / 2;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * S; ++row) {
    const int64_t s = row % S;
    const T* c = cos + s * half;   // [hd/2]
    const T* sn = sin + s * half;  // [hd/2]
    for (int64_t h = 0; h < H; ++h) {
      T* x1 = x + row * ld + h * hd;  // [hd/2], first half of the head
      T* x2 = x1 + half;              // [hd/2], second half
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const T a = x1[i];
        const T b = x2[i];
        if constexpr (kInverse) {
          x1[i] = a * c[i] + b * sn[i];
          x2[i] = b * c[i] - a * sn[i];
        } else {
          x1[i] = a * c[i] - b * sn[i];
          x2[i] = b * c[i] + a * sn[i];
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void rope_forward(T* x, const T* cos, const T* sin, int64_t B, int64_t S, int64_t H, int64_t hd,
                  int64_t ld) {
  rope_rotate<T, false>(x, cos, sin, B, S, H, hd, ld);
}

template <typename T>
void rope_backward(T* dx, const T* cos, const T* sin, int64_t B, int64_t S, int64_t H, int64_t hd,
                   int64_t ld) {
  rope_rotate<T, true>(dx, cos, sin, B, S, H, hd, ld);
}

template void rope_tables<float>(float*, float*, int64_t, int64_t, double);
template void rope_tables<double>(double*, double*, int64_t, int64_t, double);
template void rope_forward<float>(float*, const float*, const float*, int64_t, int64_t, int64_t,
                                  int64_t, int64_t);
template void rope_forward<double>(double*, const double*, const double*, int64_t, int64_t, int64_t,
                                   int64_t, int64_t);
template void rope_backward<float>(float*, const float*, const float*, int64_t, int64_t, int64_t,
                                   int64_t, int64_t);
template void rope_backward<double>(double*, const double*, const double*, int64_t, int64_t,
                                    int64_t, int64_t, int64_t);

}  // namespace sy
