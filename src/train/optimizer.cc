#include "train/optimizer.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "core/gemm_bf16.h"
#include "core/sum_of_squares.h"

namespace sy {

double lr_at(const TrainConfig& c, int64_t step) {
  if (c.warmup_steps > 0 && step < c.warmup_steps)
    return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  const double min_lr = c.lr * c.min_lr_ratio;
  const int64_t decay_steps = c.steps - c.warmup_steps;
  if (decay_steps <= 0) return c.lr;
  double progress = static_cast<double>(step - c.warmup_steps) / static_cast<double>(decay_steps);
  progress = std::min(1.0, std::max(0.0, progress));
  return min_lr + (c.lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double sum_of_squares(const float* g, int64_t n) {
  constexpr int kMaxThreads = 256;
  const int nt = std::min(omp_get_max_threads(), kMaxThreads);
  std::array<double, kMaxThreads * 8> part{};  // one cache line per thread: no false sharing
#pragma omp parallel num_threads(nt)
  {
    // Each thread's contiguous share, as several streams (core/sum_of_squares.h: MEDIUM's 218 M
    // gradients 58 -> 35 ms against one stream); the shares are added in thread order, so the
    // result is the same for a given thread count.
    const int tid = omp_get_thread_num(), tn = omp_get_num_threads();
    const int64_t chunk = (n + tn - 1) / tn;
    const int64_t lo = std::min(n, tid * chunk), hi = std::min(n, lo + chunk);
    const double s = sum_of_squares_serial(g + lo, hi - lo);
    part[tid * 8] = s;
  }
  double total = 0;
  for (int t = 0; t < nt; ++t) total += part[t * 8];
  return total;
}

double global_grad_norm(const float* g, int64_t n) { return std::sqrt(sum_of_squares(g, n)); }

AdamW::AdamW(std::vector<ParamInfo> table, int64_t n_params) : table_(std::move(table)) {
  m_.reset(n_params);
  v_.reset(n_params);
}

namespace {
// AdamW on elements [lo, hi) of one tensor; with kBf16, each new weight's bf16 rounding too;
// with kZero, each gradient zeroed once read.
template <bool kBf16, bool kZero>
void adamw_span(float* params, float* grads, float* m, float* v, uint16_t* p16, int64_t lo,
                int64_t hi, float b1, float b2, float gs, float step_size, float inv_sqrt_bc2,
                float eps, float decay) {
  for (int64_t i = lo; i < hi; ++i) {
    const float g = grads[i] * gs;
    if constexpr (kZero) grads[i] = 0.f;
    m[i] = b1 * m[i] + (1.f - b1) * g;
    v[i] = b2 * v[i] + (1.f - b2) * g * g;
    const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + eps;
    params[i] -= step_size * m[i] / denom + decay * params[i];
    if constexpr (kBf16) p16[i] = to_bf16(params[i]);
  }
}

// adamw_span with its two options as template arguments (the loop stays branch-free).
template <typename... Args>
void adamw_span_as(bool bf16, bool zero, Args... args) {
  if (bf16 && zero) return adamw_span<true, true>(args...);
  if (bf16) return adamw_span<true, false>(args...);
  if (zero) return adamw_span<false, true>(args...);
  adamw_span<false, false>(args...);
}
}  // namespace

void AdamW::step(float* params, float* grads, double lr, double grad_scale, const TrainConfig& c,
                 uint16_t* params_bf16, bool zero_grads) {
  ++t_;
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t_));
  const float b1 = static_cast<float>(c.beta1), b2 = static_cast<float>(c.beta2);
  const float step_size = static_cast<float>(lr / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float eps = static_cast<float>(c.adam_eps);
  const float gs = static_cast<float>(grad_scale);
  const float wd = static_cast<float>(lr * c.weight_decay);
  int64_t end = 0;
  for (const ParamInfo& p : table_) end = std::max(end, p.offset + p.numel);
  // One memory-bound pass over the whole block: each thread takes one contiguous share of it (a
  // multiple of 64 elements) and updates the parts of the tensors that fall in it, each with its
  // own decay — no fork and join per tensor (MEDIUM has 1,600 tensors).
  float* m = m_.data();
  float* v = v_.data();
#pragma omp parallel if (end > 16384)
  {
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t share = (end + nt * 64 - 1) / (nt * 64) * 64;
    const int64_t c0 = std::min(end, tid * share), c1 = std::min(end, c0 + share);
    for (const ParamInfo& p : table_) {
      const int64_t lo = std::max(p.offset, c0), hi = std::min(p.offset + p.numel, c1);
      if (lo >= hi) continue;
      const float decay = p.decay ? wd : 0.f;
      adamw_span_as(params_bf16 != nullptr, zero_grads, params, grads, m, v, params_bf16, lo, hi,
                    b1, b2, gs, step_size, inv_sqrt_bc2, eps, decay);
    }
  }
}

}  // namespace sy
