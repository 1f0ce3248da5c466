// Internal to src/routing: the AVX-512 path of the top-K router's steps 1–2 for float (scores,
// score statistics, selection, gates, each slot's rank within its expert): route_tokens_fast,
// which topk_route_forward calls in place of route_tokens_scalar, the reference. Each kernel's
// comment says how it differs from the reference: the same experts (ties to the lower index;
// tokens with NaN, and the lane kernel's near-ties, re-selected by select_top_k); scores the same
// floats in the lane kernel and within the last ulp in the per-token one (tree sums); lse within
// 2 ulp; the entropy by an equal formula summed in another order.
//
// Included once, by topk_router.cc inside `#if defined(__AVX512F__)`, after the scalar helpers it
// shares (row_sum, select_token, token_gates, rank_slots): its kernels live in that file's
// anonymous namespace.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/vec_math.h"
#include "routing/select_lanes.h"
#include "routing/transposed.h"
#include "switchyard/routing.h"

namespace sy {
// NOLINTBEGIN(google-build-namespaces, misc-definitions-in-headers): topk_router.cc's own
// definitions (see above), left as they were there: made `inline`, they might be inlined
// differently.
namespace {

// Steps 1–2 for one float token with AVX-512: the E experts in V = ⌈E/16⌉ registers, the lanes
// past E masked off. Softmax or sigmoid scores, the score statistics, and the selection as K
// rounds of "maximum, then the lowest available lane holding it": the lower index wins ties, as
// in select_top_k. Returns false, having written only the scores, when the selection values
// hold a NaN: the caller then selects with select_top_k (whose NaN behaviour is the reference).
// The sums are trees rather than a left-to-right chain, so scores differ from the scalar path's
// in the last ulp.
struct TokenOut {
  float lse;
  double entropy;
};

template <int V>
inline bool route_token_avx512(const float* zt, int64_t E, int64_t K, bool softmax,
                               const float* bias, float* pt, int32_t* et, TokenOut& out) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  // Register j holds experts 16j..16j+15, those < E (V = 8 serves every E in (64, 128]).
  auto lanes = [&](int j) {
    const int64_t held = std::clamp<int64_t>(E - 16 * j, 0, 16);
    return static_cast<__mmask16>((1u << held) - 1);
  };
  __m512 z[V], p[V];
  for (int j = 0; j < V; ++j) z[j] = _mm512_mask_loadu_ps(neg_inf, lanes(j), zt + 16 * j);
  __m512 mv = z[0];
  for (int j = 1; j < V; ++j) mv = _mm512_max_ps(mv, z[j]);
  const float m = _mm512_reduce_max_ps(mv);
  __m512 sv = _mm512_setzero_ps();
  for (int j = 0; j < V; ++j) {
    p[j] = detail::fast_exp(_mm512_sub_ps(z[j], _mm512_set1_ps(m)));  // 0 in masked lanes
    sv = _mm512_add_ps(sv, p[j]);
  }
  const float sum = _mm512_reduce_add_ps(sv);
  out.lse = m + std::log(sum);
  if (softmax) {
    const __m512 inv = _mm512_set1_ps(1.f / sum);
    // H = lse − Σ p_i z_i, in double (masked lanes: p = 0 and z replaced by 0).
    __m512d pz = _mm512_setzero_pd();
    for (int j = 0; j < V; ++j) {
      p[j] = _mm512_mul_ps(p[j], inv);
      const __m512 zj = _mm512_maskz_mov_ps(lanes(j), z[j]);
      pz = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(p[j])),
                           _mm512_cvtps_pd(_mm512_castps512_ps256(zj)), pz);
      pz = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(p[j], 1)),
                           _mm512_cvtps_pd(_mm512_extractf32x8_ps(zj, 1)), pz);
    }
    out.entropy = static_cast<double>(out.lse) - _mm512_reduce_add_pd(pz);
  } else {
    const __m512 one = _mm512_set1_ps(1.f);
    for (int j = 0; j < V; ++j)
      p[j] = _mm512_div_ps(
          one, _mm512_add_ps(one, detail::fast_exp(_mm512_sub_ps(_mm512_setzero_ps(), z[j]))));
  }
  for (int j = 0; j < V; ++j) _mm512_mask_storeu_ps(pt + 16 * j, lanes(j), p[j]);
  if (!softmax) {
    // Entropy of the normalised sigmoid scores: a logarithm per expert, as in the scalar path.
    const float norm = row_sum(pt, E);
    double h = 0;
    for (int64_t i = 0; i < E; ++i) {
      const double q = static_cast<double>(pt[i] / norm);
      if (q > 0) h -= q * std::log(q);
    }
    out.entropy = h;
  }
  // Selection values; taken and masked lanes are excluded through `avail`, not by their value,
  // so a value of −inf is still selectable.
  __m512 w[V];
  __mmask16 avail[V];
  __mmask16 nan = 0;
  for (int j = 0; j < V; ++j) {
    w[j] = bias ? _mm512_add_ps(p[j],
                                _mm512_mask_loadu_ps(_mm512_setzero_ps(), lanes(j), bias + 16 * j))
                : p[j];
    avail[j] = lanes(j);
    nan |= _mm512_mask_cmp_ps_mask(avail[j], w[j], w[j], _CMP_UNORD_Q);
    w[j] = _mm512_mask_mov_ps(neg_inf, avail[j], w[j]);
  }
  if (nan) return false;
  for (int64_t k = 0; k < K; ++k) {
    __m512 bv = w[0];
    for (int j = 1; j < V; ++j) bv = _mm512_max_ps(bv, w[j]);
    const __m512 best = _mm512_set1_ps(_mm512_reduce_max_ps(bv));
    for (int j = 0; j < V; ++j) {
      const __mmask16 hit = _mm512_mask_cmp_ps_mask(avail[j], w[j], best, _CMP_EQ_OQ);
      if (hit) {
        const int lane = __builtin_ctz(hit);
        et[k] = 16 * j + lane;
        const __mmask16 bit = static_cast<__mmask16>(1u << lane);
        avail[j] = static_cast<__mmask16>(avail[j] & ~bit);
        w[j] = _mm512_mask_mov_ps(w[j], bit, neg_inf);
        break;
      }
    }
  }
  return true;
}

