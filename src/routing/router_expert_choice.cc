// Expert Choice (Zhou et al. 2022; routing/expert_choice.h): each expert takes its top tokens of
// the call (or of each routing group of ec_chunk tokens, optionally of shuffled tokens), so a
// token gets a variable number of experts and every expert exactly its capacity. That couples
// the call's tokens; causal evaluation (ours) takes row (t,i) iff S[t,i] ≥ θ_i, with θ[E] an
// exponential moving average of the training calls' k-th largest scores.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "core/rng.h"
#include "routing/expert_choice.h"
#include "switchyard/router.h"

namespace sy {
namespace {

template <typename T>
class ExpertChoiceRouter final : public Router<T> {
 public:
  ExpertChoiceRouter(const RouterOptions& ro, const TopKOptions& o, int64_t n_max)
      : eo_{o.n_experts,
            ro.ec_capacity_factor > 0 ? ro.ec_capacity_factor : static_cast<double>(o.top_k),
            ro.ec_chunk},
        shuffle_(ro.ec_shuffle),
        decay_(ro.ec_decay) {
    ec_validate(eo_);
    buf_.resize(eo_, n_max);
    if (shuffle_) perm_.resize(static_cast<size_t>(n_max));
    theta_.assign(o.n_experts, T(0));
  }

  RoutingStats route(const T* z, int64_t n, const RouteCall<T>& call,
                     RoutingPlan<T>& plan) override {
    const int64_t E = eo_.n_experts;
    if (call.causal) {
      ec_route_causal(eo_, z, n, theta_.data(), buf_);
    } else {
      ec_route_forward(eo_, z, n, shuffle_ ? shuffled_order(n, call.stream) : nullptr, buf_);
      if (call.update)
        ec_update_thresholds(theta_.data(), buf_.kth_value.data(), E,
                             call.first_batch ? 0.0 : decay_);
    }
    plan.n = n;
    plan.rows = buf_.rows;
    plan.dropped = 0;
    std::copy(buf_.offsets.begin(), buf_.offsets.begin() + E + 1, plan.expert_offsets.begin());
    std::copy(buf_.token_of_row.begin(), buf_.token_of_row.begin() + plan.rows,
              plan.token_of_row.begin());
    std::copy(buf_.gate_of_row.begin(), buf_.gate_of_row.begin() + plan.rows,
              plan.gate_of_row.begin());
    for (int64_t i = 0; i < E; ++i)
      plan.load[i] = plan.demand[i] = buf_.offsets[i + 1] - buf_.offsets[i];
    RoutingStats st;
    st.entropy_sum = entropy(z, n);
    for (int64_t r = 0; r < plan.rows; ++r)
      st.topk_score_sum += static_cast<double>(plan.gate_of_row[r]);
    index_rows_by_token(plan, st);
    return st;
  }

  void backward(const T* /*z*/, const RoutingPlan<T>& /*plan*/, const T* dgate_row, T /*aux_scale*/,
                T* dz) override {
    ec_route_backward(eo_, dgate_row, buf_, dz);
  }

  int64_t max_experts_per_token() const override { return eo_.n_experts; }
  bool has_causal_eval() const override { return true; }
  std::vector<StateTensor<T>> state() override {
    return {{.name = "ec_threshold",
             .data = theta_.data(),
             .size = static_cast<int64_t>(theta_.size()),
             .rank_mean = true}};
  }

 private:
  // Which tokens share a routing group: a Fisher–Yates permutation from the call's stream (the
  // model keys it by seed, step, micro-batch and layer in training, by seed and layer otherwise).
  const int32_t* shuffled_order(int64_t n, uint64_t stream) {
    Rng rng(mix64(stream ^ 0xec5u));
    std::iota(perm_.begin(), perm_.begin() + n, 0);
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(perm_[i], perm_[rng.below(static_cast<uint64_t>(i + 1))]);
    return perm_.data();
  }

  // Σ_t of the router entropy H_t = Σ_i p_i·(lse_t − z_i), with lse_t = z_m − log p_m at the
  // largest score p_m (≥ 1/E, so its logarithm is well conditioned): one logarithm per token, not
  // one per score, and every term ≥ 0 (no cancellation).
  double entropy(const T* z, int64_t n) const {
    const int64_t E = eo_.n_experts;
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (int64_t t = 0; t < n; ++t) {
      const T* pt = buf_.scores.data() + t * E;
      const T* zt = z + t * E;
      int64_t m = 0;
      for (int64_t i = 1; i < E; ++i) m = pt[i] > pt[m] ? i : m;
      const double lse = static_cast<double>(zt[m]) - std::log(static_cast<double>(pt[m]));
      double ht = 0;
      for (int64_t i = 0; i < E; ++i)
        ht += static_cast<double>(pt[i]) * std::max(0.0, lse - static_cast<double>(zt[i]));
      sum += ht;
    }
    return sum;
  }

  const ExpertChoiceOptions eo_;
  const bool shuffle_;
  const double decay_;
  ExpertChoiceBuffers<T> buf_;
  std::vector<int32_t> perm_;  // [N] the shuffled group order
  std::vector<T> theta_;       // [E] the causal evaluation's thresholds (state)
};

}  // namespace

template <typename T>
std::unique_ptr<Router<T>> make_expert_choice_router(const RouterOptions& ro, const TopKOptions& o,
                                                     int64_t n_max) {
  return std::make_unique<ExpertChoiceRouter<T>>(ro, o, n_max);
}
template std::unique_ptr<Router<float>> make_expert_choice_router(const RouterOptions&,
                                                                  const TopKOptions&, int64_t);
template std::unique_ptr<Router<double>> make_expert_choice_router(const RouterOptions&,
                                                                   const TopKOptions&, int64_t);

}  // namespace sy
