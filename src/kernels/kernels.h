// Forward/backward kernel pairs of the dense transformer, as free functions over raw arrays.
//
// Dimension letters: N tokens (= B·S), B sequences, S sequence length, D model dim, H heads,
// hd head dim (D = H·hd), F expert/FFN hidden, V vocabulary, IC/OC matmul in/out features.
// All arrays are row-major and dense unless a row stride `ld` is given (elements between rows).
//
// Conventions (read before calling):
//  * forward functions overwrite their outputs;
//  * backward functions ACCUMULATE (+=) into every gradient they produce, activations and
//    parameters alike — the caller zeroes what must start at zero. Exceptions, named in their
//    comments: rope_backward (in place), xent_backward (overwrites, may alias its input),
//    gated_row_backward (writes its row), and the kernels with an `accumulate` or beta argument
//    when asked to overwrite (swiglu_backward, attention_backward, linear_backward).
//  * A null gradient pointer means "not needed": that gradient is skipped.
//  * T is float (training) or double (finite-difference tests); both are instantiated.
//  * Kernels parallelise internally with OpenMP; call them from outside a parallel region.
//    Results do not depend on the thread count except through floating-point summation order
//    of reductions (and those reductions use a fixed order for a given thread count).
//  * Inputs are trusted (validated at the boundary); no allocation happens inside.
//  * The kernels with weight GEMMs (matmul, the SwiGLU FFN) take an optional `bf16`: null runs
//    their GEMMs in T; otherwise (T = float) in bf16 with fp32 accumulation, the weights read from
//    its copy (core/gemm_bf16.h). Everything else in them stays in T.
#pragma once

#include <cstdint>

#include "core/gemm_bf16.h"

namespace sy {

// ---- matmul: out[N,OC] = inp[N,IC] · weight[OC,IC]ᵀ (a Linear layer without bias, HF layout) ----
template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, int64_t N, int64_t IC, int64_t OC,
                    const Bf16Gemm* bf16 = nullptr);
// dinp[N,IC] += dout[N,OC] · weight ; dweight[OC,IC] += doutᵀ · inp (either may be null)
template <typename T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t IC, int64_t OC, const Bf16Gemm* bf16 = nullptr);
// The same with dinp = dout · weight + dinp_beta · dinp and dweight = doutᵀ · inp +
// dweight_beta · dweight (0 overwrites, 1 accumulates). Overwriting a weight gradient known to be
// zero gives the same values as accumulating onto it without reading it: for a weight GEMM of
// few rows (an expert's) the read of the cold gradient costs more than the products (bf16:
// 1.6x, docs/benchmarks.md). In bf16, dout is rounded once for both GEMMs.
template <typename T>
void linear_backward(T* dinp, T dinp_beta, T* dweight, T dweight_beta, const T* dout, const T* inp,
                     const T* weight, int64_t N, int64_t IC, int64_t OC, const Bf16Gemm* bf16);
// linear_backward for a layer whose shapes are the same every step (the attention projections;
// not an expert, whose rows change): in fp32 and fp64 the same products, with the weight gradient
// through gemm_fixed_shape (core/gemm.h: oneDNN's matmul primitive under the oneDNN backend,
// 1.19× sgemm for MEDIUM's qkv_proj, docs/benchmarks.md); in bf16 linear_backward itself.
template <typename T>
void linear_backward_fixed_shape(T* dinp, T dinp_beta, T* dweight, const T* dout, const T* inp,
                                 const T* weight, int64_t N, int64_t IC, int64_t OC,
                                 const Bf16Gemm* bf16);
// The same with dout already rounded (a kernel wrote it in bf16; precision bf16 only), and the
// gradients of alpha · that output: dinp = alpha · dout·W (+ beta), dweight likewise.
void linear_backward(float* dinp, float dinp_beta, float* dweight, float dweight_beta,
                     const Bf16Gemm::Rounded& dout, const float* inp, const float* weight,
                     int64_t N, int64_t IC, int64_t OC, const Bf16Gemm& bf16, float alpha = 1.f);

