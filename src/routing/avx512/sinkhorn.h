// Internal to src/routing: the AVX-512 path of S-BASE routing for float logits, 16 tokens per
// vector: softmax_fast (p = softmax(z) and lse, also into a blocked copy of p), and on that copy
// scaling_iterations_blocked, the Sinkhorn iterations in scaling form; select_fast, the top-K of
// z + b. The scalar references are in sinkhorn.cc: detail::softmax_row, scaling_iterations and the
// select_top_k loop of sinkhorn_route_forward. The scores and the selection (ties to the lower
// index; near-ties and NaN re-selected in double by select_top_k) are the reference's; the
// potentials agree to rounding (column sums added in another fixed order; lse by fast_log, within
// 2 ulp).
//
// Included once, by sinkhorn.cc inside `#if defined(__AVX512F__)`, after the helpers it shares
// (kSinkhornBlock, column_step, gates_of): its kernels live in that file's anonymous namespace.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/vec_math.h"
#include "routing/select.h"
#include "routing/select_lanes.h"
#include "routing/sinkhorn.h"
#include "routing/transposed.h"

namespace sy {
// NOLINTBEGIN(google-build-namespaces, misc-definitions-in-headers): sinkhorn.cc's own definitions
// (see above), left as they were there: made `inline`, they might be inlined differently.
namespace {

constexpr int64_t kLaneMaxExperts = 128;

// The selection on z + b for float logits, 16 tokens per block: the block's logits transposed on
// the stack, and the values w = double(z) + b (exactly the scalar path's) rounded to float and
// selected on 16 lanes by the packed-key network of routing/select_lanes.h, keeping the K + 1
// largest. Rounding to nearest is monotone, so where those K + 1 floats are strictly decreasing
// (here: with their keys' low bits ignored, exact()) the K largest doubles are the same experts in
// the same order (every other w rounds to at most the (K+1)-th float, below the K-th). A lane
// with a tie or near-tie among them (equal logits, or doubles within a few of a float's spacings)
// or a NaN is re-selected in double by select_top_k, as is the reference: ties to the lower
// index. Gates as in the scalar loop.
template <int K>
double select_lanes(GateFn g, const float* z, const float* p, int64_t n, int64_t E, const double* b,
                    int32_t* expert, float* gate) {
  const int64_t blocks = (n + 15) / 16;
  // The (K+1)-th value exists only when E > K; with E = K there is no boundary to check.
  const int slots = static_cast<int>(std::min<int64_t>(E, K + 1));  // must strictly decrease
  double topk_sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : topk_sum)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    alignas(64) float zT[kLaneMaxExperts * 16];  // [E, 16] logits
    alignas(64) int32_t eT[K * 16];              // [K, 16] selected experts
    const int64_t t0 = 16 * blk, cnt = std::min<int64_t>(16, n - t0);
    if (cnt < 16) std::fill(zT, zT + E * 16, 0.f);  // idle lanes: finite, never used
    detail::transpose_rows(z + t0 * E, 16, E, 0, cnt, zT);
    detail::LaneTopKeys16<K + 1> sel(E);
    __mmask16 redo = 0;
    for (int64_t i = 0; i < E; ++i) {
      const __m512 zi = _mm512_load_ps(zT + 16 * i);
      const __m512d bi = _mm512_set1_pd(b[i]);
      const __m512d w_lo = _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(zi)), bi);
      const __m512d w_hi = _mm512_add_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(zi, 1)), bi);
      // + 0 turns −0 into +0 (the keys would order them) and changes nothing else.
      const __m512 w =
          _mm512_add_ps(_mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(w_lo)),
                                           _mm512_cvtpd_ps(w_hi), 1),
                        _mm512_setzero_ps());
      redo |= _mm512_cmp_ps_mask(w, w, _CMP_UNORD_Q);
      sel.insert(w, static_cast<int32_t>(i));
    }
    redo |= static_cast<__mmask16>(~sel.exact(slots));
    for (int k = 0; k < K; ++k) _mm512_store_si512(eT + 16 * k, sel.index(k));
    for (int64_t l = 0; l < cnt; ++l) {
      const int64_t t = t0 + l;
      int32_t* et = expert + t * K;
      if ((redo >> l) & 1u) {
        const float* zt = z + t * E;
        detail::select_top_k<double>(
            E, K, [&](int64_t i) { return static_cast<double>(zt[i]) + b[i]; }, et);
      } else {
        for (int k = 0; k < K; ++k) et[k] = eT[16 * k + l];
      }
      topk_sum += static_cast<double>(gates_of(g, p + t * E, et, K, gate + t * K));
    }
  }
  return topk_sum;
}

