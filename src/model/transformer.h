// The MoE transformer (docs/model.md): parameter layout, forward, backward.
//
// Memory: parameters, gradients and activations each live in one Buffer laid out once from size
// tables at construction; forward/backward allocate nothing. The parameter table names every
// tensor with its Hugging Face Qwen3-MoE name and its offset in the block; fused tensors (q|k|v,
// each expert's gate|up) are adjacent entries, so one GEMM covers them and checkpoints still hold
// the separate HF tensors.
//
// Ownership: a Transformer owns its parameters, gradients and activations. Not thread-safe: one
// caller at a time; kernels inside use the OpenMP pool. T = float (training) or double (tests).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/gemm_bf16.h"
#include "model/model_config.h"
#include "moe/moe_layer.h"
#include "switchyard/balancer.h"
#include "switchyard/reducer.h"
#include "switchyard/router.h"
#include "switchyard/routing.h"

namespace sy {

struct ParamInfo {
  std::string name;            // Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // [out, in] for matrices
  int64_t offset = 0;          // elements from the start of the parameter block
  int64_t numel = 0;
  bool decay = true;  // weight decay applies (false for norm weights)
  // The tensor's index in the model's full table (every expert of every layer): its init stream,
  // so a tensor starts the same whichever rank holds it.
  int64_t stream = 0;
  bool expert = false;  // a routed expert's: sharded under expert parallelism
};

// A contiguous range of the parameter block, in elements.
struct ParamRange {
  int64_t offset = 0, numel = 0;
};

// kTrain: the balancer adds its LBL terms (and updates its global-scope buffer); kEval: routing
// only, no balancer state touched, no LBL; kPrepass: the router-statistics pass of global-exact
// and shuffle scopes (records routing; skips the LM head).
// kEvalCausal: evaluation with Expert Choice's causal routing (thresholds θ) or Sinkhorn's
// (top-K of z + b̄, the EMA potentials); for the other routers the same as kEval.
enum class ForwardMode { kTrain, kEval, kPrepass, kEvalCausal };

// Results of one forward pass over a micro-batch.
struct ForwardStats {
  double ce_sum = 0;     // Σ over tokens of the cross-entropy (nats)
  int64_t n_tokens = 0;  // tokens with a target
  double lbl = 0;        // Σ over MoE layers of α·LBL
  double z_loss = 0;     // Σ over MoE layers of coef·z-loss
};

// Where the passes' time goes on this rank (wall seconds), summed over the forward (or backward)
// passes since reset_phase_times(): attention (q|k|v and output projections, RoPE, the attention
// core), the MoE layers' router (GEMMs, routing, router backward), routed experts' GEMM chains,
// shared experts and the rest of the MoE layer (dispatch, combine, the exchange), dense FFNs, the
// head (final norm, LM head, cross-entropy); total_s is the whole pass, so the norms, residual
// adds and embedding are what the others leave.
struct PhaseTimes {
  double attention_s = 0, router_s = 0, experts_s = 0, shared_s = 0, moe_rest_s = 0;
  double dense_s = 0, head_s = 0, total_s = 0;
  PhaseTimes& operator+=(const PhaseTimes& o) {
    attention_s += o.attention_s, router_s += o.router_s, experts_s += o.experts_s;
    shared_s += o.shared_s, moe_rest_s += o.moe_rest_s, dense_s += o.dense_s;
    head_s += o.head_s, total_s += o.total_s;
    return *this;
  }
};

// Model FLOPs per token by phase (the PhaseTimes accounts'): attention holds its projections and
// the 12·L·D·S of scores and score·value; the router its GEMM; norms, selection, dispatch and
// combine count none. Forward is a third of each, the backward two thirds.
struct PhaseFlops {
  double attention = 0, router = 0, experts = 0, shared = 0, dense = 0, head = 0;
  double total() const { return attention + router + experts + shared + dense + head; }
};

template <typename T>
class Transformer {
 public:
  // micro_batch: the largest B that forward() will be given. comm: the reducer of the balancer
  // and of end_step (switchyard/reducer.h; the communicator in training), may be null (one
  // process). routing: which router family each MoE layer runs (switchyard/router.h), default
  // top-K. experts: the expert-parallel group (core/exchange.h), borrowed; null or one rank: every
  // expert here. Else this rank holds only its E/R_e experts of each MoE layer (param_table()
  // lists those, by their global names) and every forward/backward is a collective of the group.
  Transformer(const ModelConfig& m, const TopKOptions& router, const BalancerOptions& balance,
              int64_t micro_batch, Reducer* comm = nullptr, const RouterOptions& routing = {},
              Exchange* experts = nullptr);

