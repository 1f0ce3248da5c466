// The routing library on its own: link `switchyard::routing` (no model, trainer, MPI or config),
// hand it router logits, get a plan and its balance. This program routes one batch of skewed
// logits with every method and prints a table of their balance, and exits non-zero if a plan
// breaks an invariant (token-choice: K distinct experts per token and loads summing to N·K;
// Expert Choice: every expert the same number of tokens). `make test` runs it.
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
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "routing/balancer.h"
#include "routing/expert_choice.h"
#include "routing/optimal.h"
#include "routing/selector.h"
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

// Token-choice invariants of a plan, and its row of the table.
Row token_choice_row(const std::string& method, const sy::RoutingBuffers<float>& r) {
  Row row{method, std::vector<int64_t>(r.load.begin(), r.load.begin() + r.e), 0};
  for (int64_t t = 0; t < r.n; ++t) {
    std::set<int32_t> experts;
    for (int64_t k = 0; k < r.k; ++k) {
      const int32_t e = r.expert[t * r.k + k];
      experts.insert(e);
      row.objective += r.scores[t * r.e + e];
    }
    expect(static_cast<int64_t>(experts.size()) == r.k, method + ": K distinct experts per token");
  }
  expect(std::accumulate(row.load.begin(), row.load.end(), int64_t(0)) == r.n * r.k,
         method + ": loads sum to N·K");
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
  sy::RoutingBuffers<float> r;
  r.resize(N, E, K);
  std::vector<Row> rows;

  // Top-K of the scores.
  sy::topk_route_forward(o, z.data(), N, r);
  rows.push_back(token_choice_row("top-K", r));

  // Top-K of the scores plus the loss-free bias, after 100 sign updates on this batch.
  sy::BalancerOptions bo;
  bo.n_layers = 1;
  bo.n_experts = E;
  bo.top_k = K;
  bo.seq_len = N;
  bo.micro_batch = 1;
  bo.bias_update = sy::BiasUpdate::kSign;
  bo.bias_rate = 0.01;
  sy::Balancer<float> balancer(bo, nullptr);  // one process: the balancer's own LocalReducer
  for (int step = 0; step < 100; ++step) {
    balancer.begin_step(step);
    sy::topk_route_forward(o, z.data(), N, r, balancer.bias(0));
    balancer.end_step({std::vector<int64_t>(r.load.begin(), r.load.begin() + E)});
  }
  sy::topk_route_forward(o, z.data(), N, r, balancer.bias(0));
  rows.push_back(token_choice_row("loss-free bias (100 updates)", r));

  // The selection-stage routers: BIP, Sinkhorn, hash, the optimal assignment.
  struct Family {
    std::string name;
    sy::SelectorOptions so;
  };
  std::vector<Family> families;
  for (int t : {2, 16}) {
    sy::SelectorOptions so;
    so.type = sy::RouterType::kBip;
    so.bip_iterations = t;
    families.push_back({"BIP, T = " + std::to_string(t), so});
  }
  for (sy::RouterType type : {sy::RouterType::kSinkhorn, sy::RouterType::kHash,
                              sy::RouterType::kOptimal}) {
    sy::SelectorOptions so;
    so.type = type;
    families.push_back({type == sy::RouterType::kSinkhorn ? "Sinkhorn (S-BASE)"
                        : type == sy::RouterType::kHash   ? "hash"
                                                          : "optimal assignment",
                        so});
  }
  for (const Family& f : families) {
    sy::Selector<float> sel;
    sel.resize(f.so, o, N);
    std::vector<float> q(E, 0.0f);  // BIP's prices, from zero
    const sy::Selector<float>::Choice c =
        sel.select(f.so, o, z.data(), token_ids.data(), N, q.data(), nullptr, /*update=*/true);
    sy::topk_route_forward(o, z.data(), N, r, c.bias, c.forced);
    rows.push_back(token_choice_row(f.name, r));
  }

  // The optimum of Σ scores under capacity ceil(K·N/E): the yardstick of the objective column.
  const sy::BipShape shape = sy::bip_shape(N, E, K);
  std::vector<int32_t> best(N * K);
  std::vector<int64_t> best_load(E);
  sy::topk_route_forward(o, z.data(), N, r);  // the softmax scores
  const double optimum = sy::optimal_assign(shape, r.scores.data(), best.data(), best_load.data());

  // Expert Choice, capacity factor K: the same expert compute as top-K.
  sy::ExpertChoiceOptions eo;
  eo.n_experts = E;
  eo.capacity_factor = static_cast<double>(K);
  sy::ExpertChoiceBuffers<float> ec;
  ec.resize(eo, N);
  sy::ec_route_forward(eo, z.data(), N, nullptr, ec);
  Row ecr{"Expert Choice (c = K)", std::vector<int64_t>(E), 0};
  for (int64_t i = 0; i < E; ++i) ecr.load[i] = ec.offsets[i + 1] - ec.offsets[i];
  for (int64_t row = 0; row < ec.rows; ++row) ecr.objective += ec.gate_of_row[row];
  for (int64_t i = 0; i < E; ++i)
    expect(ecr.load[i] == ecr.load[0], "Expert Choice: every expert takes the same tokens");
  rows.push_back(ecr);

  std::printf("%lld tokens, %lld experts, top-%lld, skew %.2f; objective = Σ softmax score of the "
              "assignments / the capacity-constrained optimum\n",
              static_cast<long long>(N), static_cast<long long>(E), static_cast<long long>(K),
              skew);
  std::printf("%-30s %8s %8s %8s %10s\n", "method", "MaxVio", "EP(4)", "max load", "objective");
  for (const Row& row : rows) {
    const int64_t mx = *std::max_element(row.load.begin(), row.load.end());
    const double ep = E % 4 == 0 ? sy::ep_imbalance(row.load.data(), E, 4) : NAN;
    std::printf("%-30s %8.3f %8.3f %8lld %10.4f\n", row.method.c_str(),
                sy::maxvio(row.load.data(), E), ep, static_cast<long long>(mx),
                row.objective / optimum);
  }
  // The optimum is balanced by construction: it is the oracle.
  expect(*std::max_element(best_load.begin(), best_load.end()) <= shape.capacity,
         "optimal assignment within capacity");
  return failures == 0 ? 0 : 1;
}