// ---- RMSNorm: out = inp · rstd · weight, rstd[N] = 1/sqrt(mean_D(inp²) + eps) (HF Llama) ----
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t D, T eps);
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int64_t N, int64_t D);

// ---- RoPE, Hugging Face "rotate_half" convention ----
// Tables cos/sin [S, hd/2]: angle(s, i) = s · theta^(-2i/hd).
template <typename T>
void rope_tables(T* cos, T* sin, int64_t S, int64_t hd, double theta);
// x: [B, S, H, hd] with token rows strided by ld (≥ H·hd). Rotates IN PLACE: for each head,
// (x[i], x[i+hd/2]) ← (x[i]·c − x[i+hd/2]·s, x[i+hd/2]·c + x[i]·s), position = s within sequence.
template <typename T>
void rope_forward(T* x, const T* cos, const T* sin, int64_t B, int64_t S, int64_t H, int64_t hd,
                  int64_t ld);
// IN PLACE on the gradient: dx ← Rᵀ dx (the inverse rotation). Not accumulating.
template <typename T>
void rope_backward(T* dx, const T* cos, const T* sin, int64_t B, int64_t S, int64_t H, int64_t hd,
                   int64_t ld);

// ---- causal multi-head attention: out = softmax(q kᵀ / sqrt(hd) + causal mask) v ----
// q, k, v: [B, S, H, hd], token rows strided by ld (they may live side by side in one qkv
// buffer, ld = 3·H·hd). out: [B, S, H·hd] dense. att: [B, H, S, S] softmax probabilities, saved
// for the backward pass (entries above the diagonal are written as 0).
template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int64_t B, int64_t S,
                       int64_t H, int64_t hd, int64_t ld);
// dq, dk, dv (null: not computed) accumulate with row stride ld, or with accumulate false are
// overwritten (each element is written once: no zero-fill needed). scratch:
// attention_scratch_size() elements.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, const T* q, const T* k,
                        const T* v, const T* att, int64_t B, int64_t S, int64_t H, int64_t hd,
                        int64_t ld, bool accumulate = true);
// Elements of scratch attention_backward needs when run with up to max_threads OpenMP threads.
int64_t attention_scratch_size(int64_t S, int max_threads);
// The same core under precision bf16 (attention_bf16.cc): q, k, v, dout, the probabilities and
// dZ rounded to bf16 for the products, which accumulate in fp32; softmax, its backward, att and
// the outputs in fp32. scratch16: attention_bf16_scratch_size() words, for both passes; scratch
// as attention_backward's. Built without AVX512-BF16 (SY_NATIVE off on such a CPU) these run
// the fp32 core.
void attention_forward_bf16(float* out, float* att, const float* q, const float* k, const float* v,
                            int64_t B, int64_t S, int64_t H, int64_t hd, int64_t ld,
                            uint32_t* scratch16);
void attention_backward_bf16(float* dq, float* dk, float* dv, float* scratch, uint32_t* scratch16,
                             const float* dout, const float* q, const float* k, const float* v,
                             const float* att, int64_t B, int64_t S, int64_t H, int64_t hd,
                             int64_t ld, bool accumulate = true);
// 32-bit words of scratch16 the bf16 core needs with up to max_threads OpenMP threads.
int64_t attention_bf16_scratch_size(int64_t S, int64_t hd, int max_threads);

// ---- SwiGLU: hu[N, 2F] holds gate in columns [0, F) and up in [F, 2F) ----
// out[N,F] = silu(gate) · up, silu(x) = x · sigmoid(x)
template <typename T>
void swiglu_forward(T* out, const T* hu, int64_t N, int64_t F);
// dhu[N, 2F] += ∂/∂(gate, up); accumulate false: dhu = ∂/∂(gate, up) (dhu need not be zeroed)
template <typename T>
void swiglu_backward(T* dhu, const T* dout, const T* hu, int64_t N, int64_t F,
                     bool accumulate = true);
