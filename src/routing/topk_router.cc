// Token-choice top-K routing: scores, selection, gates, capacity, dispatch plan, LBL, z-loss.
// The math is ALGORITHMS.md §1–2; the conventions (tie-breaks, drop order) docs/model.md.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/vec_math.h"
#include "routing/select.h"
#include "routing/select_lanes.h"
#include "routing/transposed.h"
#include "switchyard/routing.h"

namespace sy {

ScoreFn parse_score_fn(const std::string& s) {
  if (s == "softmax") return ScoreFn::kSoftmax;
  if (s == "sigmoid") return ScoreFn::kSigmoid;
  fail(fmt::format("score function must be one of \"softmax\", \"sigmoid\", got \"{}\"", s));
}
GateFn parse_gate_fn(const std::string& s) {
  if (s == "renorm") return GateFn::kRenorm;
  if (s == "raw") return GateFn::kRaw;
  if (s == "uniform") return GateFn::kUniform;
  fail(fmt::format("gate function must be one of \"renorm\", \"raw\", \"uniform\", got \"{}\"", s));
}
DropPolicy parse_drop_policy(const std::string& s) {
  if (s == "probs") return DropPolicy::kProbs;
  if (s == "position") return DropPolicy::kPosition;
  fail(fmt::format("drop policy must be one of \"probs\", \"position\", got \"{}\"", s));
}

int64_t expert_capacity(const TopKOptions& o, int64_t n_tokens) {
  if (o.capacity_factor <= 0) return n_tokens * o.top_k;
  return static_cast<int64_t>(
      std::ceil(o.capacity_factor * static_cast<double>(n_tokens * o.top_k) / o.n_experts));
}

template <typename T>
void RoutingBuffers<T>::resize(int64_t n_max, int64_t n_experts, int64_t top_k) {
  SY_CHECK(n_max * top_k <= std::numeric_limits<int32_t>::max(),
           "routing: tokens × top_k = {} × {} exceeds the int32 slot and row indices; route fewer "
           "tokens per call (a smaller micro-batch)",
           n_max, top_k);
  e = n_experts;
  k = top_k;
  n = 0;
  scores.assign(n_max * e, T(0));
  dscores.assign(n_max * e, T(0));
  lse.assign(n_max, T(0));
  expert.assign(n_max * k, 0);
  gate.assign(n_max * k, T(0));
  kept.assign(n_max * k, 0);
  row_of_slot.assign(n_max * k, -1);
  slot_of_row.assign(n_max * k, 0);
  offsets.assign(e + 1, 0);
  load.assign(e, 0);
  demand.assign(e, 0);
  lbl_grad.assign(n_max * e, T(0));
  thread_counts.assign(2 * static_cast<size_t>(std::max(1, omp_get_max_threads())) * e, 0);
  lbl_group = 0;
}

namespace {

constexpr int64_t kMaxLblExperts = 1024;    // stack scratch per token in the backward pass
constexpr int64_t kMaxLocalExperts = 1024;  // stack cursors per thread in the plan

// Per-token normalised score q = scores / Σ scores (softmax scores are already normalised).
template <typename T>
inline T row_sum(const T* p, int64_t e) {
  T s = 0;
  for (int64_t i = 0; i < e; ++i) s += p[i];
  return s;
}

// A token's K experts by score p (+ bias): the reference selection (ties to the lower index).
template <typename T>
inline void select_token(int64_t E, int64_t K, const T* pt, const T* bias, int32_t* et) {
  if (bias) {
    detail::select_top_k<T>(
        E, K, [&](int64_t i) { return pt[i] + bias[i]; }, et);
  } else {
    detail::select_top_k<T>(
        E, K, [&](int64_t i) { return pt[i]; }, et);
  }
}

// A token's K gates from its scores and experts; returns the sum of the selected scores (in slot
// order, the order every path sums in).
template <typename T>
inline T token_gates(const TopKOptions& o, const T* pt, const int32_t* et, T* gt) {
  const int64_t K = o.top_k;
  const T scale = static_cast<T>(o.gate_scale);
  T sel_sum = 0;
  for (int64_t k = 0; k < K; ++k) sel_sum += pt[et[k]];
  for (int64_t k = 0; k < K; ++k) {
    const T p = pt[et[k]];
    gt[k] = o.gate == GateFn::kRenorm ? scale * p / sel_sum
            : o.gate == GateFn::kRaw  ? scale * p
                                      : scale / static_cast<T>(K);
  }
  return sel_sum;
}

// Step 3's first half for slots [s0, s1) (in slot order): counts per expert in c, and each slot's
// rank among the slots of its expert counted so far in rank (row_of_slot, made a row later).
// Called by the token loops right after a token or block is selected, so that this integer work
// overlaps the vector work of the next one.
inline void rank_slots(const int32_t* expert, int64_t s0, int64_t s1, int64_t* c, int32_t* rank) {
  for (int64_t s = s0; s < s1; ++s) rank[s] = static_cast<int32_t>(c[expert[s]]++);
}

// Steps 1–2 for tokens [lo, hi), one token at a time: the reference path (double, CPUs without
// AVX-512, E > 128). Adds the tokens' entropies and selected-score sums to ent, tk.
template <typename T>
void route_tokens_scalar(const TopKOptions& o, const T* z, int64_t lo, int64_t hi,
                         RoutingBuffers<T>& buf, const T* bias, const int32_t* forced, double& ent,
                         double& tk, int64_t* counts) {
  const int64_t E = o.n_experts, K = o.top_k;
  T* scores = buf.scores.data();
  T* lse = buf.lse.data();
  int32_t* expert = buf.expert.data();
  T* gate = buf.gate.data();
  const bool softmax = o.score == ScoreFn::kSoftmax;
  for (int64_t t = lo; t < hi; ++t) {
    const T* zt = z + t * E;
    T* pt = scores + t * E;
    T m = zt[0];
    for (int64_t i = 1; i < E; ++i) m = std::max(m, zt[i]);
    // One vectorised exp per score (detail::fast_exp; double keeps std::exp for the tests).
    T sum = 0;
    for (int64_t i = 0; i < E; ++i) {
      const T e = detail::fast_exp(zt[i] - m);
      pt[i] = e;
      sum += e;
    }
    lse[t] = m + std::log(sum);
    if (softmax) {
      const T inv = T(1) / sum;
      for (int64_t i = 0; i < E; ++i) pt[i] *= inv;
    } else {
      for (int64_t i = 0; i < E; ++i) pt[i] = T(1) / (T(1) + detail::fast_exp(-zt[i]));
    }
    // Entropy of the per-token distribution (sigmoid scores normalised first). For softmax,
    // log p_i = z_i − lse, so H = lse − Σ p_i z_i needs no logarithm per expert.
    double h = 0;
    if (softmax) {
      double pz = 0;
      for (int64_t i = 0; i < E; ++i) pz += static_cast<double>(pt[i]) * zt[i];
      h = static_cast<double>(lse[t]) - pz;
    } else {
      const T norm = row_sum(pt, E);
      for (int64_t i = 0; i < E; ++i) {
        const double q = static_cast<double>(pt[i] / norm);
        if (q > 0) h -= q * std::log(q);
      }
    }
    ent += h;
    int32_t* et = expert + t * K;
    if (forced) {
      std::copy(forced + t * K, forced + (t + 1) * K, et);
    } else {
      select_token(E, K, pt, bias, et);
    }
    tk += static_cast<double>(token_gates(o, pt, et, gate + t * K));
    rank_slots(expert, t * K, (t + 1) * K, counts, buf.row_of_slot.data());
  }
}

#if defined(__AVX512F__)
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
#endif

template <typename T>
inline bool route_tokens_fast(const TopKOptions& /*o*/, const T* /*z*/, int64_t /*lo*/,
                              int64_t /*hi*/, RoutingBuffers<T>& /*buf*/, const T* /*bias*/,
                              const int32_t* /*forced*/, double& /*ent*/, double& /*tk*/,
                              int64_t* /*counts*/) {
  return false;
}

}  // namespace

template <typename T>
RoutingStats topk_route_forward(const TopKOptions& o, const T* z, int64_t n, RoutingBuffers<T>& buf,
                                const T* bias, const int32_t* forced) {
  const int64_t E = o.n_experts, K = o.top_k;
  SY_DCHECK(buf.e == E && buf.k == K && n * E <= static_cast<int64_t>(buf.scores.size()));
  buf.n = n;
  const T* scores = buf.scores.data();
  const T* lse = buf.lse.data();
  const int32_t* expert = buf.expert.data();
  int64_t* demand = buf.demand.data();
  int64_t* load = buf.load.data();
  int64_t* offsets = buf.offsets.data();
  int32_t* slot_of_row = buf.slot_of_row.data();
  uint8_t* kept = buf.kept.data();
  int32_t* row_of_slot = buf.row_of_slot.data();
  int64_t* tc = buf.thread_counts.data();  // [2, threads, E]: counts, cursors past 1024 experts
  const int64_t cap = expert_capacity(o, n);

  // One parallel region for steps 1–3. Each thread takes a contiguous range of 16-token blocks
  // (in thread order): 1–2, scores, selection and gates, and counts its slots per expert. After
  // one barrier every thread knows, from all threads' counts, where its rows of each expert
  // start (3, a counting sort of the slots by expert): ranges are in token order, so the plan is
  // the same for any thread count. Below 16 blocks per thread a second thread costs more than
  // it saves.
  const int64_t blocks = (n + 15) / 16;
  const int64_t max_threads = static_cast<int64_t>(buf.thread_counts.size()) / (2 * E);
  const int threads = static_cast<int>(std::min<int64_t>(
      std::min<int64_t>(omp_get_max_threads(), max_threads), std::max<int64_t>(1, blocks / 16)));
  double entropy_sum = 0, topk_sum = 0;
#pragma omp parallel num_threads(threads) reduction(+ : entropy_sum, topk_sum)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t lo = std::min(n, 16 * (blocks * t / nt));
    const int64_t hi = std::min(n, 16 * (blocks * (t + 1) / nt));
    // Counts (into tc's row t for the others to read) and cursors in a copy on this thread's
    // stack (the second half of tc past 1024 experts): the rows of neighbouring threads share a
    // cache line, and ping-ponging it between the cores on every slot costs more than the rest
    // of the plan.
    int64_t local[kMaxLocalExperts];
    int64_t* c = E <= kMaxLocalExperts ? local : tc + (max_threads + t) * E;
    std::fill(c, c + E, int64_t(0));
    // Steps 1–2, and each slot's rank within its expert (rank_slots). Float with AVX-512 takes
    // the vectorised kernels; double (the gradient tests) and other CPUs the scalar one.
    if (!route_tokens_fast(o, z, lo, hi, buf, bias, forced, entropy_sum, topk_sum, c))
      route_tokens_scalar(o, z, lo, hi, buf, bias, forced, entropy_sum, topk_sum, c);
    const int64_t s0 = lo * K, s1 = hi * K;  // this thread's slots, in locals: no reload per slot
    std::copy(c, c + E, tc + t * E);
#pragma omp barrier
    // From here tc is only read. Expert i's rows start at Σ_{i' < i} demand[i'], and thread t's
    // rows of expert i after those of threads 0..t−1.
    bool over = false;
    int64_t base = 0;
    for (int64_t i = 0; i < E; ++i) {
      int64_t d = 0;
      for (int u = 0; u < nt; ++u) {
        if (u == t) c[i] = base + d;  // c: counts → this thread's first row of expert i
        d += tc[u * E + i];
      }
      if (t == 0) {
        demand[i] = d;
        offsets[i] = base;
      }
      over |= d > cap;
      base += d;
    }
    if (t == 0) offsets[E] = base;
    if (over) {
      for (int64_t s = s0; s < s1; ++s)
        slot_of_row[c[expert[s]] + row_of_slot[s]] = static_cast<int32_t>(s);
    } else {
      // Without drops the rows are final as they are scattered, and each thread writes
      // row_of_slot and kept for its own contiguous slots.
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t r = c[expert[s]] + row_of_slot[s];
        slot_of_row[r] = static_cast<int32_t>(s);
        row_of_slot[s] = static_cast<int32_t>(r);
      }
      std::memset(kept + s0, 1, static_cast<size_t>(s1 - s0));
    }
  }
  bool over = false;
  for (int64_t i = 0; i < E; ++i) over |= demand[i] > cap;
  if (!over) {
    for (int64_t i = 0; i < E; ++i) load[i] = demand[i];
    buf.rows = n * K;
    buf.dropped = 0;
  } else {
    // Capacity: pick the survivors inside each over-full expert segment, then compact the
    // segments so that rows stay contiguous per expert and in token order within an expert.
    int64_t write = 0;
    std::memset(kept, 0, static_cast<size_t>(n * K));
    for (int64_t i = 0; i < E; ++i) {
      int32_t* seg = slot_of_row + offsets[i];
      int64_t cnt = demand[i];
      if (cnt > cap) {
        if (o.drop == DropPolicy::kProbs) {
          auto better = [&](int32_t a, int32_t b) {
            const T pa = scores[(a / K) * E + i], pb = scores[(b / K) * E + i];
            return pa > pb || (pa == pb && a < b);
          };
          std::nth_element(seg, seg + cap, seg + cnt, better);
          std::sort(seg, seg + cap);  // back to token order
        }
        cnt = cap;  // "position": the first cap in token order
      }
      load[i] = cnt;
      std::copy(seg, seg + cnt, slot_of_row + write);  // write ≤ offsets[i]: moves left, safe
      offsets[i] = write;
      write += cnt;
    }
    offsets[E] = write;
    buf.rows = write;
    buf.dropped = n * K - write;
    std::fill(row_of_slot, row_of_slot + n * K, -1);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < write; ++r) {
      row_of_slot[slot_of_row[r]] = static_cast<int32_t>(r);
      kept[slot_of_row[r]] = 1;
    }
  }

  buf.lbl_group = 0;  // no LBL gradient until lbl_begin/lbl_add_term say otherwise
  RoutingStats st;
  st.entropy_sum = entropy_sum;
  st.topk_score_sum = topk_sum;
  if (o.z_loss_coef > 0 && n > 0) {
    double acc = 0;
    for (int64_t t = 0; t < n; ++t) acc += static_cast<double>(lse[t]) * lse[t];
    st.z_loss = o.z_loss_coef * acc / n;
  }
  return st;
}

