// Kernel throughput at the SMALL model's shapes (N = B·S = 2048, D = 256, H = 4, hd = 64,
// S = 256, V = 8192, F = 256, top-4 → 4·N expert rows). Items are tokens (rows).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"

namespace sy {
namespace {

constexpr int64_t kB = 8, kS = 256, kN = kB * kS, kD = 256, kH = 4, kHd = 64, kV = 8192, kF = 256;

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

void BM_AttentionForward(benchmark::State& state) {
  const int64_t ld = 3 * kD;
  auto qkv = random_floats(kN * ld, 1);
  std::vector<float> out(kN * kD), att(kB * kH * kS * kS);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    attention_forward(out.data(), att.data(), qkv.data(), qkv.data() + kD, qkv.data() + 2 * kD, kB,
                      kS, kH, kHd, ld);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_AttentionForward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AttentionBackward(benchmark::State& state) {
  const int64_t ld = 3 * kD;
  auto qkv = random_floats(kN * ld, 1);
  auto dout = random_floats(kN * kD, 2);
  std::vector<float> out(kN * kD), att(kB * kH * kS * kS), dqkv(kN * ld);
  std::vector<float> scratch(attention_scratch_size(kS, omp_get_max_threads()));
  attention_forward(out.data(), att.data(), qkv.data(), qkv.data() + kD, qkv.data() + 2 * kD, kB,
                    kS, kH, kHd, ld);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    attention_backward(dqkv.data(), dqkv.data() + kD, dqkv.data() + 2 * kD, scratch.data(),
                       dout.data(), qkv.data(), qkv.data() + kD, qkv.data() + 2 * kD, att.data(),
                       kB, kS, kH, kHd, ld);
    benchmark::DoNotOptimize(dqkv.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_AttentionBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_XentForwardBackward(benchmark::State& state) {
  auto logits = random_floats(kN * kV, 1);
  std::vector<int32_t> targets(kN);
  for (int64_t n = 0; n < kN; ++n) targets[n] = static_cast<int32_t>((n * 7919) % kV);
  std::vector<float> losses(kN), lse(2 * kN), dlogits(kN * kV);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    xent_forward(losses.data(), logits.data(), targets.data(), kN, kV, lse.data());
    xent_backward(dlogits.data(), logits.data(), targets.data(), 1.f / kN, kN, kV, lse.data());
    benchmark::DoNotOptimize(dlogits.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_XentForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_RmsnormForwardBackward(benchmark::State& state) {
  auto inp = random_floats(kN * kD, 1), w = random_floats(kD, 2), dout = random_floats(kN * kD, 3);
  std::vector<float> out(kN * kD), rstd(kN), dinp(kN * kD), dw(kD);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), kN, kD, 1e-6f);
    rmsnorm_backward(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), rstd.data(), kN,
                     kD);
    benchmark::DoNotOptimize(dinp.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_RmsnormForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_SwigluForwardBackward(benchmark::State& state) {
  const int64_t rows = 4 * kN;
  auto hu = random_floats(rows * 2 * kF, 1), dout = random_floats(rows * kF, 2);
  std::vector<float> out(rows * kF), dhu(rows * 2 * kF);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    swiglu_forward(out.data(), hu.data(), rows, kF);
    swiglu_backward(dhu.data(), dout.data(), hu.data(), rows, kF);
    benchmark::DoNotOptimize(dhu.data());
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_SwigluForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_RopeForwardBackward(benchmark::State& state) {
  const int64_t ld = 3 * kD;
  auto qkv = random_floats(kN * ld, 1);
  std::vector<float> cos(kS * kHd / 2), sin(kS * kHd / 2);
  rope_tables(cos.data(), sin.data(), kS, kHd, 10000.0);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    rope_forward(qkv.data(), cos.data(), sin.data(), kB, kS, 2 * kH, kHd, ld);  // q and k at once
    rope_backward(qkv.data(), cos.data(), sin.data(), kB, kS, 2 * kH, kHd, ld);
    benchmark::DoNotOptimize(qkv.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_RopeForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_EmbeddingForwardBackward(benchmark::State& state) {
  auto wte = random_floats(kV * kD, 1), dout = random_floats(kN * kD, 2);
  std::vector<int32_t> tokens(kN);
  for (int64_t n = 0; n < kN; ++n) tokens[n] = static_cast<int32_t>((n * 7919) % kV);
  std::vector<float> out(kN * kD), dwte(kV * kD);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    embedding_forward(out.data(), tokens.data(), wte.data(), kN, kD);
    embedding_backward(dwte.data(), dout.data(), tokens.data(), kN, kD);
    benchmark::DoNotOptimize(dwte.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_EmbeddingForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_MatmulForwardBackward(benchmark::State& state) {
  const int64_t oc = 3 * kD;  // the qkv projection
  auto inp = random_floats(kN * kD, 1), w = random_floats(oc * kD, 2);
  auto dout = random_floats(kN * oc, 3);
  std::vector<float> out(kN * oc), dinp(kN * kD), dw(oc * kD);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    matmul_forward(out.data(), inp.data(), w.data(), kN, kD, oc);
    matmul_backward(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), kN, kD, oc);
    benchmark::DoNotOptimize(dw.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
  state.counters["GFLOP/s"] = benchmark::Counter(6.0 * kN * kD * oc * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MatmulForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace sy

BENCHMARK_MAIN();
