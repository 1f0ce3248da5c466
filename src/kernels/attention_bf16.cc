// The attention core under precision bf16: its four products (scores, P·V and, in the backward
// pass, dP, dV, dQ, dK) with AVX512-BF16 dot products on operands rounded to bf16, fp32
// accumulation; the softmax and its backward in fp32 as in attention.cc.
//
// Why its own kernel: each (sequence, head) is a chain of small products (S × S × hd, causal)
// whose operands fit in L2. As calls to a GEMM library they cost a dispatch each and could not
// share the rounding of their operands; as batched library products (one per layer) they computed
// the full S × S square and streamed the scores through memory (docs/benchmarks.md: no faster
// than fp32). Here one thread runs one (sequence, head) through all of them: operands are rounded
// and laid out once, the causal blocks alone are computed, and the scores of a block of query rows
// go through softmax and P·V while they are in L1.
//
// Layout. VDPBF16PS multiplies pairs: lane j of its result gains a₀·b₀ + a₁·b₁ for the two bf16
// halves of a 32-bit word of each operand. A product C = A·B over k therefore reads A as pairs
// along k (one 32-bit word broadcast per row) and B as "VNNI" words: B2[p][j] holds B[2p][j] in
// its low half and B[2p+1][j] in its high half, so that 16 columns of B2 are one vector. Odd k is
// padded with a zero element. The micro-kernel reads A's pair (row i, pair p) at
// a[i·row_stride + p·pair_stride]: pair_stride 1 for A stored by rows (Q, dO, P, dZ along their
// rows), row_stride 1 for A stored as VNNI words of its transpose (Pᵀ and dZᵀ for dV and dK, read
// from the VNNI copies of P and dZ) — so no operand is ever transposed element by element.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/vec_math.h"
#include "kernels/attention_internal.h"
#include "kernels/kernels.h"

namespace sy {

namespace {

// Query rows per block: the scores of a block are computed, normalised, rounded and multiplied by
// V while in L1 (48 rows × 256 fp32 = 48 KB at S = 256). A multiple of the micro-kernel's rows,
// and even: a block's rows pair up into whole VNNI words.
constexpr int64_t kRows = 48;

// Layout of one thread's scratch, in 32-bit words. Pairs along hd: hdp; along S: Sp. Columns of
// VNNI arrays padded to whole vectors: hdn, Sn.
struct Bf16AttentionLayout {
  int64_t S, hd, hdp, Sp, hdn, Sn;
  Bf16AttentionLayout(int64_t S_, int64_t hd_)
      : S(S_),
        hd(hd_),
        hdp((hd_ + 1) / 2),
        Sp((S_ + 1) / 2),
        hdn((hd_ + 15) / 16 * 16),
        Sn((S_ + 15) / 16 * 16) {}
  // Arrays (words): pairs by rows [S × hdp] ×2 (Q or dO; pack_vnni_cols's tmp), VNNI
  // [hdp × Sn] (Kᵀ or Vᵀ), VNNI [Sp × hdn] ×3 (V or dO, K, Q), VNNI [Sp × Sn] ×2 (P, dZ),
  // pairs by rows [kRows × Sp] (a block of P or dZ).
  int64_t rows_hd() const { return S * hdp; }
  int64_t vnni_t() const { return hdp * Sn; }
  int64_t vnni_hd() const { return Sp * hdn; }
  int64_t vnni_s() const { return Sp * Sn; }
  int64_t block() const { return kRows * Sp; }
  int64_t words() const {
    return 2 * rows_hd() + vnni_t() + 3 * vnni_hd() + 2 * vnni_s() + block();
  }
};

#if defined(__AVX512BF16__)

constexpr int kMr = 6;  // micro-kernel rows; × 4 vectors of 16 columns = 24 accumulators
constexpr int kNv = 4;

// The 32 bf16 values of a vector of 16 words, as VDPBF16PS's operand type.
inline __m512bh as_bh(__m512i x) { return (__m512bh)x; }

// Lanes [0, n) of 16 (none for n ≤ 0).
inline __mmask16 first(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                 : static_cast<__mmask16>(n <= 0 ? 0u : (1u << n) - 1u);
}

// C[MR × n] = alpha·A·B (+ C if accumulate), n ≤ 16·NV, over kp pairs.
template <int MR, int NV>
void tile(int64_t kp, const uint32_t* a, int64_t a_rs, int64_t a_ps, const uint32_t* b, int64_t ldb,
          float* c, int64_t ldc, int64_t n, float alpha, bool accumulate) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = as_bh(_mm512_loadu_si512(b + p * ldb + 16 * v));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512bh av = as_bh(_mm512_set1_epi32(static_cast<int>(a[i * a_rs + p * a_ps])));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const __mmask16 m = first(n - 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(acc[i][v], al);
      if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, ci));
      _mm512_mask_storeu_ps(ci, m, r);
    }
  }
}