template <typename T>
void lbl_begin(RoutingBuffers<T>& buf, int64_t group) {
  SY_CHECK(group >= 1 && buf.n % group == 0,
           "lbl_begin: group must divide the number of tokens {}, got {}", buf.n, group);
  std::fill(buf.lbl_grad.begin(), buf.lbl_grad.begin() + (buf.n / group) * buf.e, T(0));
  buf.lbl_group = group;
}

template <typename T>
void micro_fractions(const RoutingBuffers<T>& buf, double* f) {
  const double denom = static_cast<double>(buf.k * buf.n);
  for (int64_t i = 0; i < buf.e; ++i)
    f[i] = denom > 0 ? static_cast<double>(buf.load[i]) / denom : 0.0;
}

template <typename T>
double lbl_add_term(RoutingBuffers<T>& buf, ScoreFn score, double coef, const double* f,
                    int64_t f_rows) {
  const int64_t E = buf.e, n = buf.n, group = buf.lbl_group;
  SY_CHECK(group > 0, "lbl_add_term: call lbl_begin first");
  const int64_t rows = n / group;
  SY_CHECK(f_rows == 1 || f_rows == rows,
           "lbl_add_term: f must have 1 row or one per group of {} tokens ({}), got {}", group,
           rows, f_rows);
  if (n == 0 || coef == 0) return 0.0;
  const bool softmax = score == ScoreFn::kSoftmax;
  // The value: per group g, α·E·Σ_i f_gi·P_gi with P_gi the mean q over the group's tokens;
  // averaged over groups when f is per group, else over the whole call (P is linear in tokens,
  // so that is the same as using the whole call's P).
  const int64_t span = f_rows == 1 ? n : group;
  double value = 0;
  for (int64_t g0 = 0; g0 < n; g0 += span) {
    const double* fg = f + (f_rows == 1 ? 0 : (g0 / group) * E);
    double acc = 0;
    for (int64_t t = g0; t < g0 + span; ++t) {
      const T* qt = buf.scores.data() + t * E;
      const double inv = softmax ? 1.0 : 1.0 / static_cast<double>(row_sum(qt, E));
      for (int64_t i = 0; i < E; ++i) acc += fg[i] * static_cast<double>(qt[i]) * inv;
    }
    value += coef * E * acc / span;
  }
  value /= static_cast<double>(n) / static_cast<double>(span);  // groups (span divides n)
  // The gradient: α·E·f_i / n for every token (f of the token's group).
  for (int64_t r = 0; r < rows; ++r) {
    const double* fr = f + (f_rows == 1 ? 0 : r * E);
    T* g = buf.lbl_grad.data() + r * E;
    for (int64_t i = 0; i < E; ++i) g[i] += static_cast<T>(coef * E * fr[i] / n);
  }
  return value;
}

