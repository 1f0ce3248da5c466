#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/gemm_bf16.h"  // to_bf16
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

// The logsumexp of one row in two parts: {m, log Σ e^(x − m)}, m the row's max — kept apart so
// that x − m stays exact where the logits are large. A NaN logit makes the second NaN (through the
// sum), so a diverged model's loss is NaN.
template <typename T>
std::array<T, 2> row_logsumexp(const T* x, int64_t V) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const int64_t full = V / 16 * 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (V - full)) - 1u);
    __m512 vm = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < full; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + j));
    if (tail) vm = _mm512_mask_max_ps(vm, tail, vm, _mm512_maskz_loadu_ps(tail, x + full));
    const float m = _mm512_reduce_max_ps(vm);
    const __m512 mm = _mm512_set1_ps(m);
    __m512 vs = _mm512_setzero_ps();
    for (int64_t j = 0; j < full; j += 16)
      vs = _mm512_add_ps(vs,
                         detail::fast_exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(x + j), mm)));
    if (tail) {
      const __m512 e =
          detail::fast_exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + full), mm));
      vs = _mm512_mask_add_ps(vs, tail, vs, e);
    }
    return {m, std::log(_mm512_reduce_add_ps(vs))};
  }
#endif
  const T m = row_max(x, V);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < V; ++j) sum += detail::fast_exp(x[j] - m);
  return {m, std::log(sum)};
}

// d[j] = scale · (e^((x[j] − m) − ls) − [j == target]) for one row, {m, ls} its logsumexp;
// store(j, d, mask) writes the 16 values at j (those in `mask`), as fp32 or bf16. x may alias
// what store writes: each block is read before it is stored.
#if defined(__AVX512F__)
template <typename Store>
void row_gradient16(const float* x, std::array<float, 2> lse, int32_t target, float scale,
                    int64_t V, Store&& store) {
  const int64_t full = V / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (V - full)) - 1u);
  const __m512 vm = _mm512_set1_ps(lse[0]), vl = _mm512_set1_ps(lse[1]);
  const __m512 vs = _mm512_set1_ps(scale);
  const auto block = [&](int64_t j, __mmask16 mask) {
    __m512 d = _mm512_mul_ps(detail::fast_exp_nonpositive(_mm512_sub_ps(
                                 _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + j), vm), vl)),
                             vs);
    if (target >= j && target < j + 16)  // the target's lane, in the same rounding as the rest
      d = _mm512_mask_sub_ps(d, static_cast<__mmask16>(1u << (target - j)), d, vs);
    store(j, d, mask);
  };
  for (int64_t j = 0; j < full; j += 16) block(j, 0xffff);
  if (tail) block(full, tail);
}

#endif

// The row gradient without AVX-512 (or for T = double): one out-of-line function for the fp32
// and the bf16 outputs, so that both compute each value the same way (the same contractions).
template <typename T>
[[gnu::noinline]] void row_gradient(const T* x, std::array<T, 2> z, int32_t t, T scale, int64_t V,
                                    T* d) {
#pragma omp simd
  for (int64_t j = 0; j < V; ++j) d[j] = detail::fast_exp((x[j] - z[0]) - z[1]) * scale;
  d[t] -= scale;
}

}  // namespace

template <typename T>
void xent_forward(T* losses, const T* logits, const int32_t* targets, int64_t N, int64_t V,
                  T* lse) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) {
      losses[n] = 0;
      if (lse != nullptr) lse[2 * n] = lse[2 * n + 1] = 0;
      continue;
    }
    const T* x = logits + n * V;  // [V]
    const std::array<T, 2> z = row_logsumexp(x, V);
    // (m − x_t) first: both are large and close for confident predictions, the log term is small.
    losses[n] = (z[0] - x[targets[n]]) + z[1];
    if (lse != nullptr) lse[2 * n] = z[0], lse[2 * n + 1] = z[1];
  }
}

template <typename T>
void xent_backward(T* dlogits, const T* logits, const int32_t* targets, T scale, int64_t N,
                   int64_t V, const T* lse) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* d = dlogits + n * V;       // [V]
    const T* x = logits + n * V;  // [V], may be d itself: each value is read before it is written
    const int32_t t = targets[n];
    if (t < 0) {
      std::fill(d, d + V, T(0));
      continue;
    }
    const std::array<T, 2> z =
        lse != nullptr ? std::array<T, 2>{lse[2 * n], lse[2 * n + 1]} : row_logsumexp(x, V);
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      row_gradient16(x, z, t, scale, V, [d](int64_t j, __m512 v, __mmask16 mask) {
        _mm512_mask_storeu_ps(d + j, mask, v);
      });
      continue;
    }
