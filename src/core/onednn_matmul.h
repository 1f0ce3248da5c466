// oneDNN's matmul primitive as switchyard's GEMMs call it (internal to sy_core: the fp32
// fixed-shape GEMM in gemm.cc and the bf16 GEMMs in gemm_bf16.cc).
//
// Row-major C[M,N] = alpha · A[M,K] · B[K,N] + beta · C, each operand a strided view of
// caller-owned memory. oneDNN compiles a kernel per primitive descriptor (shape, strides, types,
// alpha, beta) and returns it from its primitive cache when the same one comes again.
// Threading: a call runs on the stream's engine with the OpenMP threads available to the caller
// (all of them outside a parallel region, the calling thread inside one).
#pragma once

#include <cstdint>
#include <dnnl.hpp>

namespace sy::onednn {

// A [rows, cols] matrix of `type` stored row-major with row stride ld, or — `transposed` — stored
// as its transpose (column stride ld).
inline dnnl::memory::desc matrix(int64_t rows, int64_t cols, dnnl::memory::data_type type,
                                 bool transposed, int64_t ld) {
  using dims = dnnl::memory::dims;
  return dnnl::memory::desc(dims{rows, cols}, type, transposed ? dims{1, ld} : dims{ld, 1});
}

// alpha as the output scale, beta as a sum post-op (none for 0).
inline dnnl::primitive_attr scale_and_sum(float alpha, float beta) {
  dnnl::primitive_attr attr;
  if (alpha != 1.f) attr.set_output_scales(0, {alpha});
  if (beta != 0.f) {
    dnnl::post_ops po;
    po.append_sum(beta);
    attr.set_post_ops(po);
  }
  return attr;
}

// C = alpha · A·B + beta · C.
inline void matmul(const dnnl::engine& engine, dnnl::stream& stream, const dnnl::memory::desc& a_md,
                   const void* a, const dnnl::memory::desc& b_md, const void* b,
                   const dnnl::memory::desc& c_md, float* c, float alpha, float beta) {
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md),
                                        scale_and_sum(alpha, beta), engine);
  dnnl::memory am(a_md, engine, const_cast<void*>(a));
  dnnl::memory bm(b_md, engine, const_cast<void*>(b));
  dnnl::memory cm(c_md, engine, c);
  dnnl::matmul(pd).execute(stream,
                           {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
}

// The same for a row-major A [m, k] (row stride lda) and C [m, n] (row stride ldc) through a
// primitive compiled for any m (DNNL_RUNTIME_DIM_VAL rows: one kernel whatever m is, where a
// primitive of fixed shape compiles one per m).
inline void matmul_any_rows(const dnnl::engine& engine, dnnl::stream& stream, int64_t m, int64_t k,
                            const void* a, dnnl::memory::data_type a_type, int64_t lda,
                            const dnnl::memory::desc& b_md, const void* b, int64_t n, float* c,
                            int64_t ldc, float alpha, float beta) {
  using dt = dnnl::memory::data_type;
  constexpr int64_t kAny = DNNL_RUNTIME_DIM_VAL;
  const dnnl::matmul::primitive_desc pd(
      dnnl::matmul::desc(matrix(kAny, k, a_type, false, lda), b_md,
                         matrix(kAny, n, dt::f32, false, ldc)),
      scale_and_sum(alpha, beta), engine);
  dnnl::memory am(matrix(m, k, a_type, false, lda), engine, const_cast<void*>(a));
  dnnl::memory bm(b_md, engine, const_cast<void*>(b));
  dnnl::memory cm(matrix(m, n, dt::f32, false, ldc), engine, c);
  dnnl::matmul(pd).execute(stream,
                           {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
}

}  // namespace sy::onednn
