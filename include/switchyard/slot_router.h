// The base of the routers that give every token K experts (top-K, BIP, Sinkhorn, hash, optimal,
// and yours). They differ only in how the K experts are chosen — a selection bias added to the
// scores, or the experts themselves — and share everything after: gates from the unbiased
// scores, capacity, the slot plan (RoutingBuffers), the auxiliary losses, the row plan and
// backward (topk_route_forward / topk_route_backward, switchyard/routing.h).
//
// A family derives from SlotRouter and implements choose(); src/routing/router_topk.cc is the
// smallest. Ownership and threading as Router (switchyard/router.h).
#pragma once

#include <cstdint>
#include <vector>

#include "switchyard/router.h"
#include "switchyard/routing.h"

namespace sy {

template <typename T>
class SlotRouter : public Router<T> {
 public:
  SlotRouter(const TopKOptions& o, int64_t n_max);

  RoutingStats route(const T* z, int64_t n, const RouteCall<T>& call, RoutingPlan<T>& plan) final;
  void backward(const T* z, const RoutingPlan<T>& plan, const T* dgate_row, T aux_scale,
                T* dz) final;
  int64_t max_experts_per_token() const final { return o_.top_k; }
  RoutingBuffers<T>* slots() final { return &route_; }

 protected:
  // What a family decides: experts are the top-K of scores + bias[E], or `forced` [N,K] outright
  // (distinct per token, in slot order). Both null: plain top-K of the scores.
  struct Choice {
    const T* bias = nullptr;
    const int32_t* forced = nullptr;
  };
  virtual Choice choose(const T* z, int64_t n, const RouteCall<T>& call) = 0;

  const TopKOptions o_;

 private:
  // Device-limited routing: per token, the max_groups groups with the highest score, then the K
  // best of score + bias among their experts, as forced experts.
  const int32_t* limit_groups(const T* z, int64_t n, const T* bias);

  RoutingBuffers<T> route_;
  std::vector<T> scores_;         // [N,E] (device-limited routing only)
  std::vector<int32_t> limited_;  // [N,K]
  std::vector<T> dgate_;          // [N,K] the backward's per-slot gate gradient
};

}  // namespace sy