template <typename T>
void topk_route_backward(const TopKOptions& o, const T* z, const T* dgate, T aux_scale,
                         RoutingBuffers<T>& buf, T* dz) {
  const int64_t E = o.n_experts, K = o.top_k, n = buf.n;
  const T* scores = buf.scores.data();
  const T* lse = buf.lse.data();
  const int32_t* expert = buf.expert.data();
  const bool softmax = o.score == ScoreFn::kSoftmax;
  const T scale = static_cast<T>(o.gate_scale);
  // ∂LBL/∂q[t,i] = aux_scale·α·E·f_i/N, the same for every token: precompute per expert.
  const T zc =
      o.z_loss_coef > 0 && n > 0 ? static_cast<T>(aux_scale * o.z_loss_coef * 2.0 / n) : T(0);

#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* pt = scores + t * E;
    const int32_t* et = expert + t * K;
    const T* dgt = dgate + t * K;
    T* ds = buf.dscores.data() + t * E;
    for (int64_t i = 0; i < E; ++i) ds[i] = 0;
    // Gates → scores.
    if (o.gate == GateFn::kRaw) {
      for (int64_t k = 0; k < K; ++k) ds[et[k]] += scale * dgt[k];
    } else if (o.gate == GateFn::kRenorm) {
      T s = 0, dot = 0;
      for (int64_t k = 0; k < K; ++k) s += pt[et[k]];
      for (int64_t k = 0; k < K; ++k) dot += dgt[k] * pt[et[k]];
      dot /= s;
      for (int64_t k = 0; k < K; ++k) ds[et[k]] += scale / s * (dgt[k] - dot);
    }
    // LBL → scores (through the per-token normalisation for sigmoid scores).
    if (buf.lbl_group > 0) {
      T dlbl[kMaxLblExperts];
      const T* g = buf.lbl_grad.data() + (t / buf.lbl_group) * E;
      for (int64_t i = 0; i < E; ++i) dlbl[i] = aux_scale * g[i];
      if (softmax) {
        for (int64_t i = 0; i < E; ++i) ds[i] += dlbl[i];
      } else {
        const T sum = row_sum(pt, E);
        T dot = 0;
        for (int64_t i = 0; i < E; ++i) dot += dlbl[i] * pt[i];
        dot /= sum;
        for (int64_t i = 0; i < E; ++i) ds[i] += (dlbl[i] - dot) / sum;
      }
    }
    // Scores → logits.
    T* dzt = dz + t * E;
    if (softmax) {
      T dot = 0;
      for (int64_t i = 0; i < E; ++i) dot += ds[i] * pt[i];
      for (int64_t i = 0; i < E; ++i) dzt[i] = pt[i] * (ds[i] - dot);
    } else {
      for (int64_t i = 0; i < E; ++i) dzt[i] = ds[i] * pt[i] * (T(1) - pt[i]);
    }
    // z-loss: ∂/∂z[t,j] = (2/N)·lse_t·softmax(z_t)_j.
    if (zc != T(0)) {
      const T* zt = z + t * E;
      for (int64_t i = 0; i < E; ++i) dzt[i] += zc * lse[t] * detail::fast_exp(zt[i] - lse[t]);
    }
  }
}

// NOLINTBEGIN(bugprone-macro-parentheses): T is a type, it cannot be parenthesized.
#define SY_INSTANTIATE(T)                                                                       \
  template struct RoutingBuffers<T>;                                                            \
  template RoutingStats topk_route_forward<T>(const TopKOptions&, const T*, int64_t,            \
                                              RoutingBuffers<T>&, const T*, const int32_t*);    \
  template void lbl_begin<T>(RoutingBuffers<T>&, int64_t);                                      \
  template double lbl_add_term<T>(RoutingBuffers<T>&, ScoreFn, double, const double*, int64_t); \
  template void micro_fractions<T>(const RoutingBuffers<T>&, double*);                          \
  template void topk_route_backward<T>(const TopKOptions&, const T*, const T*, T,               \
                                       RoutingBuffers<T>&, T*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