using TileFn = void (*)(int64_t, const uint32_t*, int64_t, int64_t, const uint32_t*, int64_t,
                        float*, int64_t, int64_t, float, bool);

template <int MR>
constexpr TileFn tiles_for_rows[kNv] = {tile<MR, 1>, tile<MR, 2>, tile<MR, 3>, tile<MR, 4>};
constexpr const TileFn* kTiles[kMr] = {tiles_for_rows<1>, tiles_for_rows<2>, tiles_for_rows<3>,
                                       tiles_for_rows<4>, tiles_for_rows<5>, tiles_for_rows<6>};

// C[m × n] = alpha·A·B (+ C), A's pair (i, p) at a[i·a_rs + p·a_ps], B VNNI words [kp × ldb].
void product(int64_t m, int64_t n, int64_t kp, const uint32_t* a, int64_t a_rs, int64_t a_ps,
             const uint32_t* b, int64_t ldb, float* c, int64_t ldc, float alpha, bool accumulate) {
  for (int64_t j0 = 0; j0 < n; j0 += 16 * kNv) {
    const int64_t nn = std::min<int64_t>(16 * kNv, n - j0);
    for (int64_t i0 = 0; i0 < m; i0 += kMr) {
      const int64_t mr = std::min<int64_t>(kMr, m - i0);
      kTiles[mr - 1][(nn + 15) / 16 - 1](kp, a + i0 * a_rs, a_rs, a_ps, b + j0, ldb,
                                         c + i0 * ldc + j0, ldc, nn, alpha, accumulate);
    }
  }
}

// 16 words of bf16 pairs (x[2q], x[2q+1]) from the 32 floats at x, of which the first n are read
// (the rest count as 0). Rounded by VCVTNE2PS2BF16: to nearest even, denormals to 0 — as
// VDPBF16PS reads them anyway.
inline __m512i pairs16(const float* x, int64_t n) {
  const __m512 lo = _mm512_maskz_loadu_ps(first(n), x);
  const __m512 hi = _mm512_maskz_loadu_ps(first(n - 16), x + 16);
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// Rows this far ahead are fetched into cache while the current one is converted: q, k, v and dO
// are strided rows of the token-major arrays, read cold (without, these passes took ≈ 15% of the
// core's time waiting on memory).
constexpr int64_t kPrefetchRows = 8;

inline void prefetch_row(const float* x, int64_t n) {
  for (int64_t j = 0; j < n; j += 16)
    _mm_prefetch(reinterpret_cast<const char*>(x + j), _MM_HINT_T0);
}

// The S rows of n floats at x (row stride ldx) towards L2: the next (sequence, head)'s operands,
// fetched while this one computes.
inline void prefetch_rows_l2(const float* x, int64_t ldx, int64_t S, int64_t n) {
  for (int64_t r = 0; r < S; ++r)
    for (int64_t j = 0; j < n; j += 16)
      _mm_prefetch(reinterpret_cast<const char*>(x + r * ldx + j), _MM_HINT_T1);
}

// dst[r][p] = pair (x[r][2p], x[r][2p+1]) for r < rows, p < (n+1)/2 (an odd n padded with 0).
void round_rows(uint32_t* dst, int64_t ldd, const float* x, int64_t ldx, int64_t rows, int64_t n) {
  const int64_t np = (n + 1) / 2;
  for (int64_t r = 0; r < rows; ++r) {
    if (r + kPrefetchRows < rows) prefetch_row(x + (r + kPrefetchRows) * ldx, n);
    for (int64_t p = 0; p < np; p += 16)
      _mm512_mask_storeu_epi32(dst + r * ldd + p, first(np - p),
                               pairs16(x + r * ldx + 2 * p, n - 2 * p));
  }
}

// VNNI words of X [rows × n] (row stride ldx): dst[p][j] = (X[2p][j], X[2p+1][j]) for
// p < (rows+1)/2, j < ldd (a missing row or column is 0). With causal_row0 ≥ 0, X's rows are
// rows causal_row0.. of a causal matrix (row t zero beyond column t, whatever X holds there), and
// only the columns the products over Xᵀ read are written: a tile of kMr rows of Xᵀ starting at
// column j0 reads pairs from ⌊j0/2⌋, so pair row t/2 is read up to column t + kMr + 1.
void pack_vnni_rows(uint32_t* dst, int64_t ldd, const float* x, int64_t ldx, int64_t rows,
                    int64_t n, int64_t causal_row0 = -1) {
  // Word j of the result takes bf16 j of row 2p and bf16 j of row 2p+1.
  alignas(64) static constexpr uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kInterleave);
  const bool causal = causal_row0 >= 0;
  for (int64_t p = 0; p < (rows + 1) / 2; ++p) {
    const float* r0 = x + 2 * p * ldx;
    const float* r1 = r0 + ldx;
    const int64_t t = causal_row0 + 2 * p;  // causal: r0's row in the matrix
    const int64_t n0 = causal ? std::min(n, t + 1) : n;
    const int64_t n1 = 2 * p + 1 >= rows ? 0 : causal ? std::min(n, t + 2) : n;
    const int64_t cols = causal ? std::min(ldd, (t + kMr + 2 + 15) / 16 * 16) : ldd;
    if (2 * p + kPrefetchRows + 1 < rows) {
      prefetch_row(r0 + kPrefetchRows * ldx, std::min(n, cols));
      prefetch_row(r1 + kPrefetchRows * ldx, std::min(n, cols));
    }
    for (int64_t j = 0; j < cols; j += 16) {
      const __m512 a = _mm512_maskz_loadu_ps(first(n0 - j), r0 + j);
      const __m512 b = _mm512_maskz_loadu_ps(first(n1 - j), r1 + j);
      _mm512_storeu_si512(dst + p * ldd + j,
                          _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b, a)));
    }
  }
}

