// One optimizer step, as train() runs it and bench/train_step_bench times it (docs/training.md):
//
//   read      rank r's micro-batch m of the step is the stream's micro-batch m·R + r
//   pre-pass  router statistics of the whole step before any backward, if the balancer needs
//             them (global-exact and shuffle scopes)
//   forward / backward over the step's M micro-batches, gradients accumulated
//   reduce    gradients and loss sums over the ranks (a routed expert's gradient, under expert
//             parallelism, over the ranks that hold that expert)
//   check     loss and gradient norm finite, else an error before the weights change
//   update    clipping, AdamW, the balancer's end-of-step update from the step's loads
//
// Every object is borrowed from the caller for the call. Not thread-safe; uses the OpenMP pool.
#pragma once

#include <cstdint>
#include <string>

#include "config/run_config.h"
#include "core/buffer.h"
#include "data/batch_source.h"
#include "dist/communicator.h"
#include "model/transformer.h"
#include "train/metrics.h"
#include "train/optimizer.h"

namespace sy {

struct StepContext {
  Transformer<float>* model = nullptr;
  AdamW* opt = nullptr;
  BatchSource* source = nullptr;  // positioned at the step's first sequence; left after its last
  Communicator* comm = nullptr;
  // Expert parallelism (parallel.ep > 1): the model's expert-parallel group, and the ranks that
  // hold the same experts (whose expert gradients are summed). Both null without it.
  Communicator* ep_group = nullptr;
  Communicator* expert_replicas = nullptr;
  const TrainConfig* train = nullptr;  // micro_batch, grad_accum, schedule, clipping, AdamW
  StepMetrics* metrics = nullptr;      // reset, then filled with the step's routing (all ranks)
  Buffer<int32_t>* tokens = nullptr;   // [micro_batch·(seq_len+1)] scratch
  Buffer<int32_t>* domains = nullptr;  // [micro_batch] scratch
};

// Wall seconds of the step's stages on this rank (reduce includes waiting for the other ranks).
struct StepTimes {
  double read = 0, prepass = 0, forward = 0, backward = 0, reduce = 0, update = 0;
};

struct StepResult {
  double loss = 0;  // ce + lbl + z_loss (summed before dividing), means over the global batch
  double ce = 0;    // mean cross-entropy per token
  double lbl = 0;   // Σ over MoE layers of α·LBL, mean over the global batch's micro-batches
  double z_loss = 0;
  double lr = 0;
  double grad_norm = 0;   // before clipping
  double clip_scale = 1;  // the factor the gradients were scaled by
  int64_t tokens = 0;     // tokens of the global batch
  StepTimes times;
};

// Trains step `step` (0-based; the schedule's lr is lr_at(train, step)). A loss or gradient
// norm that is not finite throws sy::Error before the optimizer update ("step <step+1>: ...
// training diverged; the weights were not updated by this step; " + on_divergence).
StepResult train_step(const StepContext& c, int64_t step, const std::string& on_divergence);

}  // namespace sy
