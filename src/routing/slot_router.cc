#include "routing/slot_router.h"

#include "core/vec_math.h"
#include "routing/softmax.h"

namespace sy {

template <typename T>
SlotRouter<T>::SlotRouter(const TopKOptions& o, int64_t n_max) : o_(o) {
  route_.resize(n_max, o.n_experts, o.top_k);
  dgate_.assign(n_max * o.top_k, T(0));
}

template <typename T>
RoutingStats SlotRouter<T>::route(const T* z, int64_t n, const RouteCall<T>& call,
                                  RoutingPlan<T>& plan) {
  const int64_t E = o_.n_experts, K = o_.top_k;
  const Choice c = choose(z, n, call);
  RoutingStats st = topk_route_forward(o_, z, n, route_, c.bias, c.forced);
  // The slot plan as rows: rows are already expert-sorted; each row's token and gate.
  const RoutingBuffers<T>& r = route_;
  plan.n = n;
  plan.rows = r.rows;
  plan.dropped = r.dropped;
  std::copy(r.offsets.begin(), r.offsets.begin() + E + 1, plan.expert_offsets.begin());
  std::copy(r.load.begin(), r.load.begin() + E, plan.load.begin());
  std::copy(r.demand.begin(), r.demand.begin() + E, plan.demand.begin());
  for (int64_t row = 0; row < plan.rows; ++row) {
    const int32_t slot = r.slot_of_row[row];
    plan.token_of_row[row] = slot / static_cast<int32_t>(K);
    plan.gate_of_row[row] = r.gate[slot];
  }
  index_rows_by_token(plan, st);
  return st;
}

template <typename T>
void SlotRouter<T>::backward(const T* z, const RoutingPlan<T>& /*plan*/, const T* dgate_row,
                             T aux_scale, T* dz) {
  const RoutingBuffers<T>& r = route_;
  for (int64_t slot = 0; slot < r.n * o_.top_k; ++slot) {
    const int64_t row = r.row_of_slot[slot];
    dgate_[slot] = row < 0 ? T(0) : dgate_row[row];
  }
  topk_route_backward(o_, z, dgate_.data(), aux_scale, route_, dz);
}

namespace detail {
template <typename T>
void scores_of(const TopKOptions& o, const T* z, int64_t n, T* s) {
  const int64_t E = o.n_experts;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* zt = z + t * E;
    T* st = s + t * E;
    if (o.score == ScoreFn::kSigmoid) {
      for (int64_t i = 0; i < E; ++i) st[i] = T(1) / (T(1) + detail::fast_exp(-zt[i]));
    } else {
      detail::softmax_row(zt, E, st);
    }
  }
}
template void scores_of<float>(const TopKOptions&, const float*, int64_t, float*);
template void scores_of<double>(const TopKOptions&, const double*, int64_t, double*);
}  // namespace detail

template class SlotRouter<float>;
template class SlotRouter<double>;

}  // namespace sy
