// BIP-based balancing: the dual of the per-layer balanced-assignment problem, minimised by exact
// block-coordinate steps, and routing by the resulting expert prices. ALGORITHMS.md §5.
//
// Dimension letters: N tokens in the scope (n), E = m experts, K experts per token.
//
// The problem (primal), for scores s[N,E] and an integer capacity c per expert:
//
//   maximise   Σ_t Σ_i s[t,i]·x[t,i]
//   subject to Σ_i x[t,i] = K  (each token t),   Σ_t x[t,i] ≤ c  (each expert i),   x ∈ {0,1}
//
// Its LP relaxation is a bipartite b-matching (totally unimodular), so the LP optimum is integral
// (see optimal.h for the exact oracle). With token prices p[t] (free) and expert prices q[i] ≥ 0
// the LP dual is
//
//   minimise D(p,q) = K·Σ_t p[t] + c·Σ_i q[i] + Σ_{t,i} max(0, s[t,i] − p[t] − q[i])
//
// and its exact block-coordinate minimisers are
//
//   row pass     p[t] = (K+1)-th largest of { s[t,i] − q[i] }_i            (all t, q fixed)
//   column pass  q[i] = max(0, (c+1)-th largest of { s[t,i] − p[t] }_t)   (all i, p fixed)
//
// (when K = E the (K+1)-th value does not exist and p[t] = the smallest of the E values, which is
// also a minimiser; when c ≥ N, q[i] = 0). One iteration = row pass then column pass. Routing
// takes the top-K of s[t,·] − q per token; the gates come from the unbiased scores (the caller's
// business, as in topk_router).
//
// Capacity. ALGORITHMS.md writes C = K·N/E, a real number. The column pass needs an integer rank
// and x is integral, so we use c = ceil(K·N/E) (bip_capacity): floor would make the problem
// infeasible whenever E does not divide K·N (c·E < K·N), and ceil is the smallest feasible integer
// capacity; when E divides K·N, c = C exactly. The dual objective and the oracle (optimal.h) use
// the same integer c, so weak duality D(p,q) ≥ optimum holds exactly.
//
// What coordinate minimisation does and does not do (measured, see bip_test.cc): D never
// increases from one iteration to the next and never goes below the optimum; after ~16 iterations
// it is within ~1e-3 of it but STALLS there (D is non-smooth, coordinate steps stop short of the
// optimum; 200 iterations do not improve on 16), and the routed assignment (top-K of s − q) can
// exceed c by a few tokens per expert. The stall grows as c shrinks: max relative dual gap over 10
// softmax instances ≤ 8e-4 for c ≥ 64, 1.8e-3 at c = 16, 4.2e-3 at c = 8, 1.1e-2 at c = 4.
// BIP does not promise exact balance; warm-starting q across steps is what makes a small T work.
//
// Modes (bip_step). kAsPublished: update q on the current batch (T iterations), then route it.
// kCausal (ours, not in the paper): route with the q left by the previous batch, then update q on
// this batch, so no information from this batch's other tokens reaches its own routing.
//
// Scope: all functions see the N tokens they are given; the caller decides the scope (micro-batch
// by default; an exact multi-rank version must gather the [N,E] scores first).
//
// Implementation (bip.cc). For float on AVX-512 (K ≤ 15 or K ≥ E − 1) the scores are transposed
// once per call to sT[E, ld] (routing/transposed.h; the BIP router computes them in that layout).
// Row pass: 16 tokens per vector, the K+1 largest of s − q kept by a min/max insertion network.
// Column pass: only positive values of s − p can make q[i] > 0, so they are compacted first (about
// K·N/E of them once q is warm) and their (c+1)-th largest, if there are more than c, is found by
// radix selection on the order-preserving integer image of the float bits (routing/kth_select.h).
// Otherwise, scalar passes with std::nth_element. Both give the same p and q, as values (a zero p
// may be +0 where nth_element picked −0). Scores must not be NaN: with a NaN the selected values
// are unspecified (as with nth_element, which has no order for NaN).
//
// Ownership: everything is caller-owned; nothing allocates. q [E] is persistent state (warm start,
// in/out); p [N] is scratch that holds the last row pass on return; scratch is
// bip_scratch_size(N, E, threads) elements of T (the transposed scores, then per-thread areas),
// and its size decides how many threads are used (min(omp_get_max_threads(), threads)).
// Threading: OpenMP inside (row pass parallel over tokens, column pass over experts); call from
// outside a parallel region. Results do not depend on the thread count except for the rounding of
// the reduction in bip_dual_objective.
#pragma once

