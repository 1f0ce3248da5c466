// The model's shape and initialisation: what [model] of a run's config holds (docs/config.md).
//
// Defined here, beside the model, so that the model never sees the run configuration: the run
// config (config/run_config.h) aggregates this struct, and train/ builds every other option the
// model and routing take from the run config (train/run_options.h). Values only.
#pragma once

#include <cstdint>

namespace sy {

struct ModelConfig {
  int64_t vocab_size = 8192;     // V
  int64_t d_model = 256;         // D
  int64_t n_layers = 4;          // L
  int64_t n_heads = 4;           // H (D % H == 0, head dim even)
  int64_t seq_len = 256;         // S, tokens per sequence (the model sees S, predicts S)
  int64_t n_experts = 16;        // E routed experts per MoE layer
  int64_t top_k = 4;             // K
  int64_t d_expert = 256;        // F, routed expert hidden size
  int64_t n_shared_experts = 0;  // always-on, ungated experts per MoE layer
  int64_t d_shared = 0;          // their hidden size; 0 = d_expert
  int64_t n_dense_layers = 0;    // the first N blocks use a dense SwiGLU FFN instead of MoE
  int64_t d_dense = 1024;        // dense FFN hidden size
  double rope_theta = 10000.0;
  double norm_eps = 1e-6;
  double init_std = 0.02;
};

}  // namespace sy
