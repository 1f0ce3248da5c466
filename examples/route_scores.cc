// The routing library on its own: link `switchyard::routing` (no model, trainer, MPI or config),
// hand a Router (switchyard/router.h) router logits, get a plan and its balance. This program
// routes one batch of skewed logits with every registered router family and prints a table of
// their balance, and exits non-zero if a plan breaks an invariant (token choice: K distinct
// experts per token and loads summing to N·K; Expert Choice: every expert the same number of
// tokens). `make test` runs it.
//
//   build/examples/route_scores [N tokens, default 2048] [E experts, 16] [K, 4] [skew, 1.5]
//
// The logits z[t,i] = ε[t,i] + skew·(1 − 2i/(E−1)), ε standard normal (seed 1): expert 0 is
// favoured, expert E−1 shunned, as in a router early in training. Methods (docs/routing.md):
// top-K; top-K with the loss-free bias after 100 sign updates of rate 0.01 on this batch; BIP
// (T = 2 and T = 16, prices from zero); Sinkhorn (S-BASE, 8 iterations); hash; the optimal
// assignment (LEMON min-cost flow); Expert Choice with capacity factor K.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "switchyard/balancer.h"
#include "routing/optimal.h"
#include "switchyard/router.h"
#include "switchyard/routing.h"

namespace {

struct Row {
  std::string method;
  std::vector<int64_t> load;
  double objective = 0;  // Σ over kept assignments of the softmax score
};

int failures = 0;
void expect(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "route_scores: FAILED: %s\n", what.c_str());
  ++failures;
}

