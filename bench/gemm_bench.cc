// The GEMM backends on switchyard's shapes (SMALL: N = 2048 tokens, D = 256, F = 256, E = 16,
// K = 4 → ~512 rows per expert, V = 8192), forward and both backward orientations.
// Google Benchmark; items/s = FLOP/s. This is the measurement behind the default backend.
//   ./build/bench/gemm_bench --benchmark_filter=...
#include <benchmark/benchmark.h>
#include <omp.h>

#include <dnnl.hpp>
#include <initializer_list>
#include <string>

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

// Times one oneDNN matmul primitive, made once outside the timed loop (as oneDNN's primitive
// cache keeps it): C[m, n] = A[m, k]·B[k, n] (+ C when attr has a sum post-op). Labelled with
// the kernel oneDNN chose and the operands' orientations.
void time_matmul(benchmark::State& st, const std::string& what, const dnnl::memory::desc& a_md,
                 void* a, const dnnl::memory::desc& b_md, void* b, const dnnl::memory::desc& c_md,
                 float* c, const dnnl::primitive_attr& attr, bool ta, bool tb, int64_t threads) {
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
  const dnnl::matmul prim(pd);
  dnnl::memory am(a_md, engine, a), bm(b_md, engine, b), cm(c_md, engine, c);
  for (auto _ : st) {  // NOLINT(clang-analyzer-deadcode.DeadStores): benchmark loop
    prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
    benchmark::DoNotOptimize(c);
  }
  const int64_t m = a_md.dims()[0], k = a_md.dims()[1], n = c_md.dims()[1];
  st.SetItemsProcessed(st.iterations() * 2 * m * n * k);
  st.SetLabel("matmul " + what + " " + pd.impl_info_str() + (ta ? " T" : " N") + (tb ? "T" : "N") +
              " " + std::to_string(threads) + "t");
}