// p = softmax(z) and a[t] = lse_t for float logits, 16 tokens per block in the transposed layout:
// the scalar loop's operations in its order (max, fast_exp, the sum over experts in index order,
// one division, products) on 16 lanes, so the same scores. False (nothing written) for E >
// kLaneMaxExperts.
inline bool softmax_fast(const float* z, int64_t n, int64_t E, float* p, float* p_blocked,
                         double* a) {
  if (E > kLaneMaxExperts) return false;
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    alignas(64) float sT[kLaneMaxExperts * 16];  // [E, 16] logits, then exponentials
    const int64_t t0 = 16 * blk, cnt = std::min<int64_t>(16, n - t0);
    if (cnt < 16) std::fill(sT, sT + E * 16, 0.f);  // idle lanes: finite, never stored
    detail::transpose_rows(z + t0 * E, 16, E, 0, cnt, sT);
    // max(x, m) keeps m on equality and on NaN, as std::max(m, x) does.
    __m512 mx = _mm512_load_ps(sT);
    for (int64_t i = 1; i < E; ++i) mx = _mm512_max_ps(_mm512_load_ps(sT + 16 * i), mx);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < E; ++i) {
      const __m512 e = detail::fast_exp_nonpositive(_mm512_sub_ps(_mm512_load_ps(sT + 16 * i), mx));
      _mm512_store_ps(sT + 16 * i, e);
      sum = _mm512_add_ps(sum, e);
    }
    // The scores e_i · inv straight into the blocked copy, and (the same products) into rows.
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.f), sum);
    alignas(64) float inv_l[16];
    _mm512_store_ps(inv_l, inv);
    for (int64_t i = 0; i < E; ++i)
      _mm512_storeu_ps(p_blocked + t0 * E + 16 * i,
                       _mm512_mul_ps(_mm512_load_ps(sT + 16 * i), inv));
    detail::untranspose_block(sT, 16, E, cnt, 0, p + t0 * E, inv_l);
    // a = lse in double, 8 lanes at a time (fast_log: within 2 ulp of std::log).
    const auto lanes = static_cast<uint32_t>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1);
    for (int half = 0; half < 2; ++half) {
      const __m256 m8 = half == 0 ? _mm512_castps512_ps256(mx) : _mm512_extractf32x8_ps(mx, 1);
      const __m256 s8 = half == 0 ? _mm512_castps512_ps256(sum) : _mm512_extractf32x8_ps(sum, 1);
      const __m512d lse = _mm512_add_pd(_mm512_cvtps_pd(m8), detail::fast_log(_mm512_cvtps_pd(s8)));
      _mm512_mask_storeu_pd(a + t0 + 8 * half, static_cast<__mmask8>(lanes >> (8 * half)), lse);
    }
  }
  return true;
}