// A plan's row of the table, checking its invariants: token choice (K experts per token): K
// distinct experts per token and loads summing to N·K; Expert Choice: equal loads. p[N,E] are the
// softmax scores; the objective sums them over the plan's rows.
Row plan_row(const std::string& method, const sy::RoutingPlan<float>& plan,
             const std::vector<float>& p, int64_t E, int64_t K, bool token_choice) {
  Row row{method, std::vector<int64_t>(plan.load.begin(), plan.load.begin() + E), 0};
  std::vector<int32_t> expert_of_row(plan.rows);
  for (int64_t i = 0; i < E; ++i)
    for (int64_t r = plan.expert_offsets[i]; r < plan.expert_offsets[i + 1]; ++r)
      expert_of_row[r] = static_cast<int32_t>(i);
  for (int64_t r = 0; r < plan.rows; ++r)
    row.objective += p[plan.token_of_row[r] * E + expert_of_row[r]];
  if (token_choice) {
    for (int64_t t = 0; t < plan.n; ++t) {
      std::set<int32_t> experts;
      for (int64_t q = plan.token_offsets[t]; q < plan.token_offsets[t + 1]; ++q)
        experts.insert(expert_of_row[plan.token_rows[q]]);
      expect(static_cast<int64_t>(experts.size()) == K, method + ": K distinct experts per token");
    }
    expect(std::accumulate(row.load.begin(), row.load.end(), int64_t(0)) == plan.n * K,
           method + ": loads sum to N·K");
  } else {
    for (int64_t i = 0; i < E; ++i)
      expect(row.load[i] == row.load[0], method + ": every expert takes the same tokens");
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int64_t E = argc > 2 ? std::atoll(argv[2]) : 16;
  const int64_t K = argc > 3 ? std::atoll(argv[3]) : 4;
  const double skew = argc > 4 ? std::atof(argv[4]) : 1.5;
  if (N < 1 || E < 2 || K < 1 || K > E || E > 1024) {
    std::fprintf(stderr, "usage: route_scores [N >= 1] [2 <= E <= 1024] [1 <= K <= E] [skew]\n");
    return 2;
  }
  std::vector<float> z(N * E);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < E; ++i)
      z[t * E + i] = normal(rng) + static_cast<float>(skew * (1.0 - 2.0 * i / (E - 1)));
  std::vector<int32_t> token_ids(N);
  for (int64_t t = 0; t < N; ++t) token_ids[t] = static_cast<int32_t>((t * 7919) % 8192);

  sy::TopKOptions o;
  o.n_experts = E;
  o.top_k = K;
  std::vector<float> p(N * E);  // the softmax scores, for the objective
  for (int64_t t = 0; t < N; ++t) {
    const float* zt = z.data() + t * E;
    const float m = *std::max_element(zt, zt + E);
    double sum = 0;
    for (int64_t i = 0; i < E; ++i) sum += std::exp(static_cast<double>(zt[i] - m));
    for (int64_t i = 0; i < E; ++i)
      p[t * E + i] = static_cast<float>(std::exp(static_cast<double>(zt[i] - m)) / sum);
  }
  std::vector<Row> rows;

  // Every registered family, in a training call, from fresh state (BIP's prices at zero).
  // BIP twice: T = 2 (the default) and T = 16.
  struct Case {
    std::string label;
    sy::RouterOptions ro;
  };
  std::vector<Case> cases;
  for (const std::string& name : sy::router_names()) {
    sy::RouterOptions ro;
    ro.type = name;
    ro.ec_capacity_factor = static_cast<double>(K);  // Expert Choice: top-K's expert compute
    cases.push_back({name == "bip" ? "bip, T = 2" : name, ro});
    if (name == "bip") {
      ro.bip_iterations = 16;
      cases.push_back({"bip, T = 16", ro});
    }
  }
  sy::RouteCall<float> call;
  call.token_ids = token_ids.data();
  call.first_batch = true;
  for (const Case& c : cases) {
    std::unique_ptr<sy::Router<float>> router = sy::make_router<float>(c.ro, o, N);
    sy::RoutingPlan<float> plan;
    plan.resize(N, E, N * router->max_experts_per_token());
    router->route(z.data(), N, call, plan);
    rows.push_back(plan_row(c.label, plan, p, E, K, router->slots() != nullptr));
  }

  // Top-K of the scores plus the loss-free bias (the balancer's), after 100 sign updates of rate
  // 0.01 on this batch.
  sy::BalancerOptions bo;
  bo.n_layers = 1;
  bo.n_experts = E;
  bo.top_k = K;
  bo.seq_len = N;
  bo.micro_batch = 1;
  bo.bias_update = sy::BiasUpdate::kSign;
  bo.bias_rate = 0.01;
  sy::Balancer<float> balancer(bo, nullptr);  // one process: the balancer's own LocalReducer
  sy::RouterOptions topk;
  std::unique_ptr<sy::Router<float>> router = sy::make_router<float>(topk, o, N);
  sy::RoutingPlan<float> plan;
  plan.resize(N, E, N * K);
  for (int step = 0; step < 100; ++step) {
    balancer.begin_step(step);
    call.bias = balancer.bias(0);
    router->route(z.data(), N, call, plan);
    balancer.end_step({std::vector<int64_t>(plan.load.begin(), plan.load.begin() + E)});
  }
  call.bias = balancer.bias(0);
  router->route(z.data(), N, call, plan);
  rows.push_back(plan_row("topk + loss-free bias (100 updates)", plan, p, E, K, true));

  // The optimum of Σ scores under capacity ceil(K·N/E): the yardstick of the objective column.
  const sy::BipShape shape = sy::bip_shape(N, E, K);
  std::vector<int32_t> best(N * K);
  std::vector<int64_t> best_load(E);
  const double optimum = sy::optimal_assign(shape, p.data(), best.data(), best_load.data());

  std::printf(
      "%lld tokens, %lld experts, top-%lld, skew %.2f; objective = Σ softmax score of the "
      "assignments / the capacity-constrained optimum\n",
      static_cast<long long>(N), static_cast<long long>(E), static_cast<long long>(K), skew);
  std::printf("%-36s %8s %8s %8s %10s\n", "method", "MaxVio", "EP(4)", "max load", "objective");
  for (const Row& row : rows) {
    const int64_t mx = *std::max_element(row.load.begin(), row.load.end());
    const double ep = E % 4 == 0 ? sy::ep_imbalance(row.load.data(), E, 4) : NAN;
    std::printf("%-36s %8.3f %8.3f %8lld %10.4f\n", row.method.c_str(),
                sy::maxvio(row.load.data(), E), ep, static_cast<long long>(mx),
                row.objective / optimum);
  }
  // The optimum is balanced by construction: it is the oracle.
  expect(*std::max_element(best_load.begin(), best_load.end()) <= shape.capacity,
         "optimal assignment within capacity");
  return failures == 0 ? 0 : 1;
}
