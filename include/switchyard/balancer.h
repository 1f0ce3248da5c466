// The balancer: the state and the between-step logic of load balancing, for all MoE layers.
//
// It owns (1) the load-balancing-loss terms and their scopes (ALGORITHMS.md §2): `sequence`,
// `micro`, `global` (counts summed over data-parallel ranks through the reducer, plus the
// buffer of the step's earlier micro-batches — "Demons in the Detail", Algorithm 1),
// `global-exact` (ours: the step's exact counts from a router-statistics pre-pass over all its
// micro-batches before any backward), `shuffle` (the paper's control: f from a random sample, of
// micro-batch size, of the step's token→expert selections); and (2) the auxiliary-loss-free bias
// (§3): b[E] per layer, added to the scores for selection only, moved toward balance after every
// optimizer step from that step's loads.
//
// Call order per optimizer step (the trainer does this):
//   begin_step(step)
//   if needs_prepass(): for each micro-batch m: forward in pre-pass mode → record_prepass(l, m, …)
//                       then finish_prepass()
//   for each micro-batch m: forward (the model calls apply_lbl(l, m, …) after routing layer l),
//                           backward
//   end_step(loads summed over the step's micro-batches)   → loss-free bias update
// Evaluation never calls any of these (bias() is read-only): evaluation changes no state.
//
// Ownership: a Balancer is owned by the model; it borrows the reducer (switchyard/reducer.h: the
// communicator in training). Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "switchyard/reducer.h"
#include "switchyard/router.h"
#include "switchyard/routing.h"

namespace sy {

enum class LblScope { kSequence, kMicro, kGlobal, kGlobalExact, kShuffle };
LblScope parse_lbl_scope(const std::string& s);  // sequence|micro|global|global-exact|shuffle
const char* lbl_scope_name(LblScope s);

enum class BiasUpdate { kOff, kSign, kProportional };
BiasUpdate parse_bias_update(const std::string& s);  // off|sign|proportional

struct LblTerm {
  LblScope scope = LblScope::kMicro;
  double coef = 0.01;  // α
  // kGlobal / kGlobalExact: f over groups of this many consecutive micro-batches of the step
  // (micro-batch m is in group m / group, on every rank); 0 = the whole step.
  int64_t group = 0;
  // Applies in steps [from_step, until_step) (begin_step's argument); until_step 0 = no end.
  int64_t from_step = 0, until_step = 0;
  bool active(int64_t step) const {
    return step >= from_step && (until_step == 0 || step < until_step);
  }
};

struct BalancerOptions {
  int64_t n_layers = 0;  // MoE layers
  int64_t n_experts = 0, top_k = 0;
  int64_t seq_len = 0;      // tokens per sequence (the sequence scope)
  int64_t micro_batch = 0;  // sequences per micro-batch (B)
  int64_t grad_accum = 1;   // micro-batches per step (M)
  ScoreFn score = ScoreFn::kSoftmax;
  std::vector<LblTerm> lbl;
  BiasUpdate bias_update = BiasUpdate::kOff;
  double bias_rate = 1e-3;        // u
  bool bias_center = false;       // subtract the mean of each update
  int64_t bias_freeze_after = 0;  // no updates after this many steps; 0 = never
  uint64_t seed = 0;              // the shuffle scope's samples
};

template <typename T>
class Balancer {
 public:
  // comm may be null: one process (LocalReducer).
  Balancer(const BalancerOptions& o, Reducer* comm);

  const BalancerOptions& options() const { return o_; }
  bool needs_prepass() const;
  bool has_lbl() const { return !o_.lbl.empty(); }

  void begin_step(int64_t step);
  int64_t step() const { return step_; }  // the step begun last
  void record_prepass(int64_t layer, int64_t micro, const RoutingBuffers<T>& buf);
  void finish_prepass();
  // Sets buf's LBL gradient for every term and returns the layer's LBL (Σ over terms, α
  // applied). `micro` is the micro-batch's index within the step (0-based).
  double apply_lbl(int64_t layer, int64_t micro, RoutingBuffers<T>& buf);
  // Loss-free update from the step's loads [layer][E] (local; summed over ranks here).
  void end_step(std::vector<std::vector<int64_t>> step_loads);

  // The selection bias of a layer, or null when the loss-free balancer is off.
  const T* bias(int64_t layer) const;
  // All persistent state, for checkpoints: the biases [layers, E] (empty when off).
  std::vector<T>& bias_state() { return bias_; }
  const std::vector<T>& bias_state() const { return bias_; }
  // The state of MoE layer `layer` (empty when the loss-free balancer is off): its bias [E]
  // under DeepSeek-V3's Hugging Face name. Routers declare theirs (Router::state()).
  std::vector<StateTensor<T>> state(int64_t layer) {
    if (bias_.empty()) return {};
    return {{.name = kBiasName, .data = bias_.data() + layer * o_.n_experts, .size = o_.n_experts}};
  }
  std::vector<StateTensor<const T>> state(int64_t layer) const {
    if (bias_.empty()) return {};
    return {{.name = kBiasName, .data = bias_.data() + layer * o_.n_experts, .size = o_.n_experts}};
  }
  // Sequences that f is counted over for term j (at a group's last micro-batch) in the step
  // begun last; 0 when the term does not apply in that step.
  int64_t balance_bsz(size_t term) const;

 private:
  static constexpr const char* kBiasName = "e_score_correction_bias";
  BalancerOptions o_;
  LocalReducer single_;
  Reducer* comm_;
  int64_t step_ = 0;
  std::vector<T> bias_;  // [L, E]
  // Global scope: per term and layer, counts of the step's earlier micro-batches (all ranks).
  std::vector<std::vector<int64_t>> buffer_;         // [term][L·E]
  std::vector<std::vector<int64_t>> buffer_tokens_;  // [term][L]
  // Pre-pass: the loads of each micro-batch index per layer (all ranks) and, for shuffle, the
  // selections.
  std::vector<int64_t> micro_counts_;  // [M·L·E]
  std::vector<int64_t> micro_tokens_;  // [M·L]
  std::vector<int32_t> selections_;    // [L, M·N·K] expert of each kept slot, −1 if dropped
  // Scratch.
  std::vector<double> f_;            // [max(N/S, 1)·E]
  std::vector<int64_t> counts_;      // [E]
  std::vector<int32_t> sample_idx_;  // [R·M·N]
  // Shuffle scope: sampled counts per (rank, micro-batch, layer), summed over ranks.
  std::vector<int64_t> shuffle_counts_;  // [R·M·L·E]
  void sample_shuffle();
  int64_t group_size(const LblTerm& t) const;  // micro-batches per group: group, or M
};

}  // namespace sy
