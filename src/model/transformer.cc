#include "model/transformer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "core/gemm.h"
#include "core/rng.h"
#include "core/stopwatch.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

// One MoE layer's forward or backward, into the pass's phase accounts.
void add_moe_times(PhaseTimes& pt, const MoeTimes& m) {
  pt.router_s += m.router_s;
  pt.experts_s += m.experts_s;
  pt.shared_s += m.shared_s;
  pt.moe_rest_s += m.total_s - m.router_s - m.experts_s - m.shared_s;
}

}  // namespace

template <typename T>
void Transformer<T>::add_param(const std::string& name, std::vector<int64_t> shape, bool decay,
                               int64_t at, std::optional<bool> expert_here) {
  const int64_t stream = n_tensors_++;
  if (expert_here.has_value() && !*expert_here) return;  // another rank's expert
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  table_.push_back(
      ParamInfo{name, std::move(shape), at, numel, decay, stream, expert_here.has_value()});
}

template <typename T>
Transformer<T>::Transformer(const ModelConfig& m, const TopKOptions& router,
                            const BalancerOptions& balance, int64_t micro_batch, Reducer* comm,
                            const RouterOptions& routing, Exchange* experts)
    : cfg_(m),
      ropt_(router),
      comm_(comm ? comm : &single_),
      balancer_(balance, comm),
      b_max_(micro_batch) {
  D_ = m.d_model;
  H_ = m.n_heads;
  hd_ = D_ / H_;
  S_ = m.seq_len;
  V_ = m.vocab_size;
  Fd_ = m.d_dense;
  n_max_ = b_max_ * S_;
  const int64_t E = m.n_experts, F = m.d_expert, K = m.top_k;
  const int64_t Fs = m.d_shared > 0 ? m.d_shared : m.d_expert, ns = m.n_shared_experts;
  // One router per MoE layer, of the configured family (it owns its state and scratch).
  for (int64_t l = m.n_dense_layers; l < m.n_layers; ++l)
    routers_.push_back(make_router<T>(routing, router, n_max_));
  const int64_t per_token = routers_.empty() ? K : routers_[0]->max_experts_per_token();
  moe_dims_ = MoeDims{n_max_, D_, E, K, F, ns, Fs, per_token};

  // Expert parallelism: this rank's share of every MoE layer's experts.
  if (experts != nullptr && experts->size() > 1) {
    SY_CHECK(E % experts->size() == 0,
             "Transformer: model.n_experts ({}) must be divisible by the expert-parallel group's "
             "ranks ({})",
             E, experts->size());
    moe_dims_.ep = experts->size();
    moe_dims_.ep_rank = experts->rank();
    ep_.group = experts;
  }
  ep_.resize(moe_dims_);

  // Parameter layout. Offsets are padded so that every tensor group starts 64-byte aligned.
  int64_t off = 0;
  auto take = [&](int64_t numel) {
    int64_t at = off;
    off += static_cast<int64_t>(aligned_count<T>(numel));
    return at;
  };
  wte_ = take(V_ * D_);
  add_param("model.embed_tokens.weight", {V_, D_}, true, wte_);
  for (int64_t l = 0; l < m.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    L.ln1 = take(D_);
    add_param(p + "input_layernorm.weight", {D_}, false, L.ln1);
    L.qkv = take(3 * D_ * D_);
    add_param(p + "self_attn.q_proj.weight", {D_, D_}, true, L.qkv);
    add_param(p + "self_attn.k_proj.weight", {D_, D_}, true, L.qkv + D_ * D_);
    add_param(p + "self_attn.v_proj.weight", {D_, D_}, true, L.qkv + 2 * D_ * D_);
    L.o = take(D_ * D_);
    add_param(p + "self_attn.o_proj.weight", {D_, D_}, true, L.o);
    L.ln2 = take(D_);
    add_param(p + "post_attention_layernorm.weight", {D_}, false, L.ln2);
    L.moe = l >= m.n_dense_layers;
    if (L.moe) {
      L.router = take(E * D_);
      add_param(p + "mlp.gate.weight", {E, D_}, true, L.router);
      // Routed experts: this rank's E_local of them (all without expert parallelism), named by
      // their global index; the others only advance the init streams (see init()).
      const int64_t El = moe_dims_.e_local(), e0 = moe_dims_.e_first();
      auto local = [&](int64_t e) { return e >= e0 && e < e0 + El; };
      L.gate_up = take(El * 2 * F * D_);
      for (int64_t e = 0; e < E; ++e) {
        const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
        const int64_t at = L.gate_up + (e - e0) * 2 * F * D_;
        add_param(q + "gate_proj.weight", {F, D_}, true, at, local(e));
        add_param(q + "up_proj.weight", {F, D_}, true, at + F * D_, local(e));
      }
      L.down = take(El * D_ * F);
      for (int64_t e = 0; e < E; ++e)
        add_param(p + "mlp.experts." + std::to_string(e) + ".down_proj.weight", {D_, F}, true,
                  L.down + (e - e0) * D_ * F, local(e));
      expert_ranges_.push_back({L.gate_up, El * 2 * F * D_});
      expert_ranges_.push_back({L.down, El * D_ * F});
      if (ns > 0) {
        L.shared_gate_up = take(ns * 2 * Fs * D_);
        L.shared_down = take(ns * D_ * Fs);
        for (int64_t j = 0; j < ns; ++j) {
          const std::string q = p + "mlp.shared_experts." + std::to_string(j) + ".";
          add_param(q + "gate_proj.weight", {Fs, D_}, true, L.shared_gate_up + j * 2 * Fs * D_);
          add_param(q + "up_proj.weight", {Fs, D_}, true,
                    L.shared_gate_up + j * 2 * Fs * D_ + Fs * D_);
          add_param(q + "down_proj.weight", {D_, Fs}, true, L.shared_down + j * D_ * Fs);
        }
      }
      moe_layer_index_.push_back(l);
    } else {
      L.dense_gate_up = take(2 * Fd_ * D_);
      add_param(p + "mlp.gate_proj.weight", {Fd_, D_}, true, L.dense_gate_up);
      add_param(p + "mlp.up_proj.weight", {Fd_, D_}, true, L.dense_gate_up + Fd_ * D_);
      L.dense_down = take(D_ * Fd_);
      add_param(p + "mlp.down_proj.weight", {D_, Fd_}, true, L.dense_down);
    }
    layers_.push_back(L);
  }
  norm_ = take(D_);
  add_param("model.norm.weight", {D_}, false, norm_);
  lm_head_ = take(V_ * D_);
  add_param("lm_head.weight", {V_, D_}, true, lm_head_);
  n_params_ = off;
  int64_t at = 0;  // the replicated ranges: the gaps between the experts' ranges
  for (const ParamRange& r : expert_ranges_) {
    replicated_ranges_.push_back({at, r.offset - at});
    at = r.offset + r.numel;
  }
  replicated_ranges_.push_back({at, n_params_ - at});
  params_.reset(n_params_);
  grads_.reset(n_params_);

  // Activations.
  const int64_t N = n_max_, Lc = m.n_layers;
  inputs_.reset(N);
  targets_.reset(N);
  rope_cos_.reset(S_ * hd_ / 2);
  rope_sin_.reset(S_ * hd_ / 2);
  rope_tables(rope_cos_.data(), rope_sin_.data(), S_, hd_, m.rope_theta);
  res_.resize(Lc + 1);
  for (auto& b : res_) b.reset(N * D_);
  auto per_layer = [&](std::vector<Buffer<T>>& v, int64_t n) {
    v.resize(Lc);
    for (auto& b : v) b.reset(n);
  };
  per_layer(ln1_, N * D_);
  per_layer(rstd1_, N);
  per_layer(qkv_, N * 3 * D_);
  per_layer(att_, b_max_ * H_ * S_ * S_);
  per_layer(attn_y_, N * D_);
  per_layer(res_mid_, N * D_);
  per_layer(ln2_, N * D_);
  per_layer(rstd2_, N);
  dense_hu_.resize(Lc);
  dense_act_.resize(Lc);
  for (int64_t l = 0; l < Lc; ++l)
    if (!layers_[l].moe) {
      dense_hu_[l].reset(N * 2 * Fd_);
      dense_act_[l].reset(N * Fd_);
    }
  moe_acts_.resize(moe_layer_index_.size());
  for (auto& a : moe_acts_) a.resize(moe_dims_);
  moe_stats_.resize(moe_layer_index_.size());
  lnf_.reset(N * D_);
  rstdf_.reset(N);
  logits_.reset(N * V_);
  losses_.reset(N);
  lse_.reset(2 * N);
  tmp_.reset(N * D_);
  dres_.reset(N * D_);
  dln_.reset(N * D_);
  dqkv_.reset(N * 3 * D_);
  dattn_y_.reset(N * D_);
  attn_scratch_.reset(attention_scratch_size(S_, omp_get_max_threads()));
  if (m.n_dense_layers > 0) {
    ddense_act_.reset(N * Fd_);
    ddense_hu_.reset(N * 2 * Fd_);
  }
  if (!moe_layer_index_.empty()) moe_scratch_.resize(moe_dims_);
  expert_sum_sq_.assign(moe_layer_index_.size() * static_cast<size_t>(moe_dims_.e_local()), 0.0);
}

