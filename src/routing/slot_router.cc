#include "routing/slot_router.h"

#include <algorithm>

#include "core/error.h"
#include "core/vec_math.h"
#include "routing/softmax.h"

namespace sy {

template <typename T>
SlotRouter<T>::SlotRouter(const TopKOptions& o, int64_t n_max) : o_(o) {
  route_.resize(n_max, o.n_experts, o.top_k);
  dgate_.assign(n_max * o.top_k, T(0));
  if (o.max_groups > 0) {
    SY_CHECK(o.groups >= 2 && o.groups <= 64 && o.n_experts % o.groups == 0 &&
                 o.max_groups <= o.groups && o.max_groups * (o.n_experts / o.groups) >= o.top_k,
             "SlotRouter: device-limited routing needs 2 <= groups <= 64 dividing n_experts ({}) "
             "and max_groups <= groups with room for top_k ({}) experts, got groups {}, "
             "max_groups {}",
             o.n_experts, o.top_k, o.groups, o.max_groups);
    scores_.assign(n_max * o.n_experts, T(0));
    limited_.assign(n_max * o.top_k, 0);
  }
}

template <typename T>
const int32_t* SlotRouter<T>::limit_groups(const T* z, int64_t n, const T* bias) {
  const int64_t E = o_.n_experts, K = o_.top_k, G = o_.groups, M = o_.max_groups, per = E / G;
  detail::scores_of(o_, z, n, scores_.data());
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* s = scores_.data() + t * E;
    // The M groups with the highest affinity (their best score; ties: the lower group).
    uint64_t chosen = 0;  // bit g: group g allowed (G ≤ 64, validated)
    for (int64_t m = 0; m < M; ++m) {
      int64_t best = -1;
      T best_v = T(0);
      for (int64_t g = 0; g < G; ++g) {
        if (chosen >> g & 1) continue;
        T v = s[g * per];
        for (int64_t i = g * per + 1; i < (g + 1) * per; ++i) v = std::max(v, s[i]);
        if (best < 0 || v > best_v) best = g, best_v = v;
      }
      chosen |= uint64_t{1} << best;
    }
    // The K best of score + bias among their experts, in descending order (ties: lower index).
    int32_t* out = limited_.data() + t * K;
    for (int64_t k = 0; k < K; ++k) {
      int64_t best = -1;
      T best_v = T(0);
      for (int64_t i = 0; i < E; ++i) {
        if (!(chosen >> (i / per) & 1)) continue;
        bool taken = false;
        for (int64_t j = 0; j < k; ++j) taken |= out[j] == i;
        if (taken) continue;
        const T v = s[i] + (bias ? bias[i] : T(0));
        if (best < 0 || v > best_v) best = i, best_v = v;
      }
      out[k] = static_cast<int32_t>(best);
    }
  }
  return limited_.data();
}

template <typename T>
RoutingStats SlotRouter<T>::route(const T* z, int64_t n, const RouteCall<T>& call,
                                  RoutingPlan<T>& plan) {
  const int64_t E = o_.n_experts, K = o_.top_k;
  Choice c = choose(z, n, call);
  if (o_.max_groups > 0 && c.forced == nullptr) c = {nullptr, limit_groups(z, n, c.bias)};
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
