// The optimizer's update pass against the memory bandwidth bound, in the same run.
//
// AdamW with zeroing (train_step.cc's update) reads four arrays of n floats — weights, gradients,
// both moments — and writes all four back: 32 bytes per parameter. Its bandwidth bound is what
// the same eight streams take with no arithmetic to speak of (BM_SameStreams: each array read
// and written once, in the same order and the same per-thread split). The gradient norm reads
// one array (BM_GradNorm, against BM_ReadStream). n is a model's parameter count: 17.8 M (SMALL)
// and 218 M (MEDIUM). Items/s = parameters per second; bytes/s = bytes moved per second.
//   ./build/bench/update_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/buffer.h"
#include "train/optimizer.h"

namespace sy {
namespace {

// n floats, every page touched (first touch by both threads, as the model's buffers are).
Buffer<float> filled(int64_t n, float value) {
  Buffer<float> b;
  b.reset(static_cast<size_t>(n));
  float* p = b.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = value;
  return b;
}

// One tensor covering the block, decayed: AdamW's loop without per-tensor splits.
std::vector<ParamInfo> one_tensor(int64_t n) {
  ParamInfo p;
  p.name = "block";
  p.shape = {n};
  p.numel = n;
  return {p};
}

void BM_AdamWZeroing(benchmark::State& st) {
  const int64_t n = st.range(0);
  Buffer<float> w = filled(n, 0.5f), g = filled(n, 1e-3f);
  AdamW opt(one_tensor(n), n);
  TrainConfig tc;
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    opt.step(w.data(), g.data(), 1e-3, 1.0, tc, nullptr, /*zero_grads=*/true);
    benchmark::DoNotOptimize(w.data());
  }
  st.SetItemsProcessed(st.iterations() * n);
  st.SetBytesProcessed(st.iterations() * n * 32);
}

// The same four arrays read and written once each, split over the threads as AdamW splits them.
void BM_SameStreams(benchmark::State& st) {
  const int64_t n = st.range(0);
  Buffer<float> w = filled(n, 0.5f), g = filled(n, 1e-3f), m = filled(n, 0.f), v = filled(n, 0.f);
  float *pw = w.data(), *pg = g.data(), *pm = m.data(), *pv = v.data();
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
#pragma omp parallel
    {
      const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t share = (n + nt * 64 - 1) / (nt * 64) * 64;
      const int64_t lo = std::min(n, tid * share), hi = std::min(n, lo + share);
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) {
        const float gi = pg[i];
        pg[i] = 0.f;
        pm[i] += gi;
        pv[i] += gi;
        pw[i] -= pm[i] + pv[i];
      }
    }
    benchmark::DoNotOptimize(pw);
  }
  st.SetItemsProcessed(st.iterations() * n);
  st.SetBytesProcessed(st.iterations() * n * 32);
}

void BM_GradNorm(benchmark::State& st) {
  const int64_t n = st.range(0);
  Buffer<float> g = filled(n, 1e-3f);
  for (auto _ : st)  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    benchmark::DoNotOptimize(sum_of_squares(g.data(), n));
  st.SetItemsProcessed(st.iterations() * n);
  st.SetBytesProcessed(st.iterations() * n * 4);
}

// One array read once, summed (float lanes: no conversion work), the threads' contiguous shares.
void BM_ReadStream(benchmark::State& st) {
  const int64_t n = st.range(0);
  Buffer<float> g = filled(n, 1e-3f);
  const float* p = g.data();
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    float s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += p[i];
    benchmark::DoNotOptimize(s);
  }
  st.SetItemsProcessed(st.iterations() * n);
  st.SetBytesProcessed(st.iterations() * n * 4);
}

constexpr int64_t kSmall = 17'800'000, kMedium = 218'400'000;

BENCHMARK(BM_AdamWZeroing)->Arg(kSmall)->Arg(kMedium)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SameStreams)->Arg(kSmall)->Arg(kMedium)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GradNorm)->Arg(kSmall)->Arg(kMedium)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadStream)->Arg(kSmall)->Arg(kMedium)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace sy

BENCHMARK_MAIN();