template <typename T>
void Transformer<T>::init(uint64_t seed) {
  bf16_stale_ = true;
  params_.zero();
  const double std_ = cfg_.init_std;
  const double std_out = cfg_.init_std / std::sqrt(2.0 * cfg_.n_layers);
  const Rng base(seed);
  // One independent stream per tensor (by table index): the init of a tensor does not depend on
  // the shapes of the others, nor on which thread draws it — so the tensors are drawn on all
  // threads, the largest first (MEDIUM's 218 M normals took 8 s on one), with the same bits.
  std::vector<size_t> order(table_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return table_[a].numel > table_[b].numel; });
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t k = 0; k < order.size(); ++k) {
    const ParamInfo& p = table_[order[k]];
    T* w = params_.data() + p.offset;
    if (p.shape.size() == 1) {
      std::fill(w, w + p.numel, T(1));
      continue;
    }
    const bool out_proj =
        p.name.find("o_proj") != std::string::npos || p.name.find("down_proj") != std::string::npos;
    const double s = out_proj ? std_out : std_;
    Rng r = base.fork(static_cast<uint64_t>(p.stream));
    for (int64_t j = 0; j < p.numel; ++j) w[j] = static_cast<T>(r.normal() * s);
  }
}

template <typename T>
void Transformer<T>::zero_grad() {
  if (grads_zero_) return;
  grads_zero_ = true;
  expert_sum_sq_valid_ = false;
  T* g = grads_.data();
  const int64_t n = n_params_;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) g[i] = T(0);
}

