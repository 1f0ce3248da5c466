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

// C = alpha · A·B + beta · C through a primitive compiled for a_any, b_any, c_any: the operands'
// descriptors a_md, b_md, c_md, or the same with some dimensions DNNL_RUNTIME_DIM_VAL — one
// kernel for whatever they are at run time (oneDNN's gemm:jit), where a primitive of fixed shape
// compiles one per shape (brgemm).
inline void matmul_compiled_for(const dnnl::engine& engine, dnnl::stream& stream,
                                const dnnl::memory::desc& a_any, const dnnl::memory::desc& a_md,
                                const void* a, const dnnl::memory::desc& b_any,
                                const dnnl::memory::desc& b_md, const void* b,
                                const dnnl::memory::desc& c_any, const dnnl::memory::desc& c_md,
                                float* c, float alpha, float beta) {
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_any, b_any, c_any),
                                        scale_and_sum(alpha, beta), engine);
  dnnl::memory am(a_md, engine, const_cast<void*>(a));
  dnnl::memory bm(b_md, engine, const_cast<void*>(b));
  dnnl::memory cm(c_md, engine, c);
  dnnl::matmul(pd).execute(stream,
                           {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
}

// C = alpha · A·B + beta · C, compiled for these shapes.
inline void matmul(const dnnl::engine& engine, dnnl::stream& stream, const dnnl::memory::desc& a_md,
                   const void* a, const dnnl::memory::desc& b_md, const void* b,
                   const dnnl::memory::desc& c_md, float* c, float alpha, float beta) {
  matmul_compiled_for(engine, stream, a_md, a_md, a, b_md, b_md, b, c_md, c_md, c, alpha, beta);
}

}  // namespace sy::onednn
