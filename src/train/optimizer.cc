#include "train/optimizer.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

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
    const int tid = omp_get_thread_num(), tn = omp_get_num_threads();
    const int64_t chunk = (n + tn - 1) / tn;
    const int64_t lo = std::min(n, tid * chunk), hi = std::min(n, lo + chunk);
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(g[i]) * g[i];
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

void AdamW::step(float* params, const float* grads, double lr, double grad_scale,
                 const TrainConfig& c) {
  ++t_;
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t_));
  const float b1 = static_cast<float>(c.beta1), b2 = static_cast<float>(c.beta2);
  const float step_size = static_cast<float>(lr / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float eps = static_cast<float>(c.adam_eps);
  const float gs = static_cast<float>(grad_scale);
  float* m = m_.data();
  float* v = v_.data();
  for (const ParamInfo& p : table_) {
    const float decay = p.decay ? static_cast<float>(lr * c.weight_decay) : 0.f;
    const int64_t lo = p.offset, hi = p.offset + p.numel;
#pragma omp parallel for schedule(static) if (p.numel > 16384)
    for (int64_t i = lo; i < hi; ++i) {
      const float g = grads[i] * gs;
      m[i] = b1 * m[i] + (1.f - b1) * g;
      v[i] = b2 * v[i] + (1.f - b2) * g * g;
      const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + eps;
      params[i] -= step_size * m[i] / denom + decay * params[i];
    }
  }
}

}  // namespace sy