template <typename T>
void Transformer<T>::set_precision(Precision p) {
  if (p == Precision::kFp32) {
    bf16_.reset();
  } else if constexpr (std::is_same_v<T, float>) {
    bf16_ = std::make_unique<Bf16Gemm>(params_.data(), n_params_);
    bf16_stale_ = true;
  } else {
    fail("precision bf16 is for fp32 models (fp64 runs the finite-difference tests)");
  }
  // A training forward's bf16 loss gradient (xent_forward_backward_bf16).
  dlogits16_.reset(bf16_ != nullptr ? n_max_ * V_ : 0);
  dlogits16_ready_ = false;
  const int threads = omp_get_max_threads();
  head_block_.reset(bf16_ != nullptr && threads > 1 ? threads * head_block_rows(D_) * V_ : 0);
  // The attention core's bf16 operands, laid out per thread (attention_forward_bf16).
  attn_scratch16_.reset(
      bf16_ != nullptr ? attention_bf16_scratch_size(S_, hd_, omp_get_max_threads()) : 0);
  // The routed experts keep what their backward reads in the precision their GEMMs read it in.
  const bool bf16_activations = bf16_ != nullptr;
  if (moe_dims_.bf16_activations != bf16_activations) {
    moe_dims_.bf16_activations = bf16_activations;
    for (auto& a : moe_acts_) a.resize(moe_dims_);
    if (!moe_layer_index_.empty()) moe_scratch_.resize(moe_dims_);
  }
}

template <typename T>
void Transformer<T>::attention_core_forward(T* out, T* att, const T* qkv, int64_t B) {
  const int64_t D = D_, S = S_;
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_ != nullptr) {
      // Sized in set_precision for the thread count then; more threads now would overrun it.
      SY_DCHECK(static_cast<int64_t>(attn_scratch16_.size()) >=
                attention_bf16_scratch_size(S, hd_, omp_get_max_threads()));
      attention_forward_bf16(out, att, qkv, qkv + D, qkv + 2 * D, B, S, H_, hd_, 3 * D,
                             attn_scratch16_.data());
      return;
    }
  }
  attention_forward(out, att, qkv, qkv + D, qkv + 2 * D, B, S, H_, hd_, 3 * D);
}

