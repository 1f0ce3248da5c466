// Kernel throughput at the SMALL model's shapes (N = B·S = 2048, D = 256, H = 4, hd = 64,
// S = 256, V = 8192, F = 256, top-4 → 4·N expert rows). Items are tokens (rows).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <vector>

#include "core/gemm.h"
#include "core/gemm_bf16.h"
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

// Arg: 0 the fp32 core, 1 the bf16 one (attention_forward_bf16; skipped without AVX512-BF16).
bool attention_bf16_arg(benchmark::State& state) {
  const bool bf16 = state.range(0) != 0;
  if (bf16 && !cpu_has_bf16()) state.SkipWithError(bf16_unsupported_reason().c_str());
  return bf16;
}

void BM_AttentionForward(benchmark::State& state) {
  const bool bf16 = attention_bf16_arg(state);
  if (state.error_occurred()) return;
  const int64_t ld = 3 * kD;
  auto qkv = random_floats(kN * ld, 1);
  std::vector<float> out(kN * kD), att(kB * kH * kS * kS);
  std::vector<uint32_t> scratch16(attention_bf16_scratch_size(kS, kHd, omp_get_max_threads()));
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    if (bf16)
      attention_forward_bf16(out.data(), att.data(), qkv.data(), qkv.data() + kD,
                             qkv.data() + 2 * kD, kB, kS, kH, kHd, ld, scratch16.data());
    else
      attention_forward(out.data(), att.data(), qkv.data(), qkv.data() + kD, qkv.data() + 2 * kD,
                        kB, kS, kH, kHd, ld);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_AttentionForward)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AttentionBackward(benchmark::State& state) {
  const bool bf16 = attention_bf16_arg(state);
  if (state.error_occurred()) return;
  const int64_t ld = 3 * kD;
  auto qkv = random_floats(kN * ld, 1);
  auto dout = random_floats(kN * kD, 2);
  std::vector<float> out(kN * kD), att(kB * kH * kS * kS), dqkv(kN * ld);
  std::vector<float> scratch(attention_scratch_size(kS, omp_get_max_threads()));
  std::vector<uint32_t> scratch16(attention_bf16_scratch_size(kS, kHd, omp_get_max_threads()));
  attention_forward(out.data(), att.data(), qkv.data(), qkv.data() + kD, qkv.data() + 2 * kD, kB,
                    kS, kH, kHd, ld);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    if (bf16)
      attention_backward_bf16(dqkv.data(), dqkv.data() + kD, dqkv.data() + 2 * kD, scratch.data(),
                              scratch16.data(), dout.data(), qkv.data(), qkv.data() + kD,
                              qkv.data() + 2 * kD, att.data(), kB, kS, kH, kHd, ld);
    else
      attention_backward(dqkv.data(), dqkv.data() + kD, dqkv.data() + 2 * kD, scratch.data(),
                         dout.data(), qkv.data(), qkv.data() + kD, qkv.data() + 2 * kD, att.data(),
                         kB, kS, kH, kHd, ld);
    benchmark::DoNotOptimize(dqkv.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_AttentionBackward)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

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

// The LM head of a bf16 training forward with its loss, N = 2048, V = 8192. Args: rows per
// block — 0: one GEMM over all N rows, then xent_forward_backward_bf16 over the logits in memory
// (as before lm_head_xent_bf16), else lm_head_xent_bf16 with blocks of that many rows — and D
// (256 SMALL, 512 MEDIUM).
void BM_LmHeadXentBf16(benchmark::State& state) {
  if (!cpu_has_bf16()) return state.SkipWithError(bf16_unsupported_reason().c_str());
  const int64_t block = state.range(0), D = state.range(1);
  auto inp = random_floats(kN * D, 1), w = random_floats(kV * D, 2);
  for (auto& x : w) x *= 0.05f;
  Bf16Gemm bf16(w.data(), kV * D);
  bf16.refresh();
  std::vector<int32_t> targets(kN);
  for (int64_t n = 0; n < kN; ++n) targets[n] = static_cast<int32_t>((n * 7919) % kV);
  std::vector<float> losses(kN), lse(2 * kN), logits(block == 0 ? kN * kV : 0),
      scratch(block * kV * omp_get_max_threads());
  std::vector<uint16_t> d16(kN * kV);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    if (block == 0) {
      matmul_forward(logits.data(), inp.data(), w.data(), kN, D, kV, &bf16);
      xent_forward_backward_bf16(losses.data(), d16.data(), logits.data(), targets.data(), kN, kV,
                                 lse.data());
    } else {
      lm_head_xent_bf16(losses.data(), d16.data(), lse.data(), nullptr, scratch.data(), inp.data(),
                        w.data(), targets.data(), kN, D, kV, bf16, block);
    }
    benchmark::DoNotOptimize(d16.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_LmHeadXentBf16)
    ->ArgsProduct({{0, 128, 256, 512}, {256, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

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

// MEDIUM's routed experts as the MoE layer runs them (64 experts of 192 rows, D 512, F 256, one
// expert per thread side by side, each chain single-threaded): the forward and backward GEMM
// chains with SwiGLU. Arg 0: `distinct` expert weights cycled through (64: every expert its own,
// 100 MB of weights streamed per pass, as in training; 2: the same two reused, so they stay in
// cache; the weight gradients stay per expert) — the difference is what fetching the weights
// costs.
void BM_ExpertsMedium(benchmark::State& state) {
  constexpr int64_t kE = 64, kRows = 192, kDm = 512, kFm = 256;
  const int64_t distinct = state.range(0);
  auto x = random_floats(kE * kRows * kDm, 1), dy = random_floats(kE * kRows * kDm, 2);
  auto wgu = random_floats(distinct * 2 * kFm * kDm, 3),
       wd = random_floats(distinct * kDm * kFm, 4);
  for (auto& v : wgu) v *= 0.05f;
  for (auto& v : wd) v *= 0.05f;
  std::vector<float> y(kE * kRows * kDm), hu(kE * kRows * 2 * kFm), act(kE * kRows * kFm);
  std::vector<float> dx(kE * kRows * kDm), dhu(hu.size()), dact(act.size());
  std::vector<float> dwgu(kE * 2 * kFm * kDm), dwd(kE * kDm * kFm);  // per expert
  const Bf16Gemm* none = nullptr;
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t e = 0; e < kE; ++e) {
      const int64_t r0 = e * kRows, w = e % distinct;
      swiglu_ffn_forward(y.data() + r0 * kDm, 0.f, hu.data() + r0 * 2 * kFm, act.data() + r0 * kFm,
                         x.data() + r0 * kDm, wgu.data() + w * 2 * kFm * kDm,
                         wd.data() + w * kDm * kFm, kRows, kDm, kFm, none);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t e = 0; e < kE; ++e) {
      const int64_t r0 = e * kRows, w = e % distinct;
      swiglu_ffn_backward(
          dx.data() + r0 * kDm, 0.f, dwgu.data() + w * 2 * kFm * kDm, dwd.data() + w * kDm * kFm,
          1.f, dhu.data() + r0 * 2 * kFm, dact.data() + r0 * kFm, dy.data() + r0 * kDm,
          x.data() + r0 * kDm, hu.data() + r0 * 2 * kFm, act.data() + r0 * kFm,
          wgu.data() + w * 2 * kFm * kDm, wd.data() + w * kDm * kFm, kRows, kDm, kFm, none);
    }
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      3 * 2.0 * kE * kRows * 3 * kDm * kFm * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ExpertsMedium)->Arg(64)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same experts in bf16 (system.precision = "bf16": the weights from their bf16 copy, the
// weight gradients written, as in the first backward of a step), every expert with `rows` rows
// (arg 0): 192 is a multiple of 32 (fixed-shape kernels); 190 and 200 are not — with AMX they
// run as a multiple of 32 plus a tail piece, without it as one GEMM for any row count
// (core/gemm_bf16.cc). Arg 1: 1 keeps the inputs, SwiGLU outputs and output gradients in bf16
// as the model does (swiglu_ffn_forward_bf16; here with a rounding pass over the inputs and
// output gradients, which the model's dispatch and combine write in bf16 directly), 0 keeps them
// in fp32 and rounds them in each GEMM. Items are expert rows.
void BM_ExpertsMediumBf16(benchmark::State& state) {
  if (!cpu_has_bf16()) {
    state.SkipWithError(bf16_unsupported_reason().c_str());
    return;
  }
  constexpr int64_t kE = 64, kDm = 512, kFm = 256;
  const int64_t rows = state.range(0);
  const bool kept = state.range(1) != 0;
  auto x = random_floats(kE * rows * kDm, 1), dy = random_floats(kE * rows * kDm, 2);
  auto w = random_floats(kE * 3 * kFm * kDm, 3);  // per expert: gate|up [2F, D], then down [D, F]
  for (auto& v : w) v *= 0.05f;
  Bf16Gemm bf16(w.data(), static_cast<int64_t>(w.size()));
  bf16.refresh();
  std::vector<float> y(kE * rows * kDm), hu(kE * rows * 2 * kFm), act(kE * rows * kFm);
  std::vector<float> dx(y.size()), dhu(hu.size()), dact(act.size()), dw(w.size());
  std::vector<uint16_t> x16(kept ? x.size() : 0), dy16(x16.size()), act16(kept ? act.size() : 0);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t e = 0; e < kE; ++e) {
      const int64_t r0 = e * rows;
      const float* we = w.data() + e * 3 * kFm * kDm;
      if (kept) {
        to_bf16(x.data() + r0 * kDm, x16.data() + r0 * kDm, rows * kDm);
        swiglu_ffn_forward_bf16(y.data() + r0 * kDm, 0.f, hu.data() + r0 * 2 * kFm,
                                act16.data() + r0 * kFm, x16.data() + r0 * kDm, we,
                                we + 2 * kFm * kDm, rows, kDm, kFm, bf16);
      } else {
        swiglu_ffn_forward(y.data() + r0 * kDm, 0.f, hu.data() + r0 * 2 * kFm,
                           act.data() + r0 * kFm, x.data() + r0 * kDm, we, we + 2 * kFm * kDm, rows,
                           kDm, kFm, &bf16);
      }
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t e = 0; e < kE; ++e) {
      const int64_t r0 = e * rows;
      const float* we = w.data() + e * 3 * kFm * kDm;
      float* dwe = dw.data() + e * 3 * kFm * kDm;
      if (kept) {
        to_bf16(dy.data() + r0 * kDm, dy16.data() + r0 * kDm, rows * kDm);
        swiglu_ffn_backward_bf16(
            dx.data() + r0 * kDm, 0.f, dwe, dwe + 2 * kFm * kDm, 0.f, dact.data() + r0 * kFm,
            dy16.data() + r0 * kDm, x16.data() + r0 * kDm, hu.data() + r0 * 2 * kFm,
            act16.data() + r0 * kFm, we, we + 2 * kFm * kDm, rows, kDm, kFm, bf16);
      } else {
        swiglu_ffn_backward(dx.data() + r0 * kDm, 0.f, dwe, dwe + 2 * kFm * kDm, 0.f,
                            dhu.data() + r0 * 2 * kFm, dact.data() + r0 * kFm, dy.data() + r0 * kDm,
                            x.data() + r0 * kDm, hu.data() + r0 * 2 * kFm, act.data() + r0 * kFm,
                            we, we + 2 * kFm * kDm, rows, kDm, kFm, &bf16);
      }
    }
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetItemsProcessed(state.iterations() * kE * rows);
  state.counters["GFLOP/s"] = benchmark::Counter(
      3 * 2.0 * kE * rows * 3 * kDm * kFm * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ExpertsMediumBf16)
    ->ArgsProduct({{192, 190}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The same experts' six GEMMs alone (sy::gemm, no SwiGLU): what the chain would take if the
// GEMMs were all it did.
void BM_ExpertsMediumGemmsOnly(benchmark::State& state) {
  constexpr int64_t kE = 64, kRows = 192, kDm = 512, kFm = 256;
  auto x = random_floats(kE * kRows * kDm, 1), dy = random_floats(kE * kRows * kDm, 2);
  auto wgu = random_floats(kE * 2 * kFm * kDm, 3), wd = random_floats(kE * kDm * kFm, 4);
  std::vector<float> y(kE * kRows * kDm), hu(kE * kRows * 2 * kFm), act(kE * kRows * kFm);
  std::vector<float> dx(y.size()), dwgu(wgu.size()), dwd(wd.size());
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t e = 0; e < kE; ++e) {
      const int64_t r0 = e * kRows;
      float *xe = x.data() + r0 * kDm, *hue = hu.data() + r0 * 2 * kFm;
      float *acte = act.data() + r0 * kFm, *ye = y.data() + r0 * kDm;
      const float *gu = wgu.data() + e * 2 * kFm * kDm, *dn = wd.data() + e * kDm * kFm;
      gemm(false, true, kRows, 2 * kFm, kDm, 1.f, xe, kDm, gu, kDm, 0.f, hue, 2 * kFm);
      gemm(false, true, kRows, kDm, kFm, 1.f, acte, kFm, dn, kFm, 0.f, ye, kDm);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t e = 0; e < kE; ++e) {
      const int64_t r0 = e * kRows;
      const float *xe = x.data() + r0 * kDm, *dye = dy.data() + r0 * kDm;
      float *hue = hu.data() + r0 * 2 * kFm, *acte = act.data() + r0 * kFm;
      const float *gu = wgu.data() + e * 2 * kFm * kDm, *dn = wd.data() + e * kDm * kFm;
      gemm(false, false, kRows, kFm, kDm, 1.f, dye, kDm, dn, kFm, 0.f, acte, kFm);  // dact
      gemm(true, false, kDm, kFm, kRows, 1.f, dye, kDm, acte, kFm, 1.f, dwd.data() + e * kDm * kFm,
           kFm);  // dW_down
      gemm(false, false, kRows, kDm, 2 * kFm, 1.f, hue, 2 * kFm, gu, kDm, 0.f, dx.data() + r0 * kDm,
           kDm);  // dx
      gemm(true, false, 2 * kFm, kDm, kRows, 1.f, hue, 2 * kFm, xe, kDm, 1.f,
           dwgu.data() + e * 2 * kFm * kDm, kDm);  // dW_gate_up
    }
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      3 * 2.0 * kE * kRows * 3 * kDm * kFm * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ExpertsMediumGemmsOnly)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace sy

BENCHMARK_MAIN();
