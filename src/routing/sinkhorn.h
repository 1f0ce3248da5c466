// Sinkhorn-balanced token-choice routing, S-BASE (Clark et al. 2022, "Unified Scaling Laws for
// Routed Language Models", arXiv 2202.01169): balance the routing matrix with Sinkhorn's
// algorithm, select top-K on the balanced matrix, gate with the raw scores. ALGORITHMS.md §6.
//
// Dimension letters: N tokens, E routed experts, K experts per token.
//
// Math. z[N,E] router logits; p[t,i] = softmax_i(z[t,:]) (the raw scores).
//   Balanced matrix Π[t,i] = exp(z[t,i] + a_t + b_i) with uniform marginals
//     Σ_i Π[t,i] = 1 (every token one unit of mass),  Σ_t Π[t,i] = N/E (every expert the same).
//   Sinkhorn, b = 0 initially (no warm start: each call is self-contained); one iteration is a
//   row step then a column step:
//     a_t ← −logsumexp_i (z[t,i] + b_i),        b_i ← log(N/E) − logsumexp_t (z[t,i] + a_t)
//   computed in scaling form: with p = softmax(z), α_t = e^{a_t + lse_t}, β_i = e^{b_i},
//     α_t ← 1 / Σ_i p[t,i]·β_i,                 β_i ← (N/E) / Σ_t p[t,i]·α_t
//   (the same iterates, no exp per element; sums in double). When a column sum leaves the
//   double range (an expert whose scores all underflow) the call falls back to the log domain.
//   After `iterations` of them a final row step makes every row sum exactly 1; the column
//   marginals' residual max_i |Σ_t Π[t,i]·E/N − 1| is returned (→ 0 as iterations grow).
//   Selection: S_t = the K largest Π[t,:] = the K largest z[t,i] + b_i (a_t does not change a
//   row's order); ties: the lower expert index. iterations = 0 gives plain top-K of p.
//   Gates from the raw scores: kRaw g[t,k] = p[t,S_t[k]] (default, the S-BASE choice);
//   kRenorm g[t,k] = p[t,S_t[k]] / Σ_{l∈S_t} p[t,l] (K = 1 with kRenorm is refused: constant gate).
//   Gradient: none through Π (it only decides which experts, and is piecewise constant in z as
//   far as the selection is concerned); the gates carry the gradient to z through the softmax.
//
// Plan: like topk_route_forward's, dropless: slots t·K + k; rows grouped by expert, token order
// within an expert.
//
// Ownership: caller-owned SinkhornBuffers sized once by resize(); nothing allocates per call.
// Threading: OpenMP inside; call from outside a parallel region; distinct buffers may be used
// concurrently. Potentials are accumulated in double; results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "switchyard/routing.h"

namespace sy {

struct SinkhornOptions {
  int64_t n_experts = 16;  // E
  int64_t top_k = 1;       // K
  int iterations = 8;      // Sinkhorn iterations (row step + column step); 0 = plain top-K
  GateFn gate = GateFn::kRaw;
};

// Throws sy::Error unless 1 ≤ K ≤ E, iterations ≥ 0, and not (K = 1 and kRenorm).
void sinkhorn_validate(const SinkhornOptions& o);

template <typename T>
struct SinkhornBuffers {
  // Validates o; sized for up to n_max tokens.
  void resize(const SinkhornOptions& o, int64_t n_max);

  int64_t n_max = 0, e = 0, k = 0;   // sizes made for
  int64_t n = 0;                     // tokens of the last call
  std::vector<T> scores;             // [N,E] p = softmax(z)
  std::vector<double> row_pot;       // [N] a_t (after the final row step)
  std::vector<double> col_pot;       // [E] b_i
  std::vector<int32_t> expert;       // [N,K] selected experts, descending Π
  std::vector<T> gate;               // [N,K] gate per slot
  std::vector<int64_t> offsets;      // [E+1] rows of expert i: [offsets[i], offsets[i+1])
  std::vector<int32_t> slot_of_row;  // [N·K] slot t·K + k of each expert-sorted row
  std::vector<int64_t> load;         // [E] assignments per expert
  std::vector<T> dscores;            // [N,E] scratch for the backward pass
  std::vector<T> scores_blocked;     // [⌈N/16⌉, E, 16] p by blocks of 16 tokens, an expert's
                                     // 16 scores contiguous (float on AVX-512; else unused)
  std::vector<double> col_part;      // [⌈N/256⌉, E] per-block column sums (fixed blocks, so the
                                     // sums do not depend on the thread count)
};

struct SinkhornStats {
  double max_col_error = 0;   // max_i |Σ_t Π[t,i]·E/N − 1| of the final balanced matrix
  double topk_score_sum = 0;  // Σ_t Σ_{i∈S_t} p[t,i]
};

// z[N,E] → potentials, selection, gates and plan in buf. REQUIRES: buf.resize(o, n_max), n ≤ n_max.
template <typename T>
SinkhornStats sinkhorn_route_forward(const SinkhornOptions& o, const T* z, int64_t n,
                                     SinkhornBuffers<T>& buf);

// dz[N,E] = ∂/∂z of Σ_slots dgate[slot]·gate[slot] (the selection held fixed). dz is OVERWRITTEN.
template <typename T>
void sinkhorn_route_backward(const SinkhornOptions& o, const T* dgate, SinkhornBuffers<T>& buf,
                             T* dz);

}  // namespace sy