template <typename T>
void Transformer<T>::attention_core_backward(T* dqkv, const T* dout, const T* qkv, const T* att,
                                             int64_t B) {
  const int64_t D = D_, S = S_;
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_ != nullptr) {
      attention_backward_bf16(dqkv, dqkv + D, dqkv + 2 * D, attn_scratch_.data(),
                              attn_scratch16_.data(), dout, qkv, qkv + D, qkv + 2 * D, att, B, S,
                              H_, hd_, 3 * D, /*accumulate=*/false);
      return;
    }
  }
  attention_backward(dqkv, dqkv + D, dqkv + 2 * D, attn_scratch_.data(), dout, qkv, qkv + D,
                     qkv + 2 * D, att, B, S, H_, hd_, 3 * D, /*accumulate=*/false);
}

template <typename T>
const Bf16Gemm* Transformer<T>::bf16_weights() {
  if (bf16_ && bf16_stale_) {
    bf16_->refresh();
    bf16_stale_ = false;
  }
  return bf16_.get();
}

template <typename T>
MoeWeights<T> Transformer<T>::moe_weights(const Layer& L) const {
  const T* p = params_.data();
  return MoeWeights<T>{p + L.router,
                       p + L.gate_up,
                       p + L.down,
                       L.shared_gate_up >= 0 ? p + L.shared_gate_up : nullptr,
                       L.shared_down >= 0 ? p + L.shared_down : nullptr,
                       bf16_.get()};
}

template <typename T>
MoeGrads<T> Transformer<T>::moe_grads(const Layer& L) {
  T* g = grads_.data();
  return MoeGrads<T>{g + L.router, g + L.gate_up, g + L.down,
                     L.shared_gate_up >= 0 ? g + L.shared_gate_up : nullptr,
                     L.shared_down >= 0 ? g + L.shared_down : nullptr};
}

template <typename T>
ForwardStats Transformer<T>::forward(const int32_t* tokens, int64_t B, ForwardMode mode,
                                     int64_t micro) {
  SY_CHECK(B >= 1 && B <= b_max_, "Transformer::forward: batch must be in [1, {}], got {}", b_max_,
           B);
  b_ = B;
  Stopwatch whole, clock;
  PhaseTimes& pt = forward_times_;
  const int64_t S = S_, D = D_, N = B * S;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) {
      inputs_[b * S + s] = tokens[b * (S + 1) + s];
      targets_[b * S + s] = tokens[b * (S + 1) + s + 1];
    }
  const T* P = params_.data();
  const Bf16Gemm* bf = bf16_weights();
  const T eps = static_cast<T>(cfg_.norm_eps);
  embedding_forward(res_[0].data(), inputs_.data(), P + wte_, N, D);
  ForwardStats st;
  int64_t mi = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    T* x = res_[l].data();
    T* qkv = qkv_[l].data();
    rmsnorm_forward(ln1_[l].data(), rstd1_[l].data(), x, P + L.ln1, N, D, eps);
    clock.lap();
    matmul_forward(qkv, ln1_[l].data(), P + L.qkv, N, D, 3 * D, bf);
    rope_forward(qkv, rope_cos_.data(), rope_sin_.data(), B, S, H_, hd_, 3 * D);
    rope_forward(qkv + D, rope_cos_.data(), rope_sin_.data(), B, S, H_, hd_, 3 * D);
    attention_core_forward(attn_y_[l].data(), att_[l].data(), qkv, B);
    matmul_forward(tmp_.data(), attn_y_[l].data(), P + L.o, N, D, D, bf);
    pt.attention_s += clock.lap();
    T* mid = res_mid_[l].data();
    const T* t = tmp_.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N * D; ++i) mid[i] = x[i] + t[i];
    rmsnorm_forward(ln2_[l].data(), rstd2_[l].data(), mid, P + L.ln2, N, D, eps);
    if (L.moe) {
      clock.lap();
      moe_stats_[mi] =
          moe_forward(moe_dims_, moe_weights(L), *routers_[mi], route_call(mode, micro, mi),
                      ln2_[l].data(), N, moe_acts_[mi], tmp_.data(), &ep_);
      add_moe_times(pt, moe_acts_[mi].forward_times);
      if (RoutingBuffers<T>* slots = routers_[mi]->slots(); slots != nullptr) {
        if (mode == ForwardMode::kTrain) {
          moe_stats_[mi].lbl = balancer_.apply_lbl(mi, micro, *slots);
        } else if (mode == ForwardMode::kPrepass) {
          balancer_.record_prepass(mi, micro, *slots);
        }
      }
      st.lbl += moe_stats_[mi].lbl;
      st.z_loss += moe_stats_[mi].z_loss;
      ++mi;
    } else {
      clock.lap();
      swiglu_ffn_forward(tmp_.data(), T(0), dense_hu_[l].data(), dense_act_[l].data(),
                         ln2_[l].data(), P + L.dense_gate_up, P + L.dense_down, N, D, Fd_, bf);
      pt.dense_s += clock.lap();
    }
    T* next = res_[l + 1].data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N * D; ++i) next[i] = mid[i] + t[i];
  }
  if (mode == ForwardMode::kPrepass) {  // routing statistics only
    pt.total_s += whole.lap();
    return st;
  }
  clock.lap();
  rmsnorm_forward(lnf_.data(), rstdf_.data(), res_.back().data(), P + norm_, N, D, eps);
  head_forward(mode, N);
  for (int64_t i = 0; i < N; ++i) {
    if (targets_[i] < 0) continue;
    st.ce_sum += static_cast<double>(losses_[i]);
    ++st.n_tokens;
  }
  pt.head_s += clock.lap();
  pt.total_s += whole.lap();
  return st;
}