// Steps 1–2 for float tokens [lo, hi) with route_token_avx512, for E ≤ 16·V.
template <int V>
void route_tokens_avx512(const TopKOptions& o, const float* z, int64_t lo, int64_t hi,
                         RoutingBuffers<float>& buf, const float* bias, const int32_t* forced,
                         double& ent, double& tk, int64_t* counts) {
  const int64_t E = o.n_experts, K = o.top_k;
  const bool softmax = o.score == ScoreFn::kSoftmax;
  float* scores = buf.scores.data();
  float* lse = buf.lse.data();
  int32_t* expert = buf.expert.data();
  float* gate = buf.gate.data();
  for (int64_t t = lo; t < hi; ++t) {
    float* pt = scores + t * E;
    int32_t* et = expert + t * K;
    TokenOut out;
    const bool selected =
        route_token_avx512<V>(z + t * E, E, K, softmax, forced ? nullptr : bias, pt, et, out);
    lse[t] = out.lse;
    ent += out.entropy;
    if (forced) {
      std::copy(forced + t * K, forced + (t + 1) * K, et);
    } else if (!selected) {
      select_token(E, K, pt, bias, et);
    }
    tk += static_cast<double>(token_gates(o, pt, et, gate + t * K));
    rank_slots(expert, t * K, (t + 1) * K, counts, buf.row_of_slot.data());
  }
}

// Steps 1–2 for 16 float tokens at a time, one token per lane (E ≤ kLaneMaxExperts, K ≤ 8), over
// tokens [lo, hi), lo a multiple of 16: the block's logits transposed on the stack (one vector per
// expert), the softmax or sigmoid in the scalar loop's order (max, fast_exp, the sum over experts
// in index order, one division, products: the same floats as route_tokens_scalar's), the
// selection by the packed-key lane network of routing/select_lanes.h (ties to the lower index;
// lanes with near-ties or NaN re-selected by select_top_k), the gates from the selected scores.
// Nothing in a selection round waits on a horizontal reduction, which made route_token_avx512
// latency-bound.
//
// Per lane, lse = m + fast_log(Σ e_i) (within 2 ulp of the scalar path's std::log), and the
// softmax entropy is H = log Σ e_i − Σ p_i·x_i with x_i = z_i − m ≤ 0: two non-negative terms, so
// float sums lose no digits to cancellation (the scalar path's lse − Σ p_i z_i cancels and is
// summed in double).
constexpr int64_t kLaneMaxExperts = 128;
using detail::kLaneMaxK;

