// switchyard's routing library: from router logits to a routing plan, its auxiliary losses,
// its statistics, and the gradients back to the logits. Start reading here.
//
// Dimension letters: N tokens in the routing scope (a micro-batch), E routed experts, K experts
// per token. The math is ../../shared/ALGORITHMS.md §1–2 and docs/routing.md.
//
// One routing step:
//   1. scores_forward:    z[N,E] → scores[N,E] (softmax or sigmoid, fp32 or fp64)
//   2. topk_select:       scores → for each token its K experts (ties: lower index) and gates
//   3. plan_dispatch:     counting sort of token-slots by expert; capacity drops by policy;
//                         loads per expert (integers: identical for any thread count)
//   4. the MoE layer runs the experts on the plan (src/moe)
//   5. router_backward:   d(gates) + auxiliary losses (LBL at micro scope, z-loss) → dz[N,E]
//
// Ownership: every function writes into caller-owned arrays (a RoutingBuffers holds them, sized
// once); nothing allocates per call. Threading: functions parallelise internally with OpenMP and
// must be called from outside a parallel region; distinct RoutingBuffers may be used concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sy {

enum class ScoreFn { kSoftmax, kSigmoid };
enum class GateFn { kRenorm, kRaw };
enum class DropPolicy { kProbs, kPosition };

ScoreFn parse_score_fn(const std::string& s);        // "softmax" | "sigmoid"
GateFn parse_gate_fn(const std::string& s);          // "renorm" | "raw"
DropPolicy parse_drop_policy(const std::string& s);  // "probs" | "position"

struct TopKOptions {
  int64_t n_experts = 16;  // E
  int64_t top_k = 4;       // K
  ScoreFn score = ScoreFn::kSoftmax;
  GateFn gate = GateFn::kRenorm;
  double gate_scale = 1.0;
  double capacity_factor = 0.0;  // 0 = dropless
  DropPolicy drop = DropPolicy::kProbs;
  double lbl_coef = 0.0;     // α of the micro-scope load-balancing loss; 0 = off
  double z_loss_coef = 0.0;  // router z-loss coefficient; 0 = off
};

// Capacity per expert for n tokens: ceil(cf·n·K/E), or n·K (no limit) when cf == 0.
int64_t expert_capacity(const TopKOptions& o, int64_t n_tokens);

// The routing plan of N tokens and the arrays the backward pass needs. Sized once for N_max.
template <typename T>
struct RoutingBuffers {
  void resize(int64_t n_max, int64_t n_experts, int64_t top_k);

  int64_t n = 0, e = 0, k = 0;       // current sizes
  std::vector<T> scores;             // [N,E] softmax or sigmoid of z
  std::vector<T> lse;                // [N] logsumexp of z (z-loss)
  std::vector<int32_t> expert;       // [N,K] selected expert per slot, descending score
  std::vector<T> gate;               // [N,K] gate per slot (before drops)
  std::vector<uint8_t> kept;         // [N,K] 1 if the slot survived capacity
  std::vector<int64_t> row_of_slot;  // [N·K] row in expert-sorted order, −1 if dropped
  std::vector<int32_t> slot_of_row;  // [rows] slot (t·K + k) of each expert-sorted row
  std::vector<int64_t> offsets;      // [E+1] rows of expert i are [offsets[i], offsets[i+1])
  std::vector<int64_t> load;         // [E] kept assignments per expert (= rows per expert)
  std::vector<int64_t> demand;       // [E] assignments per expert before capacity
  int64_t rows = 0;                  // kept assignments (Σ load)
  int64_t dropped = 0;               // N·K − rows
  std::vector<T> dscores;            // [N,E] scratch for the backward pass
  std::vector<double> score_mean;    // [E] scratch: P_i of the LBL
  std::vector<T> dlbl;               // [E] scratch: ∂LBL/∂q per expert
};

// Statistics of one routing call (sums, so they add across micro-batches exactly).
struct RoutingStats {
  double lbl = 0;             // α·E·Σ f_i P_i (already multiplied by α)
  double lbl_raw = 0;         // E·Σ f_i P_i (1 at perfect balance)
  double z_loss = 0;          // coef · mean_t lse²   (already multiplied by coef)
  double entropy_sum = 0;     // Σ_t entropy of the (per-token normalised) scores
  double topk_score_sum = 0;  // Σ_t Σ_{i∈S_t} scores[t,i]
};

// Steps 1–3: z[N,E] (row-major) → plan in buf, and the statistics. REQUIRES: 1 ≤ K ≤ E, N ≤ the
// size buf was made for.
template <typename T>
RoutingStats topk_route_forward(const TopKOptions& o, const T* z, int64_t n,
                                RoutingBuffers<T>& buf);

// Step 5: dz[N,E] = aux_scale·∂(lbl + z_loss)/∂z + ∂/∂z of Σ dgate·gate. dgate [N,K] is the
// gradient of the loss with respect to each slot's gate (0 for dropped slots is fine: their gate
// still shapes the renormalisation of the others). dz is OVERWRITTEN.
template <typename T>
void topk_route_backward(const TopKOptions& o, const T* z, const T* dgate, T aux_scale,
                         RoutingBuffers<T>& buf, T* dz);

}  // namespace sy