// The LM head and the per-token losses from lnf_. A training forward under bf16 also writes the
// loss's gradient (dlogits16_); on several threads by blocks of head_block_rows(D) rows whose
// logits stay in cache (lm_head_xent_bf16: the N × V logits, 67 MB on SMALL, are not written to
// memory and read back). On one thread, one GEMM over all rows into logits_ is faster: each block's
// GEMM also repacks the whole weight, which one thread's share of the bandwidth does not repay
// (docs/benchmarks.md). Both give the same bits at the model's shapes (xent_test.cc).
template <typename T>
void Transformer<T>::head_forward(ForwardMode mode, int64_t N) {
  const int64_t D = D_, V = V_;
  const T* P = params_.data();
  const Bf16Gemm* bf = bf16_.get();
  dlogits16_ready_ = false;
  if constexpr (std::is_same_v<T, float>) {
    if (bf != nullptr && mode == ForwardMode::kTrain) {
      const int threads = omp_get_max_threads();
      const bool blocks = threads > 1 && !keep_logits_;
      SY_CHECK(
          !blocks || static_cast<int64_t>(head_block_.size()) >= threads * head_block_rows(D) * V,
          "head_forward: more threads ({}) than set_precision sized the head's blocks for",
          threads);
      lm_head_xent_bf16(losses_.data(), dlogits16_.data(), lse_.data(),
                        blocks ? nullptr : logits_.data(), head_block_.data(), lnf_.data(),
                        P + lm_head_, targets_.data(), N, D, V, *bf,
                        blocks ? head_block_rows(D) : N);
      dlogits16_ready_ = true;
      return;
    }
  }
  matmul_forward(logits_.data(), lnf_.data(), P + lm_head_, N, D, V, bf);
  xent_forward(losses_.data(), logits_.data(), targets_.data(), N, V, lse_.data());
}

template <typename T>
void Transformer<T>::head_backward(T ce_scale, T* dln) {
  const int64_t N = b_ * S_, D = D_;
  const T* P = params_.data();
  T* G = grads_.data();
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_ && dlogits16_ready_) {  // the training forward's gradient, scaled by the GEMMs
      linear_backward(dln, 0.f, G + lm_head_, 1.f, Bf16Gemm::Rounded{dlogits16_.data(), N, V_},
                      lnf_.data(), P + lm_head_, N, D, V_, *bf16_, ce_scale);
      return;
    }
    if (bf16_) {
      uint16_t* d16 = bf16_->rounded_buffer(N, V_);
      xent_backward_bf16(d16, logits_.data(), targets_.data(), ce_scale, N, V_, lse_.data());
      linear_backward(dln, 0.f, G + lm_head_, 1.f,
                      Bf16Gemm::Rounded{d16, N, V_, /*zero_padded=*/true}, lnf_.data(),
                      P + lm_head_, N, D, V_, *bf16_);
      return;
    }
  }
  xent_backward(logits_.data(), logits_.data(), targets_.data(), ce_scale, N, V_, lse_.data());
  // The weight gradient's shape never changes: oneDNN's matmul primitive runs it 1.3–1.5× faster
  // than sgemm (docs/benchmarks.md).
  linear_backward_fixed_shape(dln, T(0), G + lm_head_, logits_.data(), lnf_.data(), P + lm_head_, N,
                              D, V_, static_cast<const Bf16Gemm*>(nullptr));
}