template <int K>
void route_tokens_lanes(const TopKOptions& o, const float* z, int64_t lo, int64_t hi,
                        RoutingBuffers<float>& buf, const float* bias, const int32_t* forced,
                        double& ent, double& tk, int64_t* counts) {
  const int64_t E = o.n_experts;
  const bool softmax = o.score == ScoreFn::kSoftmax;
  const float scale = static_cast<float>(o.gate_scale);
  float* scores = buf.scores.data();
  float* lse = buf.lse.data();
  int32_t* expert = buf.expert.data();
  float* gate = buf.gate.data();
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  alignas(64) float zT[kLaneMaxExperts * 16];  // [E, 16] logits
  alignas(64) float pT[kLaneMaxExperts * 16];  // [E, 16] scores
  alignas(64) int32_t eT[K * 16];              // [K, 16] selected experts
  alignas(64) float sel_l[16];
  int32_t* row_of_slot = buf.row_of_slot.data();
  bool bias_nan = false;
  if (bias != nullptr && forced == nullptr)
    for (int64_t i = 0; i < E; ++i) bias_nan |= std::isnan(bias[i]);
  const __m512i one_i = _mm512_set1_epi32(1);
  const __m512i one_q = _mm512_set1_epi64(1);
  __m512i count[4];  // E ≤ 64: the counts of this range so far, 16 experts per register
  for (__m512i& c : count) c = _mm512_setzero_si512();
  for (int64_t t0 = lo; t0 < hi; t0 += 16) {
    const int64_t cnt = std::min<int64_t>(16, hi - t0);
    const auto lanes = static_cast<__mmask16>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1);
    if (cnt < 16) std::fill(zT, zT + E * 16, 0.f);  // idle lanes: finite, never stored
    detail::transpose_rows(z + t0 * E, 16, E, 0, cnt, zT);
    // max(x, m) keeps m on equality and on NaN, as std::max(m, x) does.
    __m512 mx = _mm512_load_ps(zT);
    for (int64_t i = 1; i < E; ++i) mx = _mm512_max_ps(_mm512_load_ps(zT + 16 * i), mx);
    __m512 sum = _mm512_setzero_ps(), ex = _mm512_setzero_ps();
    // x below −88 has e = 0: clamped so that e·x is 0 rather than 0·(−inf); NaN passes.
    const __m512 floor = _mm512_set1_ps(-88.f);
    for (int64_t i = 0; i < E; ++i) {
      const __m512 x = _mm512_sub_ps(_mm512_load_ps(zT + 16 * i), mx);  // ≤ 0, or NaN
      const __m512 e = detail::fast_exp_nonpositive(x);
      _mm512_store_ps(pT + 16 * i, e);
      sum = _mm512_add_ps(sum, e);
      if (softmax) ex = _mm512_fmadd_ps(e, _mm512_max_ps(floor, x), ex);
    }
    const __m512 log_sum = detail::fast_log(sum);
    _mm512_mask_storeu_ps(lse + t0, lanes, _mm512_add_ps(mx, log_sum));
    // Softmax: pT keeps the exponentials e_i; the scores are e_i · inv wherever they are used
    // (selection values, gates, the stored scores), the scalar path's product.
    const __m512 inv = softmax ? _mm512_div_ps(_mm512_set1_ps(1.f), sum) : _mm512_set1_ps(1.f);
    alignas(64) float inv_l[16];
    _mm512_store_ps(inv_l, inv);
    if (softmax) {
      const __m512 h = _mm512_maskz_sub_ps(lanes, log_sum, _mm512_mul_ps(ex, inv));
      ent += _mm512_reduce_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(h))) +
             _mm512_reduce_add_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(h, 1)));
    } else {
      const __m512 one = _mm512_set1_ps(1.f), sign = _mm512_set1_ps(-0.f);
      for (int64_t i = 0; i < E; ++i) {
        const __m512 e = detail::fast_exp(_mm512_xor_ps(_mm512_load_ps(zT + 16 * i), sign));
        _mm512_store_ps(pT + 16 * i, _mm512_div_ps(one, _mm512_add_ps(one, e)));
      }
    }
    detail::untranspose_block(pT, 16, E, cnt, 0, scores + t0 * E, softmax ? inv_l : nullptr);
    if (!softmax) {
      // Entropy of the normalised sigmoid scores: a logarithm per expert, as in the scalar path.
      for (int64_t l = 0; l < cnt; ++l) {
        const float* pt = scores + (t0 + l) * E;
        const float norm = row_sum(pt, E);
        double h = 0;
        for (int64_t i = 0; i < E; ++i) {
          const double q = static_cast<double>(pt[i] / norm);
          if (q > 0) h -= q * std::log(q);
        }
        ent += h;
      }
    }
    // Selection (or the forced experts) into eT; pk the selected scores.
    __m512 pk[K];
    if (cnt < 16) std::fill(eT, eT + K * 16, 0);
    if (forced) {
      for (int64_t l = 0; l < cnt; ++l)
        for (int k = 0; k < K; ++k) eT[k * 16 + l] = forced[(t0 + l) * K + k];
    } else {
      // Packed keys with one slot more than K (select_lanes.h): a lane whose K + 1 keys are
      // strictly decreasing in their high bits has its K experts exactly; the others (ties,
      // near-ties, NaN) are re-selected by select_token. The scores are never −0 (exponentials
      // and sigmoids are ≥ +0, and +0 + b is −0 for no b).
      detail::LaneTopKeys16<K + 1> sel(E);
      auto value = [&](int64_t i) {
        __m512 w = _mm512_load_ps(pT + 16 * i);
        if (softmax) w = _mm512_mul_ps(w, inv);
        if (bias) w = _mm512_add_ps(w, _mm512_set1_ps(bias[i]));
        return w;
      };
      for (int64_t i = 0; i < E; ++i) sel.insert(value(i), static_cast<int32_t>(i));
      for (int k = 0; k < K; ++k) _mm512_store_si512(eT + 16 * k, sel.index(k));
      // A lane's selection values hold a NaN only if its logits do (then its sum of exponentials
      // is NaN: the max passes a NaN through to z − m) or the bias does. A lane flagged without
      // need (a +∞ logit under sigmoid scores) is merely selected by the scalar fallback.
      auto redo = static_cast<__mmask16>(
          bias_nan ? lanes
                   : _mm512_mask_cmp_ps_mask(lanes, sum, sum, _CMP_UNORD_Q) |
                         (lanes & ~sel.exact(static_cast<int>(std::min<int64_t>(E, K + 1)))));
      for (; redo; redo = static_cast<__mmask16>(redo & (redo - 1))) {
        const int l = __builtin_ctz(redo);
        const float* pt = scores + (t0 + l) * E;
        int32_t et[kLaneMaxK] = {};
        select_token(E, K, pt, bias, et);
        for (int k = 0; k < K; ++k) eT[k * 16 + l] = et[k];
      }
    }
    // Gates: the selected scores gathered from pT, summed in slot order as the scalar path does.
    __m512 ssum = _mm512_setzero_ps();
    for (int k = 0; k < K; ++k) {
      const __m512i at =
          _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(eT + 16 * k), 4), lane);
      pk[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, at, pT, 4);
      if (softmax) pk[k] = _mm512_mul_ps(pk[k], inv);
      ssum = _mm512_add_ps(ssum, pk[k]);
    }
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512i gk[K], ek[K];
    for (int k = 0; k < K; ++k) {
      const __m512 g = o.gate == GateFn::kRenorm ? _mm512_div_ps(_mm512_mul_ps(vscale, pk[k]), ssum)
                       : o.gate == GateFn::kRaw  ? _mm512_mul_ps(vscale, pk[k])
                                                 : _mm512_set1_ps(scale / static_cast<float>(K));
      gk[k] = _mm512_castps_si512(g);
      ek[k] = _mm512_load_si512(eT + 16 * k);
    }
    detail::store_token_major<K>(ek, cnt, expert + t0 * K);
    detail::store_token_major<K>(gk, cnt, reinterpret_cast<int32_t*>(gate + t0 * K));
    if (E <= 64) {
      // Ranks with the counts in registers (count[j] lane i: expert 16·j + i): a token's K
      // experts are distinct, so its K ranks are one lookup and its K increments one masked add
      // per register. (rank_slots increments counters in memory slot by slot, and the CPU,
      // having seen such loads depend on the stores before them, then holds every load until
      // the stores before it are done.)
      alignas(64) uint64_t sets[16];  // token l's experts as bits
      for (int half = 0; half < 2; ++half) {
        __m512i set = _mm512_setzero_si512();
        for (int k = 0; k < K; ++k) {
          const __m256i e8 =
              half == 0 ? _mm512_castsi512_si256(ek[k]) : _mm512_extracti64x4_epi64(ek[k], 1);
          set = _mm512_or_si512(set, _mm512_sllv_epi64(one_q, _mm512_cvtepi32_epi64(e8)));
        }
        _mm512_store_si512(sets + 8 * half, set);
      }
      const auto slots = static_cast<__mmask16>((1u << K) - 1);
      for (int64_t l = 0; l < cnt; ++l) {
        const int64_t s = (t0 + l) * K;
        const __m512i ev = _mm512_maskz_loadu_epi32(slots, expert + s);
        __m512i rank = _mm512_permutex2var_epi32(count[0], ev, count[1]);
        if (E > 32)
          rank = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(ev, _mm512_set1_epi32(32)), rank,
                                         _mm512_permutex2var_epi32(count[2], ev, count[3]));
        _mm512_mask_storeu_epi32(row_of_slot + s, slots, rank);
        for (int j = 0; j < 4; ++j) {
          if (16 * j >= E) break;
          count[j] = _mm512_mask_add_epi32(count[j], static_cast<__mmask16>(sets[l] >> (16 * j)),
                                           count[j], one_i);
        }
      }
    } else {
      rank_slots(expert, t0 * K, (t0 + cnt) * K, counts, row_of_slot);
    }
    _mm512_store_ps(sel_l, ssum);
    for (int64_t l = 0; l < cnt; ++l) tk += static_cast<double>(sel_l[l]);
  }
  if (E <= 64) {
    alignas(64) int32_t c64[64];
    for (int j = 0; j < 4; ++j) _mm512_store_si512(c64 + 16 * j, count[j]);
    for (int64_t i = 0; i < E; ++i) counts[i] += c64[i];
  }
}