#endif
    row_gradient(x, z, t, scale, V, d);
  }
}

namespace {

// The rows of a bf16 gradient: for each row with a target, z = row_lse(n, x) (read, or computed
// there), then to_bf16 of its gradient with `scale`; an ignored row is zeros, after ignored(n).
template <typename RowLse, typename Ignored>
void bf16_gradient_rows(uint16_t* dlogits16, const float* logits, const int32_t* targets,
                        float scale, int64_t N, int64_t V, RowLse&& row_lse, Ignored&& ignored) {
#pragma omp parallel
  {
#if !defined(__AVX512F__)
    std::vector<float> row(static_cast<std::size_t>(V));  // this thread's fp32 row
#endif
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      uint16_t* d = dlogits16 + n * V;  // [V]
      const float* x = logits + n * V;  // [V]
      const int32_t t = targets[n];
      if (t < 0) {
        ignored(n);
        std::fill(d, d + V, uint16_t{0});
        continue;
      }
      const std::array<float, 2> z = row_lse(n, x);
#if defined(__AVX512F__)
      row_gradient16(x, z, t, scale, V, [d](int64_t j, __m512 v, __mmask16 mask) {
        _mm512_mask_cvtepi32_storeu_epi16(d + j, mask, detail::to_bf16_16(v));
      });
#else
      row_gradient(x, z, t, scale, V, row.data());
      for (int64_t j = 0; j < V; ++j) d[j] = to_bf16(row[j]);
#endif
    }
  }
}

}  // namespace

void xent_backward_bf16(uint16_t* dlogits16, const float* logits, const int32_t* targets,
                        float scale, int64_t N, int64_t V, const float* lse) {
  bf16_gradient_rows(
      dlogits16, logits, targets, scale, N, V,
      [lse](int64_t n, const float*) {
        return std::array<float, 2>{lse[2 * n], lse[2 * n + 1]};
      },
      [](int64_t) {});
}

void xent_forward_backward_bf16(float* losses, uint16_t* dlogits16, const float* logits,
                                const int32_t* targets, int64_t N, int64_t V, float* lse) {
  // xent_forward's row, then the gradient from the row still in cache.
  bf16_gradient_rows(
      dlogits16, logits, targets, 1.f, N, V,
      [&](int64_t n, const float* x) {
        const std::array<float, 2> z = row_logsumexp(x, V);
        losses[n] = (z[0] - x[targets[n]]) + z[1];
        lse[2 * n] = z[0], lse[2 * n + 1] = z[1];
        return z;
      },
      [&](int64_t n) { losses[n] = 0, lse[2 * n] = lse[2 * n + 1] = 0; });
}

void lm_head_xent_bf16(float* losses, uint16_t* dlogits16, float* lse, float* logits,
                       float* scratch, const float* inp, const float* weight,
                       const int32_t* targets, int64_t N, int64_t D, int64_t V,
                       const Bf16Gemm& bf16, int64_t block_rows) {
  if (block_rows >= N) {  // one block: the GEMM and the pass use the threads themselves
    float* z = logits != nullptr ? logits : scratch;
    bf16.gemm(false, true, N, V, D, 1.f, inp, D, weight, D, 0.f, z, V);
    xent_forward_backward_bf16(losses, dlogits16, z, targets, N, V, lse);
    return;
  }
  const int64_t blocks = (N + block_rows - 1) / block_rows;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * block_rows, rows = std::min(block_rows, N - r0);
    float* z = logits != nullptr ? logits + r0 * V
                                 : scratch + omp_get_thread_num() * block_rows * V;  // [rows, V]
    bf16.gemm(false, true, rows, V, D, 1.f, inp + r0 * D, D, weight, D, 0.f, z, V);
    xent_forward_backward_bf16(losses + r0, dlogits16 + r0 * V, z, targets + r0, rows, V,
                               lse + 2 * r0);
  }
}

template void xent_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t, float*);
template void xent_forward<double>(double*, const double*, const int32_t*, int64_t, int64_t,
                                   double*);
template void xent_backward<float>(float*, const float*, const int32_t*, float, int64_t, int64_t,
                                   const float*);
template void xent_backward<double>(double*, const double*, const int32_t*, double, int64_t,
                                    int64_t, const double*);

}  // namespace sy
