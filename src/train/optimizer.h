// AdamW with decoupled weight decay, the learning-rate schedule, and global-norm clipping.
//
// The optimizer owns its moments (two Buffers the size of the parameter block) and walks the
// parameter table, so weight decay is applied per tensor (never to norm weights). Its step()
// parallelises internally; not thread-safe otherwise. Reductions (the gradient norm) use a fixed
// per-thread partition and summation order, so a run and its resume agree bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "config/run_config.h"
#include "core/buffer.h"
#include "model/transformer.h"

namespace sy {

// Linear warmup from 0 to lr over warmup_steps, then cosine to lr·min_lr_ratio at `steps`.
// step is 0-based (the step about to be taken).
double lr_at(const TrainConfig& c, int64_t step);

// sqrt(Σ g²) over n elements, in double, deterministic for a given thread count.
double global_grad_norm(const float* g, int64_t n);
// Σ g[i]² in double (the same order for a given thread count).
double sum_of_squares(const float* g, int64_t n);

class AdamW {
 public:
  AdamW(std::vector<ParamInfo> table, int64_t n_params);

  // One update: g ← g·grad_scale (clipping), then AdamW with bias correction:
  //   m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;  p −= lr·(m̂/(√v̂ + ε) + wd·p)  (wd only where
  //   the table says decay).
  // params_bf16 (optional, the model's bf16 copy under precision bf16): also receives every
  // updated weight rounded to bf16, in the same pass. zero_grads: each gradient is zeroed once
  // read, in the same pass (the next step accumulates into zeros without a pass of its own).
  void step(float* params, float* grads, double lr, double grad_scale, const TrainConfig& c,
            uint16_t* params_bf16 = nullptr, bool zero_grads = false);

  int64_t steps_taken() const { return t_; }
  void set_steps_taken(int64_t t) { t_ = t; }
  float* exp_avg() { return m_.data(); }
  float* exp_avg_sq() { return v_.data(); }
  const float* exp_avg() const { return m_.data(); }
  const float* exp_avg_sq() const { return v_.data(); }

 private:
  std::vector<ParamInfo> table_;
  Buffer<float> m_, v_;
  int64_t t_ = 0;
};

}  // namespace sy