template <typename T>
std::optional<double> Transformer<T>::expert_grad_sum_of_squares() const {
  if (!expert_sum_sq_valid_) return std::nullopt;
  double s = 0;
  for (double x : expert_sum_sq_) s += x;
  return s;
}

template <typename T>
void Transformer<T>::backward(T ce_scale, T aux_scale) {
  // Onto zeroed gradients, the experts' sums of squares are those of their final gradients, and
  // their weight GEMMs write instead of add (MoeGrads::experts_zero).
  const bool fresh = grads_zero_;
  grads_zero_ = false;
  expert_sum_sq_valid_ = false;
  const int64_t B = b_, S = S_, D = D_, N = B * S;
  Stopwatch whole, clock;
  PhaseTimes& pt = backward_times_;
  const T* P = params_.data();
  const Bf16Gemm* bf = bf16_.get();  // refreshed by the forward
  T* G = grads_.data();
  T* dres = dres_.data();
  T* dln = dln_.data();
  // Head: cross-entropy → lm_head → final norm. The gradient of the logits from the forward's
  // logsumexp (one pass), in place; under bf16 written rounded for the two GEMMs instead.
  head_backward(ce_scale, dln);
  std::fill(dres, dres + N * D, T(0));
  rmsnorm_backward(dres, G + norm_, dln, res_.back().data(), P + norm_, rstdf_.data(), N, D);
  pt.head_s += clock.lap();
  int64_t mi = n_moe_layers();
  for (int64_t l = static_cast<int64_t>(layers_.size()) - 1; l >= 0; --l) {
    const Layer& L = layers_[l];
    // FFN: res[l+1] = mid + ffn(norm(mid)); dres flows to mid unchanged plus through the FFN.
    std::fill(dln, dln + N * D, T(0));
    clock.lap();
    if (L.moe) {
      --mi;
      MoeGrads<T> g = moe_grads(L);
      if (fresh && expert_sums_wanted_)
        g.expert_sum_sq = expert_sum_sq_.data() + mi * moe_dims_.e_local();
      g.experts_zero = fresh;
      moe_backward(moe_dims_, moe_weights(L), g, *routers_[mi], ln2_[l].data(), N, moe_acts_[mi],
                   moe_scratch_, dres, aux_scale, dln, &ep_);
      add_moe_times(pt, moe_acts_[mi].backward_times);
    } else {
      swiglu_ffn_backward(dln, T(1), G + L.dense_gate_up, G + L.dense_down, T(1), ddense_hu_.data(),
                          ddense_act_.data(), dres, ln2_[l].data(), dense_hu_[l].data(),
                          dense_act_[l].data(), P + L.dense_gate_up, P + L.dense_down, N, D, Fd_,
                          bf);
      pt.dense_s += clock.lap();
    }
    rmsnorm_backward(dres, G + L.ln2, dln, res_mid_[l].data(), P + L.ln2, rstd2_[l].data(), N, D);
    // Attention: mid = x + o(attn(rope(qkv(norm(x))))).
    T* dattn = dattn_y_.data();
    clock.lap();
    linear_backward_fixed_shape(dattn, T(0), G + L.o, dres, attn_y_[l].data(), P + L.o, N, D, D,
                                bf);
    T* dqkv = dqkv_.data();
    const T* qkv = qkv_[l].data();
    attention_core_backward(dqkv, dattn, qkv, att_[l].data(), B);
    rope_backward(dqkv, rope_cos_.data(), rope_sin_.data(), B, S, H_, hd_, 3 * D);
    rope_backward(dqkv + D, rope_cos_.data(), rope_sin_.data(), B, S, H_, hd_, 3 * D);
    linear_backward_fixed_shape(dln, T(0), G + L.qkv, dqkv, ln1_[l].data(), P + L.qkv, N, D, 3 * D,
                                bf);
    pt.attention_s += clock.lap();
    rmsnorm_backward(dres, G + L.ln1, dln, res_[l].data(), P + L.ln1, rstd1_[l].data(), N, D);
  }
  embedding_backward(G + wte_, dres, inputs_.data(), N, D);
  expert_sum_sq_valid_ = fresh && expert_sums_wanted_;
  pt.total_s += whole.lap();
}

