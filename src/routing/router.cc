// The router registry (switchyard/router.h) and what every router shares: the row plan's
// token-major index and the defaults of the interface.
#include "switchyard/router.h"

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace sy {

// ---- The families. A new router: its file (router_<name>.cc), one declaration and one line
// in kFamilies below, its source in CMakeLists.txt, its options (config schema) and its docs.
#define SY_DECLARE_ROUTER(fn) \
  template <typename T>       \
  std::unique_ptr<Router<T>> fn(const RouterOptions& ro, const TopKOptions& o, int64_t n_max);
SY_DECLARE_ROUTER(make_topk_router)
SY_DECLARE_ROUTER(make_bip_router)
SY_DECLARE_ROUTER(make_sinkhorn_router)
SY_DECLARE_ROUTER(make_hash_router)
SY_DECLARE_ROUTER(make_optimal_router)
SY_DECLARE_ROUTER(make_expert_choice_router)
#undef SY_DECLARE_ROUTER

namespace {
#define SY_FAMILY(name, fn) \
  RouterFamily { name, &fn<float>, &fn<double> }
const RouterFamily kFamilies[] = {
    SY_FAMILY("topk", make_topk_router),
    SY_FAMILY("bip", make_bip_router),
    SY_FAMILY("sinkhorn", make_sinkhorn_router),
    SY_FAMILY("hash", make_hash_router),
    SY_FAMILY("optimal", make_optimal_router),
    SY_FAMILY("expert_choice", make_expert_choice_router),
};
#undef SY_FAMILY
}  // namespace

const std::vector<std::string>& router_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const RouterFamily& f : kFamilies) v.emplace_back(f.name);
    return v;
  }();
  return names;
}

template <typename T>
std::unique_ptr<Router<T>> make_router(const RouterOptions& o, const TopKOptions& topk,
                                       int64_t n_max) {
  auto build = [&](const RouterFamily& f) {
    RouterFactory<T> make = nullptr;
    if constexpr (std::is_same_v<T, float>) make = f.make_float;
    if constexpr (std::is_same_v<T, double>) make = f.make_double;
    SY_CHECK(make != nullptr, "make_router: router family \"{}\" has no factory for this precision",
             f.name);
    return make(o, topk, n_max);
  };
  if (o.family != nullptr) return build(*o.family);
  for (const RouterFamily& f : kFamilies)
    if (o.type == f.name) return build(f);
  std::string names;
  for (const RouterFamily& f : kFamilies)
    names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", f.name);
  fail(fmt::format("make_router: router type must be one of {}, got \"{}\"", names, o.type));
}
template std::unique_ptr<Router<float>> make_router(const RouterOptions&, const TopKOptions&,
                                                    int64_t);
template std::unique_ptr<Router<double>> make_router(const RouterOptions&, const TopKOptions&,
                                                     int64_t);

BipMode parse_bip_mode(const std::string& s) {
  if (s == "as-published") return BipMode::kAsPublished;
  if (s == "causal") return BipMode::kCausal;
  fail(fmt::format("BIP mode must be one of \"as-published\", \"causal\", got \"{}\"", s));
}

// ---- What every router shares -----------------------------------------------------------------

template <typename T>
void RoutingPlan<T>::resize(int64_t n_max, int64_t n_experts, int64_t max_rows) {
  expert_offsets.assign(n_experts + 1, 0);
  token_of_row.assign(max_rows, 0);
  gate_of_row.assign(max_rows, T(0));
  token_offsets.assign(n_max + 1, 0);
  token_rows.assign(max_rows, 0);
  load.assign(n_experts, 0);
  demand.assign(n_experts, 0);
}

template <typename T>
void index_rows_by_token(RoutingPlan<T>& plan, RoutingStats& st) {
  const int64_t n = plan.n;
  int64_t* off = plan.token_offsets.data();
  std::fill(off, off + n + 1, int64_t(0));
  for (int64_t r = 0; r < plan.rows; ++r) ++off[plan.token_of_row[r] + 1];
  for (int64_t t = 0; t < n; ++t) {
    ++st.experts_per_token[std::min<int64_t>(off[t + 1], 5)];
    off[t + 1] += off[t];
  }
  // Fill using a running cursor per token: the start of each token's range, advanced in place,
  // then restored by shifting.
  for (int64_t r = 0; r < plan.rows; ++r)
    plan.token_rows[off[plan.token_of_row[r]]++] = static_cast<int32_t>(r);
  for (int64_t t = n; t > 0; --t) off[t] = off[t - 1];
  off[0] = 0;
}

template <typename T>
std::vector<StateTensor<const T>> Router<T>::state() const {
  std::vector<StateTensor<const T>> out;
  for (const StateTensor<T>& s : const_cast<Router*>(this)->state())
    out.push_back({s.name, s.data, s.size, s.required, s.rank_mean});
  return out;
}

template <typename T>
void Router<T>::restart_state(const std::string& name) {
  fail(fmt::format("router: the state {} cannot be restarted", name));
}

template struct RoutingPlan<float>;
template struct RoutingPlan<double>;
template void index_rows_by_token(RoutingPlan<float>&, RoutingStats&);
template void index_rows_by_token(RoutingPlan<double>&, RoutingStats&);
template class Router<float>;
template class Router<double>;

}  // namespace sy
