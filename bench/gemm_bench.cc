// The GEMM backends on switchyard's shapes (SMALL: N = 2048 tokens, D = 256, F = 256, E = 16,
// K = 4 → ~512 rows per expert, V = 8192), forward and both backward orientations.
// Google Benchmark; items/s = FLOP/s. This is the measurement behind the default backend.
//   ./build/bench/gemm_bench --benchmark_filter=...
#include <benchmark/benchmark.h>
#include <omp.h>

#include "core/buffer.h"
#include "core/gemm.h"

namespace {

// args: backend, ta, tb, m, n, k
void BM_Gemm(benchmark::State& st) {
  const auto be = st.range(0) == 0 ? sy::GemmBackend::kOneDnn : sy::GemmBackend::kOpenBlas;
  const bool ta = st.range(1), tb = st.range(2);
  const int64_t m = st.range(3), n = st.range(4), k = st.range(5);
  sy::set_gemm_backend(be);
  sy::Buffer<float> a(m * k), b(k * n), c(m * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.001f * static_cast<float>(i % 101);
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.001f * static_cast<float>(i % 97);
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    sy::gemm(ta, tb, m, n, k, 1.f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  st.SetItemsProcessed(st.iterations() * 2 * m * n * k);
  st.SetLabel(std::string(sy::gemm_backend_name(be)) + (ta ? " T" : " N") + (tb ? "T" : "N"));
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int be : {0, 1}) {
    // expert forward gate|up: [512, 256] · [512, 256]ᵀ, down: [512, 256] · [256, 256]ᵀ
    b->Args({be, 0, 1, 512, 512, 256});
    b->Args({be, 0, 1, 512, 256, 256});
    // expert backward: dX = dY · W (NN), dW = dYᵀ · X (TN)
    b->Args({be, 0, 0, 512, 256, 512});
    b->Args({be, 1, 0, 512, 256, 512});
    // qkv projection and LM head
    b->Args({be, 0, 1, 2048, 768, 256});
    b->Args({be, 0, 1, 2048, 8192, 256});
    b->Args({be, 1, 0, 8192, 256, 2048});
    b->Args({be, 0, 0, 1024, 1024, 1024});
  }
}

}  // namespace

BENCHMARK(BM_Gemm)->Apply(shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();

int main(int argc, char** argv) {
  omp_set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
