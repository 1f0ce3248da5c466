// The exact balanced assignment by min-cost flow (LEMON NetworkSimplex). The math is in optimal.h.
#include "routing/optimal.h"

#include <lemon/network_simplex.h>
#include <lemon/smart_graph.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace sy {

template <typename T>
double optimal_assign(const BipShape& sh, const T* s, int32_t* experts, int64_t* loads) {
  bip_validate(sh, "optimal_assign");
  const int64_t n = sh.n, m = sh.m, K = sh.k;
  double max_abs = 0;
  for (int64_t j = 0; j < n * m; ++j) {
    SY_CHECK(std::isfinite(static_cast<double>(s[j])),
             "optimal_assign: scores must be finite, got {} at [{}, {}]", s[j], j / m, j % m);
    max_abs = std::max(max_abs, std::abs(static_cast<double>(s[j])));
  }
  const double sigma =
      max_abs > 0 ? std::min(1e12, std::ldexp(1.0, 60) / (max_abs * static_cast<double>(n + m + 2)))
                  : 1.0;

  using Graph = lemon::SmartDigraph;
  Graph g;
  g.reserveNode(static_cast<int>(n + m + 1));
  g.reserveArc(static_cast<int>(n * m + m));
  std::vector<Graph::Node> token(n), expert(m);
  for (auto& v : token) v = g.addNode();
  for (auto& v : expert) v = g.addNode();
  const Graph::Node sink = g.addNode();
  Graph::ArcMap<int64_t> upper(g), cost(g);
  Graph::NodeMap<int64_t> supply(g, 0);
  std::vector<Graph::Arc> assign_arc(n * m);  // token→expert arc of (t, i) at t·m + i
  for (int64_t t = 0; t < n; ++t) {
    supply[token[t]] = K;
    for (int64_t i = 0; i < m; ++i) {
      const Graph::Arc a = assign_arc[t * m + i] = g.addArc(token[t], expert[i]);
      upper[a] = 1;
      cost[a] = -std::llround(sigma * static_cast<double>(s[t * m + i]));
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    const Graph::Arc a = g.addArc(expert[i], sink);
    upper[a] = sh.capacity;
    cost[a] = 0;
  }
  supply[sink] = -n * K;

  lemon::NetworkSimplex<Graph, int64_t, int64_t> ns(g);
  ns.upperMap(upper).costMap(cost).supplyMap(supply);
  const auto status = ns.run();
  // bip_validate guarantees feasibility (c·m ≥ K·n), and a DAG has no negative cycle.
  SY_CHECK(status == decltype(ns)::OPTIMAL,
           "optimal_assign: min-cost flow must be OPTIMAL, got status {} (n={}, m={}, k={}, c={})",
           static_cast<int>(status), n, m, K, sh.capacity);

  std::fill(loads, loads + m, int64_t(0));
  double objective = 0;
  for (int64_t t = 0; t < n; ++t) {
    int32_t* et = experts + t * K;
    int64_t cnt = 0;
    for (int64_t i = 0; i < m; ++i) {
      if (ns.flow(assign_arc[t * m + i]) == 0) continue;
      SY_CHECK(cnt < K, "optimal_assign: token {} must get {} experts, got more", t, K);
      et[cnt++] = static_cast<int32_t>(i);
      ++loads[i];
      objective += static_cast<double>(s[t * m + i]);
    }
    SY_CHECK(cnt == K, "optimal_assign: token {} must get {} experts, got {}", t, K, cnt);
    const T* st = s + t * m;
    // Descending score, ties lower index (the indices were collected in ascending order).
    std::stable_sort(et, et + K, [st](int32_t a, int32_t b) { return st[a] > st[b]; });
  }
  return objective;
}

template <typename T>
double assignment_objective(const BipShape& sh, const T* s, const int32_t* experts) {
  double acc = 0;
  for (int64_t t = 0; t < sh.n; ++t)
    for (int64_t k = 0; k < sh.k; ++k)
      acc += static_cast<double>(s[t * sh.m + experts[t * sh.k + k]]);
  return acc;
}

void assignment_loads(const BipShape& sh, const int32_t* experts, int64_t* loads) {
  std::fill(loads, loads + sh.m, int64_t(0));
  for (int64_t j = 0; j < sh.n * sh.k; ++j) ++loads[experts[j]];
}

template <typename T>
AssignmentReport assignment_report(const BipShape& sh, const T* s, const int32_t* experts,
                                   double optimal_objective, int64_t* loads, double dual) {
  AssignmentReport r;
  r.objective = assignment_objective(sh, s, experts);
  r.optimal_objective = optimal_objective;
  r.objective_gap = 1.0 - r.objective / optimal_objective;
  assignment_loads(sh, experts, loads);
  r.max_load = *std::max_element(loads, loads + sh.m);
  r.capacity_violation = r.max_load - sh.capacity;
  const double mean = static_cast<double>(sh.k * sh.n) / static_cast<double>(sh.m);
  r.maxvio = static_cast<double>(r.max_load) / mean - 1.0;
  r.dual_gap = dual / optimal_objective - 1.0;  // NaN stays NaN
  return r;
}

// NOLINTBEGIN(bugprone-macro-parentheses): T is a type, it cannot be parenthesized.
#define SY_INSTANTIATE(T)                                                                   \
  template double optimal_assign<T>(const BipShape&, const T*, int32_t*, int64_t*);         \
  template double assignment_objective<T>(const BipShape&, const T*, const int32_t*);       \
  template AssignmentReport assignment_report<T>(const BipShape&, const T*, const int32_t*, \
                                                 double, int64_t*, double);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