// Steps 1–2 for float tokens [lo, hi) (lo a multiple of 16) with the lane kernel when E ≤ 128
// and K ≤ 8, else the per-token AVX-512 kernel; false, having done nothing, when E > 128.
inline bool route_tokens_fast(const TopKOptions& o, const float* z, int64_t lo, int64_t hi,
                              RoutingBuffers<float>& buf, const float* bias, const int32_t* forced,
                              double& ent, double& tk, int64_t* counts) {
  if (o.n_experts <= kLaneMaxExperts && detail::with_lane_k(o.top_k, [&](auto kk) {
        route_tokens_lanes<decltype(kk)::value>(o, z, lo, hi, buf, bias, forced, ent, tk, counts);
      }))
    return true;
  switch ((o.n_experts + 15) / 16) {
    case 1:
      route_tokens_avx512<1>(o, z, lo, hi, buf, bias, forced, ent, tk, counts);
      return true;
    case 2:
      route_tokens_avx512<2>(o, z, lo, hi, buf, bias, forced, ent, tk, counts);
      return true;
    case 3:
      route_tokens_avx512<3>(o, z, lo, hi, buf, bias, forced, ent, tk, counts);
      return true;
    case 4:
      route_tokens_avx512<4>(o, z, lo, hi, buf, bias, forced, ent, tk, counts);
      return true;
    case 5:
    case 6:
    case 7:
    case 8:
      route_tokens_avx512<8>(o, z, lo, hi, buf, bias, forced, ent, tk, counts);
      return true;
    default:
      return false;
  }
}

}  // namespace
// NOLINTEND(google-build-namespaces, misc-definitions-in-headers)
}  // namespace sy