// The same values rounded to bf16 (to_bf16 of what swiglu_forward / swiglu_backward with
// accumulate false write), for outputs only bf16 GEMMs read: act16[N, F], dhu16[N, 2F].
void swiglu_forward_bf16(uint16_t* act16, const float* hu, int64_t N, int64_t F);
void swiglu_backward_bf16(uint16_t* dhu16, const float* dout, const float* hu, int64_t N,
                          int64_t F);

// ---- the SwiGLU feed-forward: y = silu(x·W_gᵀ) ⊙ (x·W_uᵀ) · W_dᵀ ----
// w_gate_up[2F,D] is W_g then W_u (one GEMM), w_down[D,F]. The one chain of every FFN: a dense
// layer's, a routed expert's (on its N rows), a shared expert's.
// Forward: y[N,D] = ffn(x) + beta·y (beta 0 overwrites, 1 adds); keeps hu[N,2F] (the gate|up
// pre-activations) and act[N,F] for backward.
template <typename T>
void swiglu_ffn_forward(T* y, T beta, T* hu, T* act, const T* x, const T* w_gate_up,
                        const T* w_down, int64_t N, int64_t D, int64_t F,
                        const Bf16Gemm* bf16 = nullptr);
// Backward: dx[N,D] = dy·∂y/∂x + beta·dx (beta 0 overwrites — the exception to "backward
// accumulates" — beta 1 accumulates); dw_gate_up[2F,D] and dw_down[D,F] likewise by dw_beta (0
// only where they are known to be zero: linear_backward). dhu[N,2F] and dact[N,F] are scratch,
// overwritten.
template <typename T>
void swiglu_ffn_backward(T* dx, T beta, T* dw_gate_up, T* dw_down, T dw_beta, T* dhu, T* dact,
                         const T* dy, const T* x, const T* hu, const T* act, const T* w_gate_up,
                         const T* w_down, int64_t N, int64_t D, int64_t F,
                         const Bf16Gemm* bf16 = nullptr);
// The chain under bf16 with the activations its GEMMs read kept in bf16 only: x16[N,D] is x
// and dy16[N,D] is dy already rounded (to_bf16), act16[N,F] is written rounded, hu stays fp32
// (SwiGLU's backward reads it). The same results as the calls above with `bf16`, which round x,
// act and dy inside their GEMMs, in half the bytes and without the rounding passes. Backward:
// dact[N,F] is scratch; the gate|up gradient is written in bf16 into bf16's per-thread buffer
// (Bf16Gemm::rounded_buffer).
void swiglu_ffn_forward_bf16(float* y, float beta, float* hu, uint16_t* act16, const uint16_t* x16,
                             const float* w_gate_up, const float* w_down, int64_t N, int64_t D,
                             int64_t F, const Bf16Gemm& bf16);
void swiglu_ffn_backward_bf16(float* dx, float beta, float* dw_gate_up, float* dw_down,
                              float dw_beta, float* dact, const uint16_t* dy16, const uint16_t* x16,
                              const float* hu, const uint16_t* act16, const float* w_gate_up,
                              const float* w_down, int64_t N, int64_t D, int64_t F,
                              const Bf16Gemm& bf16);

// ---- rows by index (the MoE dispatch and combine; src/kernels/rows.cc) ----
// out[r, :] = src[index[r], :] for r in [0, rows), D wide; out must not overlap src. fp32 rows
// of whole aligned cache lines are written with streaming stores (out is for a later pass).
template <typename T>
void gather_rows(T* out, const T* src, const int32_t* index, int64_t rows, int64_t D);
// The same rows rounded to bf16, out[r, :] = to_bf16(src[index[r], :]): the dispatch when the
// experts read their rows in bf16 only (MoeDims::bf16_activations). Rows of whole aligned cache
// lines (D a multiple of 32) are streamed as above.
void gather_rows_bf16(uint16_t* out, const float* src, const int32_t* index, int64_t rows,
                      int64_t D);
