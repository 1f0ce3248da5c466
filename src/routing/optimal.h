// The `optimal` oracle: the exact solution of the per-layer balanced-assignment problem
// (ALGORITHMS.md §5–6), and a report that scores any router's assignment against it.
//
// Dimension letters: N tokens (n), E = m experts, K experts per token; c the integer capacity
// (BipShape, bip.h: by default c = ceil(K·N/E), the same c the BIP column pass uses).
//
//   maximise   Σ_t Σ_i s[t,i]·x[t,i]
//   subject to Σ_i x[t,i] = K (each token),  Σ_t x[t,i] ≤ c (each expert),  x ∈ {0,1}
//
// Solved as a min-cost flow with LEMON's NetworkSimplex (liblemon-dev): source supply K at every
// token, arcs token→expert (capacity 1, cost −round(σ·s[t,i])), expert→sink (capacity c), sink
// demand K·N. Flows of a network problem with integer capacities are integral, so this is the LP
// optimum and the ILP optimum at once. Chosen by measurement at N=512, E=32, K=4 (one instance,
// graph build included): NetworkSimplex ≈ 6 ms, LEMON CostScaling ≈ 8 ms (and it does not compile
// under C++20: LEMON 1.3.1's ArrayMap uses allocator::construct), GLPK simplex on the LP ≈ 1.1 s.
//
// Tolerance: NetworkSimplex needs integer costs, so scores are scaled by σ and rounded; σ =
// min(1e12, 2^60 / (max|s|·(N+E+2))) keeps LEMON's potentials inside int64. Each rounding moves
// a cost by ≤ 0.5, so the returned assignment's true objective is within N·K/σ (absolute) of the
// true optimum — ≈ 2e-9 for N=512, K=4, softmax scores. The objective returned is recomputed
// from the unrounded scores, in double.
//
// Ownership: outputs are caller-owned; optimal_assign allocates its graph on every call (it is an
// oracle for small N·E, not a training-time kernel). Threading: optimal_assign is sequential and
// reentrant; the other functions are cheap and sequential.
#pragma once

#include <cstdint>
#include <limits>

#include "routing/bip.h"

namespace sy {

// The optimum: experts[N,K] (per token in descending score, ties lower index) and loads[E];
// returns Σ s over the assignment. REQUIRES: bip_validate(sh) passes (throws sy::Error otherwise),
// scores finite.
template <typename T>
double optimal_assign(const BipShape& sh, const T* s, int32_t* experts, int64_t* loads);

// Σ_t Σ_k s[t, experts[t,k]] in double. Uses sh.n, sh.m, sh.k.
template <typename T>
double assignment_objective(const BipShape& sh, const T* s, const int32_t* experts);

// loads[i] = #{(t,k) : experts[t,k] = i}.
void assignment_loads(const BipShape& sh, const int32_t* experts, int64_t* loads);

// How good and how balanced an assignment is, against the oracle.
struct AssignmentReport {
  double objective = 0;            // Σ s over the assignment
  double optimal_objective = 0;    // the oracle's optimum (passed in)
  double objective_gap = 0;        // 1 − objective / optimal_objective (0 = optimal)
  int64_t max_load = 0;            // max_i loads[i]
  int64_t capacity_violation = 0;  // max_load − c (≤ 0: within capacity); tokens, not a ratio
  double maxvio = 0;               // max_load / (K·N/E) − 1 (ALGORITHMS.md §7 MaxVio)
  // For BIP: D(p,q) / optimal_objective − 1 (≥ 0 by weak duality); NaN when no dual is given.
  double dual_gap = std::numeric_limits<double>::quiet_NaN();
};

// Scores experts[N,K] against optimal_objective (from optimal_assign on the same s and shape);
// dual is D(p,q) from bip_dual_objective, or NaN. loads[E] receives the assignment's loads.
template <typename T>
AssignmentReport assignment_report(const BipShape& sh, const T* s, const int32_t* experts,
                                   double optimal_objective, int64_t* loads,
                                   double dual = std::numeric_limits<double>::quiet_NaN());

}  // namespace sy