// The same shapes through oneDNN's matmul primitive in fp32 (brgemm kernels; the bf16 GEMMs'
// path, core/gemm_bf16.cc) instead of dnnl_sgemm: whether the primitive does better on the
// experts' small, transposed products. args: (unused), ta, tb, m, n, k, threads.
void BM_MatmulF32(benchmark::State& st) {
  const bool ta = st.range(1), tb = st.range(2);
  const int64_t m = st.range(3), n = st.range(4), k = st.range(5);
  omp_set_num_threads(static_cast<int>(st.range(6)));
  sy::Buffer<float> a(m * k), b(k * n), c(m * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.001f * static_cast<float>(i % 101);
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.001f * static_cast<float>(i % 97);
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  time_matmul(st, "f32", {{m, k}, dt::f32, ta ? tag::ba : tag::ab}, a.data(),
              {{k, n}, dt::f32, tb ? tag::ba : tag::ab}, b.data(), {{m, n}, dt::f32, tag::ab},
              c.data(), dnnl::primitive_attr(), ta, tb, st.range(6));
}

// The bf16 GEMMs' primitive (bf16 operands, fp32 destination, as core/gemm_bf16.cc runs them)
// on the LM head's and attention's fixed shapes. args: ta, tb, m, n, k, threads, sum (beta 1
// through a sum post-op, as a gradient that accumulates). (A destination stored transposed —
// dWᵀ = Xᵀ·G through strides — falls to oneDNN 2.6's reference kernel, > 1,000× slower: not here.)
void BM_MatmulBf16(benchmark::State& st) {
  const bool ta = st.range(0), tb = st.range(1);
  const int64_t m = st.range(2), n = st.range(3), k = st.range(4);
  omp_set_num_threads(static_cast<int>(st.range(5)));
  sy::Buffer<uint16_t> a(m * k), b(k * n);
  sy::Buffer<float> c(m * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint16_t>(0x3c00 + i % 101);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint16_t>(0x3c00 + i % 97);
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  dnnl::primitive_attr attr;
  if (st.range(6) != 0) {
    dnnl::post_ops po;
    po.append_sum(1.f);
    attr.set_post_ops(po);
  }
  time_matmul(st, "bf16", {{m, k}, dt::bf16, ta ? dims{1, m} : dims{k, 1}}, a.data(),
              {{k, n}, dt::bf16, tb ? dims{1, k} : dims{n, 1}}, b.data(),
              {{m, n}, dt::f32, dims{n, 1}}, c.data(), attr, ta, tb, st.range(5));
}

void bf16_shapes(benchmark::internal::Benchmark* b) {
  // LM head, SMALL (D = 256) and MEDIUM (D = 512): dW = dlogitsᵀ·X (TN, accumulating),
  // dX = dlogits·W (NN), the forward (NT)
  for (int64_t d : {256, 512}) {
    b->Args({1, 0, 8192, d, 2048, 2, 1});
    b->Args({0, 0, 2048, d, 8192, 2, 0});
    b->Args({0, 1, 2048, 8192, d, 2, 0});
  }
  // attention's weight gradients, SMALL: q|k|v and the output projection (TN, accumulating)
  b->Args({1, 0, 768, 256, 2048, 2, 1});
  b->Args({1, 0, 256, 256, 2048, 2, 1});
  b->Args({0, 0, 1024, 1024, 1024, 2, 0});
}

// Every shape for each of `backends` (0: oneDNN sgemm, 1: OpenBLAS).
void shapes_of(benchmark::internal::Benchmark* b, std::initializer_list<int> backends) {
  for (int be : backends) {
    // expert forward gate|up: [512, 256] · [512, 256]ᵀ, down: [512, 256] · [256, 256]ᵀ
    b->Args({be, 0, 1, 512, 512, 256, 2});
    b->Args({be, 0, 1, 512, 256, 256, 2});
    // expert backward: dX = dY · W (NN), dW = dYᵀ · X (TN)
    b->Args({be, 0, 0, 512, 256, 512, 2});
    b->Args({be, 1, 0, 512, 256, 512, 2});
    // qkv projection; LM head forward (NT), its input gradient dX = dlogits · W (NN) and
    // weight gradient dW = dlogitsᵀ · X (TN)
    b->Args({be, 0, 1, 2048, 768, 256, 2});
    b->Args({be, 0, 1, 2048, 8192, 256, 2});
    b->Args({be, 0, 0, 2048, 256, 8192, 2});
    b->Args({be, 1, 0, 8192, 256, 2048, 2});
    // MEDIUM's LM head (D = 512), the same three products
    b->Args({be, 0, 1, 2048, 8192, 512, 2});
    b->Args({be, 0, 0, 2048, 512, 8192, 2});
    b->Args({be, 1, 0, 8192, 512, 2048, 2});
    // attention's weight gradients (TN over the 2048 tokens): q|k|v and the output projection,
    // SMALL (D = 256) and MEDIUM (D = 512)
    b->Args({be, 1, 0, 768, 256, 2048, 2});
    b->Args({be, 1, 0, 256, 256, 2048, 2});
    b->Args({be, 1, 0, 1536, 512, 2048, 2});
    b->Args({be, 1, 0, 512, 512, 2048, 2});
    b->Args({be, 0, 0, 1024, 1024, 1024, 2});
  }
  // SMALL's experts (≈ 512 rows, D = F = 256) on one thread, as they run side by side: forward
  // gate|up and down (NT), backward dx and dact (NN), the weight gradients (TN over 512 rows).
  for (int be : backends) {
    b->Args({be, 0, 1, 512, 512, 256, 1});
    b->Args({be, 0, 1, 512, 256, 256, 1});
    b->Args({be, 0, 0, 512, 256, 256, 1});
    b->Args({be, 0, 0, 512, 256, 512, 1});
    b->Args({be, 1, 0, 256, 256, 512, 1});
    b->Args({be, 1, 0, 512, 256, 512, 1});
  }
  // MEDIUM's experts (≈ 192 rows, D = 512, F = 256) on one thread, as they run side by side:
  // forward gate|up and down (NT); backward dact = dy·W_down, dx = dhu·W_gu (NN), and the weight
  // gradients dW_down = dyᵀ·act, dW_gu = dhuᵀ·x (TN, reducing over the 192 rows).
  for (int be : backends) {
    b->Args({be, 0, 1, 192, 512, 512, 1});
    b->Args({be, 0, 1, 192, 512, 256, 1});
    b->Args({be, 0, 0, 192, 256, 512, 1});
    b->Args({be, 0, 0, 192, 512, 512, 1});
    b->Args({be, 1, 0, 512, 256, 192, 1});
    b->Args({be, 1, 0, 512, 512, 192, 1});
  }
}

void shapes(benchmark::internal::Benchmark* b) { shapes_of(b, {0, 1}); }
void matmul_shapes(benchmark::internal::Benchmark* b) { shapes_of(b, {0}); }

}  // namespace

BENCHMARK(BM_Gemm)->Apply(shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_MatmulF32)->Apply(matmul_shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_MatmulBf16)->Apply(bf16_shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