// One row of a gated combine's backward, y_t += g·y_row: writes dy_row = g·dy_t and returns
// ∂loss/∂g = dy_t · y_row (summed in vector lanes: a fixed order, whatever the thread count).
// Called per row from inside a parallel loop (no parallelism of its own); dy_row streamed as
// gather_rows' output.
template <typename T>
T gated_row_backward(const T* dyt, T g, const T* yr, T* dyr, int64_t D);
// The same with dy_row written rounded to bf16 (to_bf16 of g·dy_t; the same returned dot), for
// experts that read their output gradients in bf16 only (MoeDims::bf16_activations).
float gated_row_backward_bf16(const float* dyt, float g, const float* yr, uint16_t* dyr16,
                              int64_t D);

// ---- token embedding ----
// out[N,D] = wte[tokens[n], :]; tokens in [0, V) (validated by the caller).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t D);
// dwte[V,D] += scatter of dout by token; deterministic (independent of thread count).
template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t D);

// ---- cross-entropy over the vocabulary ----
// losses[n] = logsumexp(logits[n,:]) − logits[n, targets[n]]; targets[n] < 0 means "ignore"
// (loss 0, gradient 0). lse (optional, [2N]) receives each row's logsumexp for the backward in two
// parts: lse[2n] = the row's max m, lse[2n+1] = log Σ e^(logits − m) (apart, so that logits − m
// stays exact where logits are large).
template <typename T>
void xent_forward(T* losses, const T* logits, const int32_t* targets, int64_t N, int64_t V,
                  T* lse = nullptr);
// dlogits[n,:] = scale · (softmax(logits[n,:]) − onehot(targets[n])); 0 for ignored rows.
// OVERWRITES dlogits; dlogits may equal logits (computed in place, row by row). lse: the
// forward's (then one pass: softmax = e^((logits − m) − log Σ)), or null (computed again).
template <typename T>
void xent_backward(T* dlogits, const T* logits, const int32_t* targets, T scale, int64_t N,
                   int64_t V, const T* lse = nullptr);
// The same gradient (with the forward's lse) written in bf16: dlogits16[n,:] is to_bf16 of what
// xent_backward writes, bit for bit, without its fp32 array (the LM head's backward GEMMs read
// it under precision bf16).
void xent_backward_bf16(uint16_t* dlogits16, const float* logits, const int32_t* targets,
                        float scale, int64_t N, int64_t V, const float* lse);
// xent_forward and xent_backward_bf16 with scale 1 in one pass over the logits (each row read
// from memory once, its gradient computed while it is in cache): the LM head of a training
// forward under bf16, whose backward GEMMs apply the loss scale (linear_backward's alpha). The
// same losses and lse as xent_forward, the same dlogits16 as xent_backward_bf16 with scale 1.
void xent_forward_backward_bf16(float* losses, uint16_t* dlogits16, const float* logits,
                                const int32_t* targets, int64_t N, int64_t V, float* lse);
// The LM head of a training forward under bf16 with its loss: logits = inp · weightᵀ (inp
// [N, D], weight [V, D], through `bf16`), then xent_forward_backward_bf16 — by blocks of
// `block_rows` rows, one block per thread at a time, each block's logits written into the
// thread's part of `scratch` (block_rows × V floats per thread, by omp_get_thread_num()) and
// read back while they are in cache: the N × V logits never travel through memory. With
// `logits` non-null they are written there instead ([N, V], kept). block_rows >= N: one GEMM
// and one pass, each on all threads (the same as matmul_forward then xent_forward_backward_bf16).
// The block GEMM's shape does not depend on the thread count, nor do the results.
void lm_head_xent_bf16(float* losses, uint16_t* dlogits16, float* lse, float* logits,
                       float* scratch, const float* inp, const float* weight,
                       const int32_t* targets, int64_t N, int64_t D, int64_t V,
                       const Bf16Gemm& bf16, int64_t block_rows);

}  // namespace sy
