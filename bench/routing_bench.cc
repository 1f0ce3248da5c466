// The routing step alone, from router logits z[N,E] (fp32, seeded standard normal) to a routing
// plan, for every router family, on the shapes of issue 4: N ∈ {2048, 8192}, E ∈ {16, 64},
// K ∈ {4, 6}. Google Benchmark; items/s = tokens/s. Buffers are sized once, outside the loop.
//
//   topk       topk_route_forward (softmax, top-K, renormalised gates, dropless plan)
//   lossfree   the same with a bias vector b[E] (selection by scores + b, gates from scores)
//   ec         ec_route_forward, capacity factor = K, one group of all N tokens
//   bip/T      what the model does (Selector, as-published): softmax scores → bip_iterate T
//              times on the layer's warm q → topk_route_forward with bias −q
//   sinkhorn   sinkhorn_route_forward, 8 iterations, raw gates
//
// The PyTorch counterparts are in torch_routing_bench.py; scripts/routing_bench.sh runs both.
//   ./build/bench/routing_bench --benchmark_filter=BM_Bip
//   SY_BENCH_THREADS=1 ./build/bench/routing_bench    (one core; default 2 threads)
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "routing/expert_choice.h"
#include "routing/sinkhorn.h"
#include "switchyard/router.h"
#include "switchyard/routing.h"

namespace {

// z[N,E] ~ N(0, 1), the same for a given shape in every benchmark.
std::vector<float> logits(int64_t n, int64_t e) {
  std::mt19937_64 rng(1234 + static_cast<uint64_t>(n * 131 + e));
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> z(n * e);
  for (float& v : z) v = normal(rng);
  return z;
}

sy::TopKOptions topk_options(int64_t e, int64_t k) {
  sy::TopKOptions o;
  o.n_experts = e;
  o.top_k = k;
  return o;
}

void finish(benchmark::State& st, int64_t n) {
  st.SetItemsProcessed(st.iterations() * n);
  st.counters["n"] = static_cast<double>(n);
}

// args: n, E, K
void BM_TopK(benchmark::State& st) {
  const int64_t n = st.range(0), e = st.range(1), k = st.range(2);
  const auto z = logits(n, e);
  const auto o = topk_options(e, k);
  sy::RoutingBuffers<float> buf;
  buf.resize(n, e, k);
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    benchmark::DoNotOptimize(sy::topk_route_forward(o, z.data(), n, buf));
    benchmark::ClobberMemory();
  }
  finish(st, n);
}

// args: n, E, K
void BM_LossFree(benchmark::State& st) {
  const int64_t n = st.range(0), e = st.range(1), k = st.range(2);
  const auto z = logits(n, e);
  const auto o = topk_options(e, k);
  // A balancer's bias after some training: small, of either sign.
  std::vector<float> bias(e);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> uni(-0.05f, 0.05f);
  for (float& b : bias) b = uni(rng);
  sy::RoutingBuffers<float> buf;
  buf.resize(n, e, k);
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    benchmark::DoNotOptimize(sy::topk_route_forward(o, z.data(), n, buf, bias.data()));
    benchmark::ClobberMemory();
  }
  finish(st, n);
}

// args: n, E, K
void BM_ExpertChoice(benchmark::State& st) {
  const int64_t n = st.range(0), e = st.range(1), k = st.range(2);
  const auto z = logits(n, e);
  sy::ExpertChoiceOptions o;
  o.n_experts = e;
  o.capacity_factor = static_cast<double>(k);
  sy::ExpertChoiceBuffers<float> buf;
  buf.resize(o, n);
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    sy::ec_route_forward(o, z.data(), n, nullptr, buf);
    benchmark::ClobberMemory();
  }
  finish(st, n);
}

// args: n, E, K, T. The BIP router (switchyard/router.h) as training calls it: T iterations on
// the call's scores, then top-K of s − q and the plan (since the router interface, with the
// plan's rows: about N·K integer writes more than before).
void BM_Bip(benchmark::State& st) {
  const int64_t n = st.range(0), e = st.range(1), k = st.range(2);
  const auto z = logits(n, e);
  const auto o = topk_options(e, k);
  sy::RouterOptions ro;
  ro.type = "bip";
  ro.bip_iterations = static_cast<int>(st.range(3));
  ro.bip_mode = sy::BipMode::kAsPublished;
  const std::unique_ptr<sy::Router<float>> router = sy::make_router<float>(ro, o, n);
  sy::RoutingPlan<float> plan;
  plan.resize(n, e, n * k);
  const sy::RouteCall<float> call;  // a training call: q moves
  auto step = [&] { return router->route(z.data(), n, call, plan); };
  for (int i = 0; i < 8; ++i) step();  // warm q, as in training after the first steps
  for (auto _ : st) {                  // NOLINT(clang-analyzer-deadcode.DeadStores)
    benchmark::DoNotOptimize(step());
    benchmark::ClobberMemory();
  }
  finish(st, n);
}

// args: n, E, K
void BM_Sinkhorn(benchmark::State& st) {
  const int64_t n = st.range(0), e = st.range(1), k = st.range(2);
  const auto z = logits(n, e);
  const sy::SinkhornOptions o{e, k, 8, sy::GateFn::kRaw};
  sy::SinkhornBuffers<float> buf;
  buf.resize(o, n);
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    benchmark::DoNotOptimize(sy::sinkhorn_route_forward(o, z.data(), n, buf));
    benchmark::ClobberMemory();
  }
  finish(st, n);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {2048, 8192})
    for (int64_t e : {16, 64})
      for (int64_t k : {4, 6}) b->Args({n, e, k});
}

void bip_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t t : {1, 2, 4})
    for (int64_t n : {2048, 8192})
      for (int64_t e : {16, 64})
        for (int64_t k : {4, 6}) b->Args({n, e, k, t});
}

}  // namespace

BENCHMARK(BM_TopK)->Apply(shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_LossFree)->Apply(shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_ExpertChoice)->Apply(shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Bip)->Apply(bip_shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Sinkhorn)->Apply(shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();

int main(int argc, char** argv) {
  // 2 threads (the comparison with PyTorch); SY_BENCH_THREADS=1 times one core alone, which is
  // steadier on the shared machine when the other core is busy.
  const char* threads = std::getenv("SY_BENCH_THREADS");
  omp_set_num_threads(threads != nullptr ? std::max(1, std::atoi(threads)) : 2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