// scaling_iterations on the blocked copy of p (16 tokens per vector, two halves of 8 in double):
// α for 16 tokens at once, Σ_i p[t,i]·β_i summed over experts in index order per lane, and the
// column sums kept per lane for the kSinkhornBlock tokens of a block, then added across the lanes
// in lane order. The same fixed order for any thread count; a different one from
// scaling_iterations' (the potentials agree to rounding).
double scaling_iterations_blocked(const float* pb, int64_t n, int64_t E, int iterations,
                                  double* part, double* a, double* b) {
  const int64_t blocks = (n + kSinkhornBlock - 1) / kSinkhornBlock;
  double* beta = b;  // β_i = e^{b_i} until the end
  std::fill(beta, beta + E, 1.0);
  const double col_mass = static_cast<double>(n) / static_cast<double>(E);
  double col_err = 0;
  const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
  const __m512d dmax = _mm512_set1_pd(std::numeric_limits<double>::max());
  for (int it = 0; it <= iterations; ++it) {
    const bool last = it == iterations;
    bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      alignas(64) double acc[kLaneMaxExperts * 16];  // [E, 16] per-lane column sums
      std::fill(acc, acc + E * 16, 0.0);
      const int64_t t1 = std::min(n, (blk + 1) * kSinkhornBlock);
      // Two groups of 16 tokens per pass over acc (a lone group at the end): each acc vector is
      // loaded and stored once per 32 tokens, and still gets the groups' products in token order.
      for (int64_t t0 = blk * kSinkhornBlock; t0 < t1; t0 += 32) {
        const int groups = t1 - t0 > 16 ? 2 : 1;
        __m512d al[2][2];  // [group][half] α, 0 in idle lanes
        // Σ_i p[t,i]·β_i for the groups' 32 tokens as four independent chains of FMAs (each in
        // expert order): one chain per half of a group would wait on the FMA latency.
        __m512d d[2][2] = {{zero, zero}, {zero, zero}};
        const auto fma2 = [&](const float* pi, __m512d bi, __m512d* dg) {
          const __m512 v = _mm512_loadu_ps(pi);
          dg[0] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), bi, dg[0]);
          dg[1] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), bi, dg[1]);
        };
        const float* p0 = pb + t0 * E;
        if (groups == 2) {
          for (int64_t i = 0; i < E; ++i) {
            const __m512d bi = _mm512_set1_pd(beta[i]);
            fma2(p0 + 16 * i, bi, d[0]);
            fma2(p0 + 16 * (E + i), bi, d[1]);
          }
        } else {
          for (int64_t i = 0; i < E; ++i) fma2(p0 + 16 * i, _mm512_set1_pd(beta[i]), d[0]);
        }
        for (int g = 0; g < groups; ++g) {
          const int64_t tg = t0 + 16 * g;
          const int64_t cnt = std::min<int64_t>(16, n - tg);
          const auto lanes = static_cast<uint32_t>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1);
          const auto lo = static_cast<__mmask8>(lanes), hi = static_cast<__mmask8>(lanes >> 8);
          const __m512d dlo = d[g][0], dhi = d[g][1];
          // Idle lanes get α = 0, so that they add nothing to the column sums.
          const __m512d alo = _mm512_maskz_div_pd(lo, one, dlo);
          const __m512d ahi = _mm512_maskz_div_pd(hi, one, dhi);
          const __mmask8 ok_lo = _mm512_mask_cmp_pd_mask(
              _mm512_mask_cmp_pd_mask(lo, alo, zero, _CMP_GT_OQ), alo, dmax, _CMP_LE_OQ);
          const __mmask8 ok_hi = _mm512_mask_cmp_pd_mask(
              _mm512_mask_cmp_pd_mask(hi, ahi, zero, _CMP_GT_OQ), ahi, dmax, _CMP_LE_OQ);
          finite = finite && ok_lo == lo && ok_hi == hi;
          al[g][0] = alo;
          al[g][1] = ahi;
          if (last) {  // a = log α − lse, the final row potentials
            _mm512_mask_storeu_pd(
                a + tg, lo,
                _mm512_sub_pd(detail::fast_log(alo), _mm512_maskz_loadu_pd(lo, a + tg)));
            _mm512_mask_storeu_pd(
                a + tg + 8, hi,
                _mm512_sub_pd(detail::fast_log(ahi), _mm512_maskz_loadu_pd(hi, a + tg + 8)));
          }
        }
        const float* pt = pb + t0 * E;
        for (int64_t i = 0; i < E; ++i) {
          double* ai = acc + 16 * i;
          __m512d lo = _mm512_load_pd(ai), hi = _mm512_load_pd(ai + 8);
          for (int g = 0; g < groups; ++g) {
            const __m512 p = _mm512_loadu_ps(pt + 16 * (g * E + i));
            lo = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(p)), al[g][0], lo);
            hi = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)), al[g][1], hi);
          }
          _mm512_store_pd(ai, lo);
          _mm512_store_pd(ai + 8, hi);
        }
      }
      double* col = part + blk * E;
      for (int64_t i = 0; i < E; ++i)
        col[i] = _mm512_reduce_add_pd(
            _mm512_add_pd(_mm512_load_pd(acc + 16 * i), _mm512_load_pd(acc + 16 * i + 8)));
    }
    finite &= column_step(part, blocks, E, col_mass, last, beta, col_err);  // as above
    if (!finite) return std::numeric_limits<double>::quiet_NaN();
  }
  for (int64_t i = 0; i < E; ++i) b[i] = std::log(beta[i]);
  return col_err;
}

// Runs select_lanes when it applies (E ≤ kLaneMaxExperts, K ≤ 8) and stores Σ selected p in
// topk_sum; false otherwise.
inline bool select_fast(GateFn g, const float* z, const float* p, int64_t n, int64_t E, int64_t K,
                        const double* b, int32_t* expert, float* gate, double& topk_sum) {
  if (E > kLaneMaxExperts) return false;
  return detail::with_lane_k(K, [&](auto kk) {
    topk_sum = select_lanes<decltype(kk)::value>(g, z, p, n, E, b, expert, gate);
  });
}

}  // namespace
// NOLINTEND(google-build-namespaces, misc-definitions-in-headers)
}  // namespace sy