  const ModelConfig& config() const { return cfg_; }
  const TopKOptions& router_options() const { return ropt_; }
  const std::vector<ParamInfo>& param_table() const { return table_; }
  // The routed experts' parameters (two ranges per MoE layer: gate|up, down): what expert
  // parallelism shards; everything else is replicated on every rank.
  const std::vector<ParamRange>& expert_ranges() const { return expert_ranges_; }
  // The rest of the parameter block, in order: what every rank holds.
  const std::vector<ParamRange>& replicated_ranges() const { return replicated_ranges_; }
  const MoeDims& moe_dims() const { return moe_dims_; }
  // Tensors of the whole model, every expert included (param_table() lists this rank's).
  int64_t full_table_size() const { return n_tensors_; }
  int64_t num_params() const { return n_params_; }
  int64_t micro_batch() const { return b_max_; }
  // Non-const access may change the weights: under bf16 the next forward() re-makes their copy.
  T* params() {
    bf16_stale_ = true;
    return params_.data();
  }
  const T* params() const { return params_.data(); }
  // Non-const access may change the gradients: zero_grad() then zeroes them again.
  T* grads() {
    grads_zero_ = false;
    expert_sum_sq_valid_ = false;
    return grads_.data();
  }
  const T* grads() const { return grads_.data(); }
  // Zeroes the gradients, over all OpenMP threads (a memory-bound pass: one thread leaves half
  // the bandwidth unused) — unless they are zero already: fresh, zeroed since the last backward()
  // or write access, or handed to a zeroing update (below).
  void zero_grad();
  // The gradients for a pass that reads each one and then zeroes it (AdamW's with zero_grads,
  // train_step.cc): they count as zero afterwards, so the next zero_grad() has nothing to do.
  T* grads_for_zeroing_update() {
    grads_zero_ = true;
    expert_sum_sq_valid_ = false;
    return grads_.data();
  }
  // Σ g² over the routed experts' gradients (expert_ranges()), summed expert by expert in the
  // backward while each one's gradient was still in cache — so a gradient-norm pass need only
  // read the rest (train_step.cc; MEDIUM's experts are 92% of its parameters). Present only while
  // the gradients are exactly what one backward() wrote onto zeroed gradients: empty after a
  // second backward() (accumulation) or any non-const grads() access (e.g. an all-reduce).
  // Deterministic: the experts' sums are added in layer and expert order.
  std::optional<double> expert_grad_sum_of_squares() const;
  // Whether backward() sums the experts' squares at all (default yes): a caller that will
  // accumulate or all-reduce the gradients before their norm turns it off and saves the reads.
  void set_expert_grad_sums(bool on) { expert_sums_wanted_ = on; }

  // The precision of the weight GEMMs — attention projections, dense and expert FFNs, LM head
  // (docs/model.md says what runs in which precision): fp32, the default, or bf16 (bf16
  // operands, fp32 accumulation, a bf16 copy of the weights made once per step). Call before
  // forward(). bf16 fails on a CPU without AVX512-BF16, and for T = double.
  void set_precision(Precision p);
  Precision precision() const { return bf16_ ? Precision::kBf16 : Precision::kFp32; }
  // Under bf16, the weights' bf16 copy for a pass that rewrites all of it while it updates the
  // weights (AdamW's, train_step.cc): call after params(), and the copy counts as current. Null
  // under fp32.
  uint16_t* bf16_copy_for_update() {
    if (!bf16_) return nullptr;
    bf16_stale_ = false;
    return bf16_->copy();
  }

  // Seeded initialisation (docs/model.md): N(0, init_std²), residual outputs scaled by 1/√(2L).
  void init(uint64_t seed);

