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
enum class GateFn { kRenorm, kRaw, kUniform };
enum class DropPolicy { kProbs, kPosition };

ScoreFn parse_score_fn(const std::string& s);        // "softmax" | "sigmoid"
GateFn parse_gate_fn(const std::string& s);          // "renorm" | "raw" | "uniform"
DropPolicy parse_drop_policy(const std::string& s);  // "probs" | "position"

struct TopKOptions {
  int64_t n_experts = 16;  // E
  int64_t top_k = 4;       // K
  ScoreFn score = ScoreFn::kSoftmax;
  GateFn gate = GateFn::kRenorm;
  double gate_scale = 1.0;
  double capacity_factor = 0.0;  // 0 = dropless
  DropPolicy drop = DropPolicy::kProbs;
  double z_loss_coef = 0.0;  // router z-loss coefficient; 0 = off
  // Device-limited routing (DeepSeek-V2): the experts form `groups` contiguous groups of E/groups
  // (the ranks of expert parallelism); each token's experts come from at most `max_groups` of
  // them, the groups holding its highest scores. Applied by the top-K family's slot routers
  // before their choice (switchyard/slot_router.h). 0 = off.
  int64_t groups = 0, max_groups = 0;
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
  std::vector<int32_t> row_of_slot;  // [N·K] row in expert-sorted order, −1 if dropped
  std::vector<int32_t> slot_of_row;  // [rows] slot (t·K + k) of each expert-sorted row
  std::vector<int64_t> offsets;      // [E+1] rows of expert i are [offsets[i], offsets[i+1])
  std::vector<int64_t> load;         // [E] kept assignments per expert (= rows per expert)
  std::vector<int64_t> demand;       // [E] assignments per expert before capacity
  int64_t rows = 0;                  // kept assignments (Σ load)
  int64_t dropped = 0;               // N·K − rows
  std::vector<T> dscores;            // [N,E] scratch for the backward pass
  // Load-balancing-loss gradient, set by lbl_begin/lbl_add_term after the forward pass:
  // ∂(Σ LBL terms)/∂q[t,i] = lbl_grad[(t / lbl_group)·E + i], q the per-token-normalised scores.
  std::vector<T> lbl_grad;             // [N / lbl_group, E]
  int64_t lbl_group = 0;               // tokens per row of lbl_grad; 0 = no LBL term
  std::vector<int64_t> thread_counts;  // [2, threads, E] scratch of the parallel counting sort
};

// Statistics of one routing call (sums, so they add across micro-batches exactly).
struct RoutingStats {
  double lbl = 0;     // Σ over LBL terms of α·E·Σ f_i P_i (filled by lbl_add_term's caller)
  double z_loss = 0;  // coef · mean_t lse²   (already multiplied by coef)
  double entropy_sum = 0;     // Σ_t entropy of the (per-token normalised) scores
  double topk_score_sum = 0;  // Σ_t Σ_{i∈S_t} scores[t,i]
  // Tokens with 0, 1, 2, 3, 4, ≥5 experts after capacity (filled by the MoE layer).
  int64_t experts_per_token[6] = {0, 0, 0, 0, 0, 0};
};

// Steps 1–3: z[N,E] (row-major) → plan in buf, and the statistics. `bias` [E] (nullable) is the
// loss-free balancer's: experts are selected by scores + bias, gates use the unbiased scores.
// REQUIRES: 1 ≤ K ≤ E, N ≤ the size buf was made for.
// `forced` [N,K] (nullable): the experts were chosen elsewhere (hash, Sinkhorn, the optimal
// oracle); they are taken as they are (distinct per token, in slot order) and everything after
// selection — gates, capacity, plan, losses, backward — is the same. Gate "uniform" is scale/K
// for every slot (hash layers): it carries no gradient to the router.
template <typename T>
RoutingStats topk_route_forward(const TopKOptions& o, const T* z, int64_t n, RoutingBuffers<T>& buf,
                                const T* bias = nullptr, const int32_t* forced = nullptr);

// Load-balancing loss terms (ALGORITHMS.md §2): LBL = α·E·Σ_i f_i·P_i, f the fractions of
// token-slots per expert counted over the term's scope (no gradient), P_i the mean over the
// tokens of the per-token-normalised score q[t,i] (softmax p, or sigmoid s/Σs), which carries
// the gradient ∂LBL/∂q[t,i] = α·E·f_i / n.
//
// lbl_begin zeroes buf.lbl_grad and sets its row granularity: `group` tokens per row (the
// sequence length when a sequence-scope term is used, else n). lbl_add_term adds one term:
// f has f_rows rows of E fractions — 1 row (one scope covering the whole call: micro, global,
// global-exact, shuffle) or n/group rows (one per sequence) — and returns the term's value
// (for per-sequence f: the mean over sequences of each sequence's LBL).
template <typename T>
void lbl_begin(RoutingBuffers<T>& buf, int64_t group);
template <typename T>
double lbl_add_term(RoutingBuffers<T>& buf, ScoreFn score, double coef, const double* f,
                    int64_t f_rows);
// f_i = load_i / (K·n): the fractions of the call's own kept token-slots (micro-batch scope).
template <typename T>
void micro_fractions(const RoutingBuffers<T>& buf, double* f);

// Balance of a plan's loads (ALGORITHMS.md §7), over n experts:
// MaxVio = max/mean − 1 (0 for an all-zero vector);
double maxvio(const int64_t* load, int64_t n);
// the simulated expert-parallel straggler factor: experts split evenly over r ranks in contiguous
// blocks, max rank load / mean rank load (1 for an all-zero vector). REQUIRES: r divides n.
double ep_imbalance(const int64_t* load, int64_t n, int64_t r);

// Step 5: dz[N,E] = aux_scale·∂(LBL terms + z_loss)/∂z + ∂/∂z of Σ dgate·gate. dgate [N,K] is the
// gradient of the loss with respect to each slot's gate (0 for dropped slots is fine: their gate
// still shapes the renormalisation of the others). dz is OVERWRITTEN.
template <typename T>
void topk_route_backward(const TopKOptions& o, const T* z, const T* dgate, T aux_scale,
                         RoutingBuffers<T>& buf, T* dz);

}  // namespace sy