// 16 results of a row kernel stored rounded at row16[j..] (bf16 pairs by rows).
inline void store_row16(uint32_t* row16, int64_t j, __m512 r, __mmask16 k) {
  _mm256_mask_storeu_epi16(reinterpret_cast<uint16_t*>(row16) + j, k,
                           (__m256i)_mm512_cvtneps_pbh(r));
}

// Zeroes bf16 [from, to) of a row of pairs (the causal zeros up to a block's even end).
inline void zero_row16(uint32_t* row16, int64_t from, int64_t to) {
  std::fill(reinterpret_cast<uint16_t*>(row16) + from, reinterpret_cast<uint16_t*>(row16) + to,
            uint16_t{0});
}

// VNNI words of Xᵀ for X [n × k] (row stride ldx): dst[p][j] = (X[j][2p], X[j][2p+1]) for
// p < (k+1)/2, j < ldd (columns j ≥ n are 0). tmp: n·(k+1)/2 words. The rows are rounded into
// tmp as pairs, then the words transposed one by one (from L1: a few µs at 256 × 32; a
// 16-lane scatter per row ran 10× slower).
void pack_vnni_cols(uint32_t* dst, int64_t ldd, const float* x, int64_t ldx, int64_t n, int64_t k,
                    uint32_t* tmp) {
  const int64_t kp = (k + 1) / 2;
  round_rows(tmp, kp, x, ldx, n, k);
  for (int64_t p = 0; p < kp; ++p) {
    uint32_t* d = dst + p * ldd;
    for (int64_t j = 0; j < n; ++j) d[j] = tmp[j * kp + p];
    std::fill(d + n, d + ldd, 0u);
  }
}

#endif  // __AVX512BF16__

}  // namespace

int64_t attention_bf16_scratch_size(int64_t S, int64_t hd, int max_threads) {
  return Bf16AttentionLayout(S, hd).words() * static_cast<int64_t>(max_threads);
}

#if defined(__AVX512BF16__)

namespace {

// Where (sequence, head) bh's rows start: in q, k, v (row stride ld) and in the [B·S, H·hd] output
// or its gradient (row stride D).
struct Heads {
  int64_t S, H, hd, ld, D;
  float scale;  // of the scores, 1/√hd
  Heads(int64_t S_, int64_t H_, int64_t hd_, int64_t ld_)
      : S(S_),
        H(H_),
        hd(hd_),
        ld(ld_),
        D(H_ * hd_),
        scale(1.f / std::sqrt(static_cast<float>(hd_))) {
    SY_DCHECK(ld >= D);
  }
  int64_t strided(int64_t bh) const { return bh / H * S * ld + bh % H * hd; }
  int64_t dense(int64_t bh) const { return bh / H * S * D + bh % H * hd; }
  // The rows of q, k, v (and of `rows_d`, if given: dout) for head bh towards L2.
  void prefetch(int64_t bh, const float* q, const float* k, const float* v,
                const float* rows_d = nullptr) const {
    for (const float* x : {q, k, v}) prefetch_rows_l2(x + strided(bh), ld, S, hd);
    if (rows_d != nullptr) prefetch_rows_l2(rows_d + dense(bh), D, S, hd);
  }
};

}  // namespace

