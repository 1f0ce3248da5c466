// Internal to src/routing: the AVX-512 code of routing/transposed.h for float: 16×16 register
// transpositions, the float specialisation of transpose_rows (the same result as the scalar loop,
// which is its reference), untranspose_block, and the router scores of 16 tokens computed in the
// transposed layout (scores_block_transposed: the scalar loops' operations in their order, the same
// floats).
//
// Included by routing/transposed.h at its end, inside `#if defined(__AVX512F__)`, after the
// primary transpose_rows it specialises: include that header, not this one.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/vec_math.h"  // fast_exp; <immintrin.h> with GCC 12's false-positive warnings silenced

namespace sy::detail {

// Permute indices of the 16×16 transposition: stage s (h = 2^s) swaps bit s of the row index with
// bit s of the column index. Row j (bit s clear) keeps its lane c, or takes its partner j + h's
// lane c − h; row j + h keeps lane c, or takes row j's lane c + h (16 + l = the second source).
struct TransposeIndex {
  int32_t lo[4][16], hi[4][16];
};
constexpr TransposeIndex make_transpose_index() {
  TransposeIndex ix{};
  for (int s = 0; s < 4; ++s) {
    const int h = 1 << s;
    for (int c = 0; c < 16; ++c) {
      ix.lo[s][c] = (c & h) ? 16 + c - h : c;
      ix.hi[s][c] = (c & h) ? 16 + c : c + h;
    }
  }
  return ix;
}
inline constexpr TransposeIndex kTransposeIndex = make_transpose_index();

// One 16×16 block in registers: x[j] lane c → x[c] lane j, in four permute stages, one
// two-source permute per output register. Inline and fully unrolled, so that x stays in registers.
inline void transpose_16x16_registers(__m512* x) {
#pragma GCC unroll 4
  for (int s = 0; s < 4; ++s) {
    const int h = 1 << s;
    const __m512i ilo = _mm512_loadu_si512(kTransposeIndex.lo[s]);
    const __m512i ihi = _mm512_loadu_si512(kTransposeIndex.hi[s]);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      if (j & h) continue;
      const __m512 a = x[j], b = x[j + h];
      x[j] = _mm512_permutex2var_ps(a, ilo, b);
      x[j + h] = _mm512_permutex2var_ps(a, ihi, b);
    }
  }
}

// dst[c, r] = src[r, c] for a 16×16 block. With `scale`, every source row is multiplied by it
// lane by lane first (dst[c, r] = src[r, c] · scale[c]).
inline void transpose_16x16(const float* src, int64_t ld_src, float* dst, int64_t ld_dst,
                            const __m512* scale = nullptr) {
  __m512 x[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) {
    x[j] = _mm512_loadu_ps(src + j * ld_src);
    if (scale) x[j] = _mm512_mul_ps(x[j], *scale);
  }
  transpose_16x16_registers(x);
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) _mm512_storeu_ps(dst + j * ld_dst, x[j]);
}

template <>
inline void transpose_rows<float>(const float* src, int64_t ld, int64_t cols, int64_t r0,
                                  int64_t r1, float* dst) {
  int64_t r = r0;
  for (; r + 16 <= r1; r += 16) {
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) transpose_16x16(src + r * cols + c, cols, dst + c * ld + r, ld);
    for (; c < cols; ++c)
      for (int64_t rr = r; rr < r + 16; ++rr) dst[c * ld + rr] = src[rr * cols + c];
  }
  for (; r < r1; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = src[r * cols + c];
}

// The inverse of transpose_rows for the 16 tokens t0.. (lanes: those < N): dst[t·E + i] =
// sT[i·ld + t], or sT[i·ld + t] · scale[t − t0] with `scale` (16 floats, 64-byte aligned).
inline void untranspose_block(const float* sT, int64_t ld, int64_t E, int64_t n, int64_t t0,
                              float* dst, const float* scale = nullptr) {
  int64_t i = 0;
  const __m512 s = scale ? _mm512_load_ps(scale) : _mm512_set1_ps(1.f);
  if (t0 + 16 <= n)
    for (; i + 16 <= E; i += 16)
      transpose_16x16(sT + i * ld + t0, ld, dst + t0 * E + i, E, scale ? &s : nullptr);
  for (; i < E; ++i)
    for (int64_t t = t0; t < std::min(n, t0 + 16); ++t)
      dst[t * E + i] = scale ? sT[i * ld + t] * scale[t - t0] : sT[i * ld + t];
}