#include <cstdint>
#include <string>

#include "switchyard/router.h"  // BipMode

namespace sy {

// The integer capacity c = ceil(K·N/E) used by the column pass, the dual and the oracle.
// REQUIRES: n ≥ 0, 1 ≤ k ≤ m.
int64_t bip_capacity(int64_t n, int64_t m, int64_t k);

// Elements of T of scratch for `threads` threads: E·bip_transposed_ld(N) + 16 for the transposed
// scores, and 2·(max(N, E) + 16) per thread.
int64_t bip_scratch_size(int64_t n, int64_t m, int threads);

// Sizes of one balancing problem. capacity is the integer c (see above); any c with c·E ≥ K·N is
// accepted (a larger c is a looser problem).
struct BipShape {
  int64_t n = 0;         // N tokens
  int64_t m = 0;         // E experts
  int64_t k = 1;         // K experts per token
  int64_t capacity = 0;  // c
};

// The shape with capacity = bip_capacity(n, m, k).
BipShape bip_shape(int64_t n, int64_t m, int64_t k);

// Throws sy::Error unless n ≥ 1, 1 ≤ k ≤ m, c ≥ 0 and c·m ≥ k·n (the problem is feasible).
void bip_validate(const BipShape& sh, const char* where);

// Runs `iterations` (≥ 1) iterations of row pass + column pass on s[N,E] (row-major), starting
// from q[E] (warm start; all zeros = cold start). On return q holds the new expert prices and p[N]
// the token prices of the last row pass. If dual is non-null, dual[j] = D(p,q) after iteration j
// (dual has `iterations` entries). scratch has scratch_size ≥ bip_scratch_size(N, E, 1) elements.
template <typename T>
void bip_iterate(const BipShape& sh, const T* s, int iterations, T* q, T* p, T* scratch,
                 int64_t scratch_size, double* dual = nullptr);

// The leading dimension of transposed scores sT: sT[i·ld + t] = s[t,i], ld = bip_transposed_ld(N)
// ≥ N (padded so that the E rows do not share cache sets).
int64_t bip_transposed_ld(int64_t n);

// bip_iterate on the scores given transposed, sT[E, bip_transposed_ld(N)]: the same q and p,
// without the dual. For callers that compute the scores in this layout (the BIP router); scratch
// as for bip_iterate.
template <typename T>
void bip_iterate_transposed(const BipShape& sh, const T* sT, int iterations, T* q, T* p, T* scratch,
                            int64_t scratch_size);

// D(p,q) = K·Σ p + c·Σ q + Σ_{t,i} max(0, s − p − q), accumulated in double.
template <typename T>
double bip_dual_objective(const BipShape& sh, const T* s, const T* p, const T* q);

// min_p D(p,q): the dual value that the expert prices q certify, in double. For fixed q a token's
// term K·p + Σ_i max(0, v_i − p), v = s[t,:] − q, is smallest for p between the K-th and the
// (K+1)-th largest v, where it is the sum of the K largest v; so this is c·Σ q + Σ_t (sum of the
// K largest s[t,i] − q[i]). For q ≥ 0 it is ≥ the LP optimum (weak duality), and ≤ D(p,q) for
// any p: what the oracle's dual gap reports for the prices that routed. Uses sh.n, sh.m, sh.k,
// sh.capacity.
template <typename T>
double bip_dual_at_prices(const BipShape& sh, const T* s, const T* q);

// experts[N,K] = for each token the K indices of the largest s[t,i] − q[i], in descending order
// (ties: lower index). Uses sh.n, sh.m, sh.k only.
template <typename T>
void bip_route(const BipShape& sh, const T* s, const T* q, int32_t* experts);

// One balancing step in the given mode (see above): bip_iterate and bip_route in the right order.
template <typename T>
void bip_step(BipMode mode, const BipShape& sh, const T* s, int iterations, T* q, T* p, T* scratch,
              int64_t scratch_size, int32_t* experts, double* dual = nullptr);

}  // namespace sy
