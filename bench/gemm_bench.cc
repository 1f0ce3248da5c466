// The GEMM backends on switchyard's shapes (SMALL: N = 2048 tokens, D = 256, F = 256, E = 16,
// K = 4 → ~512 rows per expert, V = 8192), forward and both backward orientations.
// Google Benchmark; items/s = FLOP/s. This is the measurement behind the default backend.
//   ./build/bench/gemm_bench --benchmark_filter=...
#include <benchmark/benchmark.h>
#include <omp.h>

#include "core/buffer.h"
#include "core/gemm.h"

namespace {

// args: backend, ta, tb, m, n, k, threads
void BM_Gemm(benchmark::State& st) {
  const auto be = st.range(0) == 0 ? sy::GemmBackend::kOneDnn : sy::GemmBackend::kOpenBlas;
  const bool ta = st.range(1), tb = st.range(2);
  const int64_t m = st.range(3), n = st.range(4), k = st.range(5);
  omp_set_num_threads(static_cast<int>(st.range(6)));
  sy::set_gemm_backend(be);
  sy::Buffer<float> a(m * k), b(k * n), c(m * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.001f * static_cast<float>(i % 101);
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.001f * static_cast<float>(i % 97);
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    sy::gemm(ta, tb, m, n, k, 1.f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  st.SetItemsProcessed(st.iterations() * 2 * m * n * k);
  st.SetLabel(std::string(sy::gemm_backend_name(be)) + (ta ? " T" : " N") + (tb ? "T" : "N") + " " +
              std::to_string(st.range(6)) + "t");
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int be : {0, 1}) {
    // expert forward gate|up: [512, 256] · [512, 256]ᵀ, down: [512, 256] · [256, 256]ᵀ
    b->Args({be, 0, 1, 512, 512, 256, 2});
    b->Args({be, 0, 1, 512, 256, 256, 2});
    // expert backward: dX = dY · W (NN), dW = dYᵀ · X (TN)
    b->Args({be, 0, 0, 512, 256, 512, 2});
    b->Args({be, 1, 0, 512, 256, 512, 2});
    // qkv projection and LM head
    b->Args({be, 0, 1, 2048, 768, 256, 2});
    b->Args({be, 0, 1, 2048, 8192, 256, 2});
    b->Args({be, 1, 0, 8192, 256, 2048, 2});
    b->Args({be, 0, 0, 1024, 1024, 1024, 2});
  }
  // MEDIUM's experts (≈ 192 rows, D = 512, F = 256) on one thread, as they run side by side:
  // forward gate|up and down (NT); backward dact = dy·W_down, dx = dhu·W_gu (NN), and the weight
  // gradients dW_down = dyᵀ·act, dW_gu = dhuᵀ·x (TN, reducing over the 192 rows).
  for (int be : {0, 1}) {
    b->Args({be, 0, 1, 192, 512, 512, 1});
    b->Args({be, 0, 1, 192, 512, 256, 1});
    b->Args({be, 0, 0, 192, 256, 512, 1});
    b->Args({be, 0, 0, 192, 512, 512, 1});
    b->Args({be, 1, 0, 512, 256, 192, 1});
    b->Args({be, 1, 0, 512, 512, 192, 1});
  }
}

}  // namespace

BENCHMARK(BM_Gemm)->Apply(shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
