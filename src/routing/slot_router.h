// Internal to src/routing: the base of the routers that give every token K experts (top-K, BIP,
// Sinkhorn, hash, optimal). They differ only in how the K experts are chosen — a selection bias
// added to the scores, or the experts themselves — and share everything after: gates from the
// unbiased scores, capacity, the slot plan (RoutingBuffers), the auxiliary losses and backward
// (topk_route_forward / topk_route_backward, switchyard/routing.h).
//
// A family derives from SlotRouter and implements choose(); see router_topk.cc for the smallest.
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
  RoutingBuffers<T> route_;
  std::vector<T> dgate_;  // [N,K] the backward's per-slot gate gradient
};

namespace detail {
// s[N,E] = the scores (softmax or sigmoid, o.score) of z[N,E], as topk_route_forward computes
// them (BIP's scalar path and the optimal router score with it).
template <typename T>
void scores_of(const TopKOptions& o, const T* z, int64_t n, T* s);
}  // namespace detail

}  // namespace sy