  // tokens: [B, S+1] int32, B ≤ micro_batch; inputs tokens[:, :S], targets tokens[:, 1:].
  // REQUIRES: every token in [0, V) (validated by the caller, e.g. the data loader).
  // Keeps the activations for backward(). The routing of each MoE layer is in layer_plan().
  // `micro`: the micro-batch's index within its optimizer step (global and shuffle scopes).
  ForwardStats forward(const int32_t* tokens, int64_t B, ForwardMode mode = ForwardMode::kTrain,
                       int64_t micro = 0);
  // Gradients of ce_scale·Σ ce + aux_scale·Σ(aux losses) for the last forward, accumulated (+=)
  // into grads().
  void backward(T ce_scale, T aux_scale);

  // The logits of the last forward, [B·S, V] (valid until backward(), which overwrites them).
  // Not written by a training forward under bf16 on several threads (head_forward) unless
  // set_keep_logits(true).
  const T* logits() const { return logits_.data(); }
  void set_keep_logits(bool on) { keep_logits_ = on; }
  // Under bf16 on several threads, the rows of the LM head's logits a thread holds at a time in
  // a training forward (head_forward): as many as d_model, at least 256. Each block's GEMM
  // repacks the V × d_model weight, so wider models take taller blocks; measured fastest at
  // 256 on SMALL (8 MB per thread at V 8192) and 512 on MEDIUM (docs/benchmarks.md).
  static int64_t head_block_rows(int64_t d_model) { return std::max<int64_t>(256, d_model); }
  // Per-token cross-entropy of the last forward, [B·S] (not after a pre-pass forward).
  const T* token_losses() const { return losses_.data(); }
  int64_t n_moe_layers() const { return static_cast<int64_t>(moe_layer_index_.size()); }
  // MoE layer mi's activations of the last forward, with its routing plan as rows
  // (layer_acts(mi).plan: token_of_row, expert_offsets, load, ...). Layer l (0-based over all
  // layers) is an MoE layer iff l ≥ n_dense_layers; mi = l − n_dense_layers.
  const MoeActivations<T>& layer_acts(int64_t mi) const { return moe_acts_[mi]; }
  const RoutingPlan<T>& layer_plan(int64_t mi) const { return moe_acts_[mi].plan; }
  const RoutingStats& layer_stats(int64_t mi) const { return moe_stats_[mi]; }
  // MoE layer mi's router (its family's state, report and token-slot plan).
  const Router<T>& layer_router(int64_t mi) const { return *routers_[mi]; }
  Balancer<T>& balancer() { return balancer_; }
  const Balancer<T>& balancer() const { return balancer_; }
  // Whether ForwardMode::kEvalCausal routes differently from kEval: Expert Choice (thresholds)
  // and Sinkhorn (EMA potentials); every other router is causal already.
  bool has_causal_eval() const { return !routers_.empty() && routers_[0]->has_causal_eval(); }

  // The routing state of MoE layer mi — the balancer's (loss-free bias), then its router's — in a
  // fixed order: what checkpoints hold, ranks average and the replica check compares.
  std::vector<StateTensor<T>> layer_state(int64_t mi);
  std::vector<StateTensor<const T>> layer_state(int64_t mi) const;
  // A checkpoint lacked MoE layer mi's (not required) state tensor `name`; it was zeroed.
  void restart_state(int64_t mi, const std::string& name);
  // After the optimizer step: routers' state averaged over ranks where each rank moved its own,
  // the routers' end of step, then the balancer's (loss-free update from step_loads [layer][E],
  // local counts summed over ranks there).
  void end_step(std::vector<std::vector<int64_t>> step_loads);

  // Model FLOPs per trained token (6·N_active + 12·L·D·S; PERF-NOTES.md's definition).
  double flops_per_token() const;
  // The same FLOPs by phase, as the PhaseTimes accounts split the time; their sum is
  // flops_per_token().
  PhaseFlops flops_per_token_by_phase() const;

  // The phase accounts of the forward and backward passes since the last reset.
  const PhaseTimes& forward_times() const { return forward_times_; }
  const PhaseTimes& backward_times() const { return backward_times_; }
  void reset_phase_times() { forward_times_ = backward_times_ = PhaseTimes{}; }

 private:
  // The head's forward from lnf_: losses_ and lse_, logits_ or (training under bf16) dlogits16_.
  void head_forward(ForwardMode mode, int64_t N);
  // The head's backward: cross-entropy's gradient, then the LM head's two GEMMs into dln [N, D]
  // (overwritten) and the LM head's weight gradient.
  void head_backward(T ce_scale, T* dln);

