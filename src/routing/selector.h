// Router families that choose experts differently but share top-K's gates, capacity, plan,
// losses and backward: the selection stage before topk_route_forward.
//
//   topk      top-K of the scores (+ the loss-free bias, if any)
//   bip       top-K of s − q, q the BIP dual prices (ALGORITHMS.md §5; routing/bip.h), updated
//             by T coordinate-minimisation iterations per call: before routing (as-published) or
//             after (causal, ours); evaluation never updates q
//   sinkhorn  S-BASE: top-K of the Sinkhorn-balanced matrix (routing/sinkhorn.h); gates from the
//             raw scores
//   hash      a fixed hash of the token id (routing/hash_router.h); usually with gate "uniform"
//   optimal   the exact balanced assignment (routing/optimal.h, LEMON min-cost flow): an oracle,
//             for small N·E
// Expert Choice gives tokens a variable number of experts and is a separate path.
//
// A Selector owns the scratch of one MoE layer's selection, sized once. Not thread-safe.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "routing/bip.h"
#include "routing/sinkhorn.h"
#include "switchyard/routing.h"

namespace sy {

// BIP with bip_iterations = 0 iterates until no price moves by more than 8 ulp of 1 in an
// iteration (q has stopped changing up to rounding), at most this many times.
constexpr int kBipMaxIterations = 1000;

// kExpertChoice has no selection stage: the MoE layer routes with routing/expert_choice.h.
enum class RouterType { kTopK, kBip, kSinkhorn, kHash, kOptimal, kExpertChoice };
// topk|bip|sinkhorn|hash|optimal|expert_choice
RouterType parse_router_type(const std::string& s);

struct SelectorOptions {
  RouterType type = RouterType::kTopK;
  int bip_iterations = 2;  // T; 0 = until q stops changing (at most kBipMaxIterations)
  BipMode bip_mode = BipMode::kAsPublished;
  int sinkhorn_iterations = 8;
  uint64_t hash_seed = 0;
  double ec_capacity_factor = 0;  // Expert Choice (0 = K); used by the model, not by Selector
  int64_t ec_chunk = 0;
  bool ec_shuffle = false;  // Expert Choice: shuffle tokens across routing groups (model)
};

template <typename T>
class Selector {
 public:
  void resize(const SelectorOptions& so, const TopKOptions& o, int64_t n_max);

  struct Choice {
    const T* bias = nullptr;          // add to the scores for selection (loss-free: b; BIP: −q)
    const int32_t* forced = nullptr;  // [N,K] experts chosen here
  };
  // z[N,E] logits, token_ids[N] (hash), q[E] the layer's BIP dual (in/out; null unless bip),
  // loss_free_bias[E] (nullable). update = false (evaluation) leaves q unchanged.
  Choice select(const SelectorOptions& so, const TopKOptions& o, const T* z,
                const int32_t* token_ids, int64_t n, T* q, const T* loss_free_bias, bool update);

  // BIP: the prices q [E] that routed the last call (before its update in causal mode, after it
  // as published), for the oracle's dual gap; null after a call of another type.
  const T* routed_prices() const { return routed_q_valid_ ? routed_q_.data() : nullptr; }
  // Sinkhorn: max_i |Σ_t Π[t,i]·E/N − 1| of the last call's balanced matrix (how far its
  // iterations got from balance; sinkhorn.h), or NaN after a call of another type.
  double sinkhorn_col_error() const { return sinkhorn_col_error_; }
  // Sinkhorn: the column potentials b[E] of the last call (after its iterations), which the
  // model averages (EMA) into the potentials of the causal evaluation.
  const double* sinkhorn_potentials() const { return sinkhorn_.col_pot.data(); }

  // Sinkhorn's causal evaluation (ours): each token's K experts are the K largest z[t,i] + b[i]
  // (ties: lower index), with fixed potentials b[E] (the EMA of training's), so a token's routing
  // depends only on its own logits. REQUIRES: resize with type kSinkhorn.
  Choice select_sinkhorn_causal(const TopKOptions& o, const T* z, int64_t n, const T* b);

 private:
  std::vector<T> scores_;       // s [N,E]; BIP, float on AVX-512: sT [E,ld] (bip.h)
  std::vector<T> p_, scratch_;  // BIP
  std::vector<T> q_prev_;       // BIP with bip_iterations = 0: q before the last iteration
  std::vector<T> bias_;         // [E] −q (+ loss-free bias)
  std::vector<T> routed_q_;     // [E] BIP: the q that routed the last call
  bool routed_q_valid_ = false;
  double sinkhorn_col_error_ = std::numeric_limits<double>::quiet_NaN();
  std::vector<int32_t> forced_;
  std::vector<int32_t> hash_scratch_;
  std::vector<int64_t> loads_;
  SinkhornBuffers<T> sinkhorn_;
};

}  // namespace sy