void attention_forward_bf16(float* out, float* att, const float* q, const float* k, const float* v,
                            int64_t B, int64_t S, int64_t H, int64_t hd, int64_t ld,
                            uint32_t* scratch) {
  const Heads heads(S, H, hd, ld);
  const int64_t D = heads.D;
  const float scale = heads.scale;
  const Bf16AttentionLayout L(S, hd);
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const float* qb = q + heads.strided(bh);  // [S, hd], row stride ld
    const float* kb = k + heads.strided(bh);
    const float* vb = v + heads.strided(bh);
    float* a = att + bh * S * S;       // [S, S]
    float* o = out + heads.dense(bh);  // [S, hd], row stride D
    uint32_t* w = scratch + static_cast<int64_t>(omp_get_thread_num()) * L.words();
    uint32_t* q2 = w;                 // [S × hdp] Q by rows
    uint32_t* kt = q2 + L.rows_hd();  // [hdp × Sn] Kᵀ as VNNI words
    uint32_t* v2 = kt + L.vnni_t();   // [Sp × hdn] V as VNNI words
    uint32_t* p2 = v2 + L.vnni_hd();  // [kRows × Sp] a block of P by rows
    uint32_t* tmp = p2 + L.block();   // [S × hdp] pack_vnni_cols's
    if (bh + 1 < B * H) heads.prefetch(bh + 1, q, k, v);
    round_rows(q2, L.hdp, qb, ld, S, hd);
    pack_vnni_cols(kt, L.Sn, kb, ld, S, hd, tmp);
    pack_vnni_rows(v2, L.hdn, vb, ld, S, hd);
    for (int64_t r0 = 0; r0 < S; r0 += kRows) {
      const int64_t r1 = std::min(S, r0 + kRows), rows = r1 - r0;
      // Scores of rows [r0, r1) against keys [0, r1); the softmax zeroes j > t and writes P's
      // rows rounded for P·V.
      const int64_t kp = (r1 + 1) / 2;
      product(rows, r1, L.hdp, q2 + r0 * L.hdp, L.hdp, 1, kt, L.Sn, a + r0 * S, S, scale, false);
      for (int64_t t = r0; t < r1; ++t) {
        uint32_t* row16 = p2 + (t - r0) * L.Sp;
        detail::causal_softmax_row(a + t * S, t, S, [&](int64_t j, __m512 r, __mmask16 m) {
          store_row16(row16, j, r, m);
        });
        zero_row16(row16, t + 1, 2 * kp);
      }
      product(rows, hd, kp, p2, L.Sp, 1, v2, L.hdn, o + r0 * D, D, 1.f, false);
    }
  }
}

