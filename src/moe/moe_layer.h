// The MoE feed-forward block as named stages: router → dispatch (gather rows by expert) →
// experts (one GEMM per expert on its contiguous rows) → combine (token-major, fixed slot order).
//
//   y[t] = Σ_{k: kept} gate[t,k] · expert_{e(t,k)}(h[t])  +  Σ_j shared_j(h[t])
//   expert(x) = down(silu(gate_proj x) ⊙ up_proj x)
//
// Dimension letters: N tokens, D model, E experts, K top-k, F expert hidden, Fs shared hidden,
// M = N·K token-slots (rows after dispatch ≤ M).
// Weights are views into the model's parameter block (not owned). MoeActivations is owned by the
// caller, one per layer, sized once; moe_forward fills it and moe_backward reads it. Not
// thread-safe per activation set; each stage parallelises internally (call from outside a
// parallel region). Integer outputs (loads, the plan) never depend on the thread count.
#pragma once

#include <cstdint>

#include "core/buffer.h"
#include "routing/expert_choice.h"
#include "routing/selector.h"
#include "switchyard/routing.h"

namespace sy {

struct MoeDims {
  int64_t n_max = 0;  // N the buffers are sized for
  int64_t d = 0, e = 0, k = 0, f = 0;
  int64_t n_shared = 0, f_shared = 0;
  bool expert_choice = false;  // rows up to N·E (a token may go to every expert), not N·K
  int64_t max_rows() const { return n_max * (expert_choice ? e : k); }
};

template <typename T>
struct MoeWeights {
  const T* router = nullptr;          // [E, D]
  const T* gate_up = nullptr;         // [E, 2F, D]: per expert gate_proj rows then up_proj rows
  const T* down = nullptr;            // [E, D, F]
  const T* shared_gate_up = nullptr;  // [n_shared, 2Fs, D]
  const T* shared_down = nullptr;     // [n_shared, D, Fs]
};

template <typename T>
struct MoeGrads {  // accumulated into (+=)
  T* router = nullptr;
  T* gate_up = nullptr;
  T* down = nullptr;
  T* shared_gate_up = nullptr;
  T* shared_down = nullptr;
};

// What one layer's forward keeps for its backward.
template <typename T>
struct MoeActivations {
  void resize(const MoeDims& dims, const SelectorOptions& sel = {}, const TopKOptions& opt = {},
              const ExpertChoiceOptions* ec_opt = nullptr);
  Selector<T> selector;       // the selection stage's scratch (router families other than top-K)
  ExpertChoiceBuffers<T> ec;  // Expert Choice's plan (when MoeDims::expert_choice)
  // The plan as rows, whatever the router: rows of expert i are [expert_offsets[i],
  // expert_offsets[i+1]); token_rows[token_offsets[t] .. token_offsets[t+1]) are token t's rows in
  // expert order (the fixed combine order).
  int64_t rows = 0;
  std::vector<int64_t> expert_offsets;  // [E+1]
  std::vector<int32_t> token_of_row;    // [rows]
  std::vector<T> gate_of_row;           // [rows]
  std::vector<int64_t> token_offsets;   // [N+1]
  std::vector<int32_t> token_rows;      // [rows]
  Buffer<T> logits;                     // [N, E] router logits z
  RoutingBuffers<T> route;
  Buffer<T> xs;          // [M, D]  inputs gathered in expert order
  Buffer<T> hu;          // [M, 2F] gate|up pre-activations
  Buffer<T> act;         // [M, F]  silu(gate)·up
  Buffer<T> ys;          // [M, D]  expert outputs, expert order
  Buffer<T> shared_hu;   // [n_shared, N, 2Fs]
  Buffer<T> shared_act;  // [n_shared, N, Fs]
};

// Backward scratch, shared by all layers (used one layer at a time).
template <typename T>
struct MoeScratch {
  void resize(const MoeDims& dims);
  Buffer<T> dys, dact, dhu, dxs;      // [M, D], [M, F], [M, 2F], [M, D]
  Buffer<T> dgate;                    // [N, K] per slot (top-K's backward)
  Buffer<T> dgate_row;                // [rows] per row
  Buffer<T> dz;                       // [N, E]
  Buffer<T> dshared_act, dshared_hu;  // [N, Fs], [N, 2Fs]
};

// How to choose experts in one call (see routing/selector.h); the default is plain top-K.
template <typename T>
struct RouteInputs {
  const SelectorOptions* selector = nullptr;  // null: top-K
  const int32_t* token_ids = nullptr;         // [N] (hash routing)
  T* bip_dual = nullptr;                      // [E] the layer's BIP prices q (in/out)
  const T* bias = nullptr;                    // [E] the loss-free balancer's selection bias
  bool update = true;                         // false: evaluation, no state changes
  // Expert Choice (when MoeDims::expert_choice): options, the layer's thresholds θ[E] (in/out),
  // causal routing by θ (evaluation), and the EMA decay of the θ update (0 = copy).
  const ExpertChoiceOptions* ec = nullptr;
  T* ec_theta = nullptr;
  bool ec_causal = false;
  double ec_decay = 0.99;
  const int32_t* ec_perm = nullptr;  // [N] routing-group order (null = token order)
  // Sinkhorn: the layer's causal-evaluation potentials b̄[E] (in/out: an EMA of the training
  // calls' column potentials with decay sinkhorn_decay, 0 = copy), and routing by them alone
  // (evaluation; Selector::select_sinkhorn_causal).
  T* sinkhorn_b = nullptr;
  bool sinkhorn_causal = false;
  double sinkhorn_decay = 0.99;
};

// y[N,D] = MoE(h[N,D]) (overwritten). Returns the routing statistics of this call. LBL terms are
// added by the caller between forward and backward (lbl_begin / lbl_add_term on a.route).
template <typename T>
RoutingStats moe_forward(const TopKOptions& opt, const MoeDims& dims, const MoeWeights<T>& w,
                         const T* h, int64_t n, MoeActivations<T>& a, T* y,
                         const RouteInputs<T>& ri = {});

// dh[N,D] += ∂loss/∂h; parameter gradients accumulate into g. dy[N,D] is the gradient of the
// block output; aux_scale multiplies the auxiliary losses' gradients (1/micro-batches per step).
template <typename T>
void moe_backward(const TopKOptions& opt, const MoeDims& dims, const MoeWeights<T>& w,
                  const MoeGrads<T>& g, const T* h, int64_t n, MoeActivations<T>& a,
                  MoeScratch<T>& s, const T* dy, T aux_scale, T* dh,
                  const ExpertChoiceOptions* ec_opt = nullptr);

}  // namespace sy