// Router scores of the 16 tokens t0.. (lanes: those < N) from the logits z[N,E], written into
// sT[E, ld]: softmax over experts, or the sigmoid of each logit. The lanes run the scalar loops'
// operations in their order (max, exp, a sum over experts in index order, one division, products),
// and the vector fast_exp rounds like the scalar one, so the scores are the same floats as
//   m = max_i z; e_i = fast_exp(z_i − m); sum = Σ_i e_i (i ascending); s_i = e_i · (1/sum)
// (BipTest.RouterTransposedScoresGiveTheReferencePrices checks it).
// The last pass of the softmax fused with the way back to rows: sT[i·ld + t] ·= inv (lane t − t0),
// and dst[t·E + i] = the product, for the 16 tokens t0.. (lanes: those < N). Each score is loaded
// once for both.
inline void scale_untranspose_block(float* sT, int64_t ld, int64_t E, int64_t n, int64_t t0,
                                    __m512 inv, float* dst) {
  float* col = sT + t0;
  const bool full = t0 + 16 <= n;
  const int64_t cnt = full ? 16 : n - t0;
  const auto lanes = static_cast<__mmask16>(full ? 0xFFFF : (1u << cnt) - 1);
  int64_t i = 0;
  if (full) {
    for (; i + 16 <= E; i += 16) {
      __m512 x[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) {
        x[j] = _mm512_mul_ps(_mm512_loadu_ps(col + (i + j) * ld), inv);
        _mm512_storeu_ps(col + (i + j) * ld, x[j]);
      }
      transpose_16x16_registers(x);
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) _mm512_storeu_ps(dst + (t0 + j) * E + i, x[j]);
    }
  }
  for (; i < E; ++i) {
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, col + i * ld), inv);
    _mm512_mask_storeu_ps(col + i * ld, lanes, v);
    alignas(64) float lane[16];
    _mm512_store_ps(lane, v);
    for (int64_t t = 0; t < cnt; ++t) dst[(t0 + t) * E + i] = lane[t];
  }
}

// With `dst` (null: sT only), also the scores as rows: dst[t·E + i] for the block's tokens.
inline void scores_block_transposed(const float* z, int64_t n, int64_t E, bool sigmoid, int64_t t0,
                                    int64_t ld, float* sT, float* dst = nullptr) {
  transpose_rows(z, ld, E, t0, std::min(n, t0 + 16), sT);
  const auto lanes = static_cast<__mmask16>(n - t0 >= 16 ? 0xFFFF : (1u << (n - t0)) - 1);
  float* col = sT + t0;
  if (sigmoid) {
    const __m512 one = _mm512_set1_ps(1.f), sign = _mm512_set1_ps(-0.f);
    for (int64_t i = 0; i < E; ++i) {
      const __m512 e = fast_exp(_mm512_xor_ps(_mm512_maskz_loadu_ps(lanes, col + i * ld), sign));
      _mm512_mask_storeu_ps(col + i * ld, lanes, _mm512_div_ps(one, _mm512_add_ps(one, e)));
    }
    if (dst) untranspose_block(sT, ld, E, n, t0, dst);
    return;
  }
  // max(x, m) keeps m on equality and on NaN, as std::max(m, x) does.
  __m512 mx = _mm512_maskz_loadu_ps(lanes, col);
  for (int64_t i = 1; i < E; ++i)
    mx = _mm512_max_ps(_mm512_maskz_loadu_ps(lanes, col + i * ld), mx);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < E; ++i) {
    const __m512 e =
        fast_exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, col + i * ld), mx));
    _mm512_mask_storeu_ps(col + i * ld, lanes, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.f), sum);  // masked-off lanes: never stored
  if (dst) {
    scale_untranspose_block(sT, ld, E, n, t0, inv, dst);
    return;
  }
  for (int64_t i = 0; i < E; ++i)
    _mm512_mask_storeu_ps(col + i * ld, lanes,
                          _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, col + i * ld), inv));
}

}  // namespace sy::detail