  struct Layer {
    int64_t ln1, qkv, o, ln2;  // parameter offsets
    int64_t router = -1, gate_up = -1, down = -1, shared_gate_up = -1, shared_down = -1;
    int64_t dense_gate_up = -1, dense_down = -1;
    bool moe = false;
  };
  // expert_here: set for a routed expert's tensor (false: another rank's, not added).
  void add_param(const std::string& name, std::vector<int64_t> shape, bool decay, int64_t at,
                 std::optional<bool> expert_here = std::nullopt);
  MoeWeights<T> moe_weights(const Layer& L) const;
  MoeGrads<T> moe_grads(const Layer& L);

  RouteCall<T> route_call(ForwardMode mode, int64_t micro, int64_t mi) const;

  ModelConfig cfg_;
  TopKOptions ropt_;
  LocalReducer single_;
  Reducer* comm_;
  Balancer<T> balancer_;
  std::vector<std::unique_ptr<Router<T>>> routers_;  // one per MoE layer
  MoeDims moe_dims_;
  int64_t b_max_, n_max_;
  int64_t D_, H_, hd_, S_, V_, Fd_;
  int64_t wte_ = 0, norm_ = 0, lm_head_ = 0;
  std::vector<Layer> layers_;
  std::vector<int64_t> moe_layer_index_;  // layer number of each MoE layer
  std::vector<ParamInfo> table_;
  int64_t n_params_ = 0;
  Buffer<T> params_, grads_;
  // precision bf16: the weights' bf16 copy and GEMMs; stale after any non-const params() access.
  std::unique_ptr<Bf16Gemm> bf16_;
  bool bf16_stale_ = true;
  bool grads_zero_ = true;  // grads_ known to be all zero (zero_grad() may skip its pass)
  // Each MoE layer's local experts' Σ g² [n_moe_layers × E_local], written by a backward() that
  // began on zeroed gradients; valid until the gradients change otherwise.
  std::vector<double> expert_sum_sq_;
  bool expert_sum_sq_valid_ = false;
  bool expert_sums_wanted_ = true;  // set_expert_grad_sums
  const Bf16Gemm* bf16_weights();   // the copy, re-made first if stale (null: fp32)
  // The attention core over qkv [B·S, 3D] in the model's precision (the bf16 core under bf16):
  // out and att written; the backward overwrites dqkv.
  void attention_core_forward(T* out, T* att, const T* qkv, int64_t B);
  void attention_core_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int64_t B);

  // Activations (N = B·S rows), sized for micro_batch.
  int64_t b_ = 0;                     // B of the last forward
  Buffer<int32_t> inputs_, targets_;  // [N]
  Buffer<T> rope_cos_, rope_sin_;     // [S, hd/2]
  std::vector<Buffer<T>> res_;        // L+1 × [N, D] residual stream
  std::vector<Buffer<T>> ln1_, rstd1_, qkv_, att_, attn_y_, res_mid_, ln2_, rstd2_;
  std::vector<Buffer<T>> dense_hu_, dense_act_;  // dense layers only
  std::vector<MoeActivations<T>> moe_acts_;
  std::vector<RoutingStats> moe_stats_;
  Buffer<T> lnf_, rstdf_, logits_, losses_,
      lse_;        // lse_ [2N]: each token's logsumexp (xent_forward)
  Buffer<T> tmp_;  // [N, D] projection / FFN output before the residual add
  // Backward scratch.
  Buffer<T> dres_, dln_, dqkv_, dattn_y_, attn_scratch_, ddense_act_, ddense_hu_;
  Buffer<uint32_t> attn_scratch16_;  // precision bf16: attention_bf16_scratch_size() words
  // Precision bf16: the last training forward's loss gradient per logit, unscaled, in bf16 (its
  // backward's LM head GEMMs read it; ready says the last forward wrote it).
  Buffer<uint16_t> dlogits16_;
  bool dlogits16_ready_ = false;
  Buffer<float> head_block_;  // bf16, several threads: head_block_rows(D) × V per thread
  bool keep_logits_ = false;
  MoeScratch<T> moe_scratch_;
  ExpertParallel<T> ep_;
  PhaseTimes forward_times_, backward_times_;
  std::vector<ParamRange> expert_ranges_, replicated_ranges_;
  int64_t n_tensors_ = 0;  // tensors of the full table added so far (init streams)
};

}  // namespace sy
