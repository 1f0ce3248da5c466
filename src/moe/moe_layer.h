// The MoE feed-forward block as named stages: router → dispatch (gather rows by expert) →
// experts (one GEMM per expert on its contiguous rows) → combine (token-major, fixed slot order).
//
//   y[t] = Σ_{rows r of t} gate[r] · expert_{e(r)}(h[t])  +  Σ_j shared_j(h[t])
//   expert(x) = down(silu(gate_proj x) ⊙ up_proj x)
//
// Which router runs is the caller's (switchyard/router.h): the layer reads only its RoutingPlan.
// Dimension letters: N tokens, D model, E experts, K top-k, F expert hidden, Fs shared hidden,
// M = the most rows a call can have (N·K, or N·E for Expert Choice).
// Weights are views into the model's parameter block (not owned). MoeActivations is owned by the
// caller, one per layer, sized once; moe_forward fills it and moe_backward reads it. Not
// thread-safe per activation set; each stage parallelises internally (call from outside a
// parallel region). Integer outputs (loads, the plan) never depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "core/buffer.h"
#include "core/exchange.h"
#include "switchyard/router.h"
#include "switchyard/routing.h"

namespace sy {

class Bf16Gemm;  // core/gemm_bf16.h

struct MoeDims {
  int64_t n_max = 0;  // N the buffers are sized for
  int64_t d = 0, e = 0, k = 0, f = 0;
  int64_t n_shared = 0, f_shared = 0;
  // The most experts one token can get (Router::max_experts_per_token); 0 = k.
  int64_t max_per_token = 0;
  // Expert parallelism: this rank is rank ep_rank of a group of ep ranks, and holds the experts
  // [ep_rank·E/ep, (ep_rank+1)·E/ep) — the only ones in MoeWeights/MoeGrads. ep = 1: all.
  int64_t ep = 1, ep_rank = 0;
  // The routed experts' GEMMs run in bf16 (MoeWeights::bf16, required) and the activations
  // they read — their input rows, SwiGLU outputs and output gradients — are written in bf16
  // only, by the passes that make them (dispatch, SwiGLU, combine backward): half the bytes and
  // no rounding pass per GEMM, the same results (kernels.h swiglu_ffn_forward_bf16). Without it,
  // bf16 GEMMs round fp32 activations as they read them.
  bool bf16_activations = false;
  int64_t max_rows() const { return n_max * (max_per_token > 0 ? max_per_token : k); }
  int64_t e_local() const { return e / ep; }
  int64_t e_first() const { return ep_rank * e_local(); }
  // Rows this rank's experts can receive in one call: every rank's every row, at worst.
  int64_t max_local_rows() const { return ep * max_rows(); }
};

template <typename T>
struct MoeWeights {
  const T* router = nullptr;   // [E, D]
  const T* gate_up = nullptr;  // [E_local, 2F, D]: per expert gate_proj rows then up_proj rows
  const T* down = nullptr;     // [E_local, D, F]
  const T* shared_gate_up = nullptr;  // [n_shared, 2Fs, D]
  const T* shared_down = nullptr;     // [n_shared, D, Fs]
  // The expert GEMMs (routed and shared) in bf16 with this copy of the weights (null: in T). The
  // router's GEMMs stay in T: routing never changes with precision.
  const Bf16Gemm* bf16 = nullptr;
};

template <typename T>
struct MoeGrads {  // accumulated into (+=), but see experts_zero
  T* router = nullptr;
  T* gate_up = nullptr;
  T* down = nullptr;
  T* shared_gate_up = nullptr;
  T* shared_down = nullptr;
  // If set, [E_local]: each local routed expert's Σ g² over its gate|up and down gradients,
  // written by moe_backward right after the expert's GEMMs (while its gradient is in cache; an
  // expert without rows gets Σ of what its gradient holds, untouched). Equal to the sum over its
  // final gradient only when nothing else adds to it (Transformer: a backward from zero).
  double* expert_sum_sq = nullptr;
  // The routed experts' gradients (gate_up, down) are zero on entry — nothing added since they
  // were zeroed: their weight-gradient GEMMs then write instead of add (the same values, without
  // reading the cold gradients; kernels.h linear_backward).
  bool experts_zero = false;
};

// Expert parallelism as measured on this rank for one micro-batch (the forward and its backward;
// zero without it). Exchange time is spent in the all-to-alls and their copies, and includes
// waiting there for the slowest rank of the group. (The experts' own time: MoeTimes.)
struct ExchangeStats {
  int64_t rows = 0;        // rows (token-expert pairs) this rank's experts ran (forward)
  int64_t tokens = 0;      // token rows received for them: one per (token, source rank)
  int64_t bytes_sent = 0;  // to the other ranks of the group, forward and backward
  double exchange_s = 0;   // wall seconds in the exchanges
};

// Where one layer's time goes on this rank (wall seconds), its forward and its backward: the
// router (its GEMMs, routing and router backward), the routed experts' GEMM chains, the shared
// experts, and the whole layer (the rest is dispatch, combine and, with expert parallelism, the
// exchange).
struct MoeTimes {
  double router_s = 0, experts_s = 0, shared_s = 0, total_s = 0;
};

// What one layer's forward keeps for its backward.
//
// Under expert parallelism a token travels once to each rank that holds any of its experts (not
// once per expert), with its gates; that rank expands it to one row per local expert, runs them,
// and sends back one row per token: Σ gate·expert(x) over its experts (pre-combined). Backward
// mirrors it: one output-gradient row per (token, rank) in, the gate gradients and one
// pre-combined input-gradient row out.
template <typename T>
struct MoeActivations {
  void resize(const MoeDims& dims);
  RoutingPlan<T> plan;  // the router's plan of the last forward
  Buffer<T> logits;     // [N, E] router logits z
  Buffer<T> xs;         // [M, D]  inputs gathered in expert order (ep = 1; bf16: x16)
  // The expert outputs, in the order this rank's experts ran them: [M, D] in the plan's expert
  // order when ep = 1; with expert parallelism [Ml, D], the Ml rows received from the group.
  Buffer<T> ys;
  Buffer<T> hu;   // [Ml, 2F] gate|up pre-activations
  Buffer<T> act;  // [Ml, F]  silu(gate)·up (not with bf16_activations)
  // With MoeDims::bf16_activations, instead of xs or xl, and act: in bf16.
  Buffer<uint16_t> x16;                // [Ml, D]
  Buffer<uint16_t> act16;              // [Ml, F]
  std::vector<int64_t> local_offsets;  // [E_local+1] rows of local expert j
  // Expert parallelism (ep > 1). Ml depends on the routing: the [Ml] buffers start at M rows and
  // grow when a call receives more (at most ep·M, max_local_rows) — the one allocation a forward
  // or backward can make, under imbalance.
  // As the sender: counts per rank i, (E_local + 1) each: the rows for each of its local experts,
  // then the tokens that go there; those tokens rank by rank, ascending within a rank.
  std::vector<int64_t> send_counts;  // [ep·(E_local+1)]
  std::vector<int32_t> sent_tokens;  // [Us] Us = Σ_i tokens to rank i ≤ ep·N
  // As the receiver: the same counts from each rank, and for each local row (local expert by
  // local expert, then source rank, then the source's order) the received token row it expands
  // (recv_row, into the received tokens rank by rank), its place among the received pairs
  // (recv_pair, rank by rank in the source's expert order) and its gate.
  std::vector<int64_t> recv_counts;        // [ep·(E_local+1)]
  Buffer<T> xl;                            // [Ml, D] the rows this rank's experts ran (bf16: x16)
  std::vector<int64_t> recv_row;           // [Ml]
  std::vector<int64_t> recv_pair;          // [Ml]
  Buffer<T> gate_local;                    // [Ml]
  ExchangeStats exchange;                  // of the last forward (reset) and its backward
  MoeTimes forward_times, backward_times;  // of the last forward and backward (each overwritten)
  Buffer<T> shared_hu;                     // [n_shared, N, 2Fs]
  Buffer<T> shared_act;                    // [n_shared, N, Fs]
};

// The expert-parallel group of a model and the buffers of one exchange, shared by all layers
// (used one layer at a time). group null or of size 1: no expert parallelism.
template <typename T>
struct ExpertParallel {
  void resize(const MoeDims& dims);
  Exchange* group = nullptr;            // borrowed
  Buffer<T> sent;                       // [Us, D] token rows to the group, and their results back
  Buffer<T> recv;                       // [Ur, D] token rows from the group, and the results to it
  Buffer<T> pairs;                      // [Ml] the received pairs' gates, then gate gradients
  std::vector<int64_t> slot_of_row;     // [M] a plan row's token: its index in its rank's list
  std::vector<int64_t> slots;           // [Ml] the received pairs' token indices
  std::vector<int64_t> sc, so, rc, ro;  // [ep] token rows: elements and offsets, alltoallv
  std::vector<int64_t> psc, pso, prc, pro;  // [ep] pairs: counts and offsets, alltoallv
};

// Backward scratch, shared by all layers (used one layer at a time).
template <typename T>
struct MoeScratch {
  void resize(const MoeDims& dims);
  Buffer<T> dys, dxs;                 // [M, D] rows in expert order (ep = 1; dys, bf16: dy16)
  Buffer<T> dyl, dxl;                 // [Ml, D] this rank's experts' rows (ep > 1; dyl, bf16: dy16)
  Buffer<uint16_t> dy16;              // [Ml, D] with bf16_activations: dys or dyl in bf16
  Buffer<T> dact, dhu;                // [Ml, F], [Ml, 2F] (dhu: not with bf16_activations)
  Buffer<T> dgate_row;                // [rows] per row
  Buffer<T> dz;                       // [N, E]
  Buffer<T> dshared_act, dshared_hu;  // [N, Fs], [N, 2Fs]
};

// y[N,D] = MoE(h[N,D]) (overwritten), routed by `router` (this layer's) with `call`. Returns the
// routing statistics of this call. LBL terms are added by the caller between forward and
// backward (on router.slots()). With expert parallelism (dims.ep > 1, ep->group of that size) a
// collective of the group: each rank routes its own tokens, sends each token once to every rank
// holding one of its experts and gets one combined row back; every rank of the group must call
// it together.
template <typename T>
RoutingStats moe_forward(const MoeDims& dims, const MoeWeights<T>& w, Router<T>& router,
                         const RouteCall<T>& call, const T* h, int64_t n, MoeActivations<T>& a,
                         T* y, ExpertParallel<T>* ep = nullptr);

// dh[N,D] += ∂loss/∂h; parameter gradients accumulate into g. dy[N,D] is the gradient of the
// block output; aux_scale multiplies the auxiliary losses' gradients (1/micro-batches per step).
// `router` is the one that routed the last moe_forward on `a`.
template <typename T>
void moe_backward(const MoeDims& dims, const MoeWeights<T>& w, const MoeGrads<T>& g,
                  Router<T>& router, const T* h, int64_t n, MoeActivations<T>& a, MoeScratch<T>& s,
                  const T* dy, T aux_scale, T* dh, ExpertParallel<T>* ep = nullptr);

}  // namespace sy