void attention_backward_bf16(float* dq, float* dk, float* dv, float* scratch, uint32_t* scratch16,
                             const float* dout, const float* q, const float* k, const float* v,
                             const float* att, int64_t B, int64_t S, int64_t H, int64_t hd,
                             int64_t ld, bool accumulate) {
  const Heads heads(S, H, hd, ld);
  const int64_t D = heads.D;
  const float scale = heads.scale;
  const Bf16AttentionLayout L(S, hd);
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t off = heads.strided(bh);
    const float* qb = q + off;  // [S, hd], row stride ld
    const float* kb = k + off;
    const float* vb = v + off;
    const float* a = att + bh * S * S;         // [S, S]
    const float* go = dout + heads.dense(bh);  // [S, hd], row stride D
    const int thread = omp_get_thread_num();
    uint32_t* w = scratch16 + static_cast<int64_t>(thread) * L.words();
    uint32_t* do2 = w;                 // [S × hdp] dO by rows
    uint32_t* vt = do2 + L.rows_hd();  // [hdp × Sn] Vᵀ as VNNI words
    uint32_t* dov = vt + L.vnni_t();   // [Sp × hdn] dO, K, Q as VNNI words
    uint32_t* kv = dov + L.vnni_hd();
    uint32_t* qv = kv + L.vnni_hd();
    uint32_t* pv = qv + L.vnni_hd();  // [Sp × Sn] P, dZ as VNNI words
    uint32_t* dzv = pv + L.vnni_s();
    uint32_t* dz2 = dzv + L.vnni_s();  // [kRows × Sp] a block of dZ by rows
    uint32_t* tmp = dz2 + L.block();   // [S × hdp] pack_vnni_cols's
    const bool dz_needed = dq != nullptr || dk != nullptr;
    float* dz = scratch + static_cast<int64_t>(thread) * S * S;  // [S, S] fp32 dP, then dZ
    if (bh + 1 < B * H) heads.prefetch(bh + 1, q, k, v, dout);
    if (dv != nullptr) pack_vnni_rows(dov, L.hdn, go, D, S, hd);
    if (dz_needed) {
      round_rows(do2, L.hdp, go, D, S, hd);
      pack_vnni_cols(vt, L.Sn, vb, ld, S, hd, tmp);
    }
    if (dq != nullptr) pack_vnni_rows(kv, L.hdn, kb, ld, S, hd);
    if (dk != nullptr) pack_vnni_rows(qv, L.hdn, qb, ld, S, hd);
    // Row blocks: P's VNNI words (for dV), dP = dO·Vᵀ on the causal columns, dZ = P ⊙ (dP −
    // rowsum(P ⊙ dP)) in fp32 with its rows rounded for dQ = scale·dZ·K, dZ's VNNI words (dK).
    for (int64_t r0 = 0; r0 < S; r0 += kRows) {
      const int64_t r1 = std::min(S, r0 + kRows), rows = r1 - r0, kp = (r1 + 1) / 2;
      if (dv != nullptr) pack_vnni_rows(pv + r0 / 2 * L.Sn, L.Sn, a + r0 * S, S, rows, S, r0);
      if (!dz_needed) continue;
      product(rows, r1, L.hdp, do2 + r0 * L.hdp, L.hdp, 1, vt, L.Sn, dz + r0 * S, S, 1.f, false);
      for (int64_t t = r0; t < r1; ++t) {
        float* d = dz + t * S;
        uint32_t* row16 = dz2 + (t - r0) * L.Sp;
        if (dq != nullptr) {
          detail::softmax_row_backward(a + t * S, d, t + 1, [&](int64_t j, __m512 r, __mmask16 m) {
            store_row16(row16, j, r, m);
          });
          zero_row16(row16, t + 1, 2 * kp);
        } else {
          detail::softmax_row_backward(a + t * S, d, t + 1);
        }
      }
      if (dq != nullptr)
        product(rows, hd, kp, dz2, L.Sp, 1, kv, L.hdn, dq + off + r0 * ld, ld, scale, accumulate);
      if (dk != nullptr) pack_vnni_rows(dzv + r0 / 2 * L.Sn, L.Sn, dz + r0 * S, S, rows, S, r0);
    }
    // dV[j] = Σ_{t ≥ j} P[t, j]·dO[t] and dK[j] = scale·Σ_{t ≥ j} dZ[t, j]·Q[t]: A = Pᵀ or dZᵀ
    // read from the VNNI words, pairs from ⌊j0/2⌋ (P and dZ are 0 for t < j).
    for (int64_t j0 = 0; j0 < S; j0 += kMr) {
      const int64_t p0 = j0 / 2, m = std::min<int64_t>(kMr, S - j0);
      if (dv != nullptr)
        product(m, hd, L.Sp - p0, pv + p0 * L.Sn + j0, 1, L.Sn, dov + p0 * L.hdn, L.hdn,
                dv + off + j0 * ld, ld, 1.f, accumulate);
      if (dk != nullptr)
        product(m, hd, L.Sp - p0, dzv + p0 * L.Sn + j0, 1, L.Sn, qv + p0 * L.hdn, L.hdn,
                dk + off + j0 * ld, ld, scale, accumulate);
    }
  }
}

#else  // no AVX512-BF16 at compile time: the core stays in fp32 (docs/model.md)

void attention_forward_bf16(float* out, float* att, const float* q, const float* k, const float* v,
                            int64_t B, int64_t S, int64_t H, int64_t hd, int64_t ld, uint32_t*) {
  attention_forward(out, att, q, k, v, B, S, H, hd, ld);
}

void attention_backward_bf16(float* dq, float* dk, float* dv, float* scratch, uint32_t*,
                             const float* dout, const float* q, const float* k, const float* v,
                             const float* att, int64_t B, int64_t S, int64_t H, int64_t hd,
                             int64_t ld, bool accumulate) {
  attention_backward(dq, dk, dv, scratch, dout, q, k, v, att, B, S, H, hd, ld, accumulate);
}

#endif

}  // namespace sy