// What MoE layer mi's router is told for a forward in `mode` on micro-batch `micro`: whether its
// state moves (training only), causal evaluation, the run's first batch, the tokens (hash), the
// loss-free bias, and the stream of its random choices — keyed by (seed, step, micro-batch,
// layer) in training and the pre-pass, by (seed, layer) in evaluation, so every rank and every
// resume draws the same.
template <typename T>
RouteCall<T> Transformer<T>::route_call(ForwardMode mode, int64_t micro, int64_t mi) const {
  const bool train = mode == ForwardMode::kTrain || mode == ForwardMode::kPrepass;
  const uint64_t key =
      train ? static_cast<uint64_t>(balancer_.step()) * 1000003ull + micro * 1009ull + mi
            : ~static_cast<uint64_t>(mi);
  RouteCall<T> c;
  c.update = mode == ForwardMode::kTrain;
  c.causal = mode == ForwardMode::kEvalCausal;
  c.first_batch = balancer_.step() == 0 && micro == 0;
  c.token_ids = inputs_.data();
  c.bias = balancer_.bias(mi);
  c.stream = balancer_.options().seed ^ mix64(key);
  return c;
}

template <typename T>
std::vector<StateTensor<T>> Transformer<T>::layer_state(int64_t mi) {
  std::vector<StateTensor<T>> out = balancer_.state(mi);
  for (const StateTensor<T>& s : routers_[mi]->state()) out.push_back(s);
  return out;
}

template <typename T>
std::vector<StateTensor<const T>> Transformer<T>::layer_state(int64_t mi) const {
  std::vector<StateTensor<const T>> out = balancer_.state(mi);
  for (const StateTensor<const T>& s : std::as_const(*routers_[mi]).state()) out.push_back(s);
  return out;
}

template <typename T>
void Transformer<T>::restart_state(int64_t mi, const std::string& name) {
  routers_[mi]->restart_state(name);
}

template <typename T>
void Transformer<T>::end_step(std::vector<std::vector<int64_t>> step_loads) {
  // State that each rank's forward passes updated from its own micro-batches (BIP's q, Expert
  // Choice's θ, Sinkhorn's b̄) is replaced by its mean over ranks, so every replica routes alike
  // (one process: unchanged).
  if (comm_->size() > 1) {
    const T inv = T(1) / static_cast<T>(comm_->size());
    for (int64_t mi = 0; mi < n_moe_layers(); ++mi)
      for (const StateTensor<T>& s : layer_state(mi)) {
        if (!s.rank_mean) continue;
        comm_->allreduce_sum(s.data, s.size);
        for (int64_t i = 0; i < s.size; ++i) s.data[i] *= inv;
      }
  }
  for (auto& r : routers_) r->end_step();
  balancer_.end_step(std::move(step_loads));
}

template <typename T>
PhaseFlops Transformer<T>::flops_per_token_by_phase() const {
  // 6 per active parameter: a multiply-add forward, two backward.
  const double d = static_cast<double>(D_);
  const int64_t Fs = cfg_.d_shared > 0 ? cfg_.d_shared : cfg_.d_expert;
  PhaseFlops f;
  f.head = 6.0 * static_cast<double>(V_) * d;  // LM head
  for (const Layer& L : layers_) {
    f.attention += 6.0 * 4 * d * d + 12.0 * d * static_cast<double>(S_);
    if (L.moe) {
      f.router += 6.0 * d * cfg_.n_experts;
      f.experts += 6.0 * 3.0 * cfg_.top_k * d * cfg_.d_expert;
      f.shared += 6.0 * 3.0 * cfg_.n_shared_experts * d * Fs;
    } else {
      f.dense += 6.0 * 3.0 * d * Fd_;
    }
  }
  return f;
}

template <typename T>
double Transformer<T>::flops_per_token() const {
  return flops_per_token_by_phase().total();
}

template class Transformer<float>;
template class Transformer<double>;

}  // namespace sy
