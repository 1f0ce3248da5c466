// S-BASE: log-domain Sinkhorn balancing, top-K on the balanced matrix, gates from raw scores.
// The math and conventions are in sinkhorn.h and ALGORITHMS.md §6.
#include "routing/sinkhorn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "core/vec_math.h"
#include "routing/plan.h"
#include "routing/select.h"
#include "routing/select_lanes.h"
#include "routing/softmax.h"
#include "routing/transposed.h"

namespace sy {

namespace {
constexpr int64_t kSinkhornBlock = 256;  // tokens per partial column sum
#if defined(__AVX512F__)
constexpr bool kHasAvx512 = true;
#else
constexpr bool kHasAvx512 = false;
#endif
}  // namespace

void sinkhorn_validate(const SinkhornOptions& o) {
  SY_CHECK(o.n_experts >= 1, "sinkhorn: n_experts must be ≥ 1, got {}", o.n_experts);
  SY_CHECK(o.top_k >= 1 && o.top_k <= o.n_experts,
           "sinkhorn: top_k must be in [1, n_experts = {}], got {}", o.n_experts, o.top_k);
  SY_CHECK(o.iterations >= 0, "sinkhorn: iterations must be ≥ 0, got {}", o.iterations);
  SY_CHECK(!(o.top_k == 1 && o.gate == GateFn::kRenorm),
           "sinkhorn: gate must be \"raw\" when top_k = 1, got \"renorm\" (the gate would be the "
           "constant 1 and the router would get no gradient)");
}

// The column step of the scaling iterations from the per-block column sums part[blocks, E]
// (added in block order: the same sum for any thread count): β_i = col_mass / Σ_t p[t,i]·α_t, or
// after the last row step only the largest relative column residual (col_err). Returns false
// when a sum or a β leaves the positive finite range.
inline bool column_step(const double* part, int64_t blocks, int64_t E, double col_mass, bool last,
                        double* beta, double& col_err) {
  bool finite = true;
  for (int64_t i = 0; i < E; ++i) {
    double c = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) c += part[blk * E + i];
    finite &= std::isfinite(c) && c > 0;
    if (last) {
      col_err = std::max(col_err, std::abs(c * beta[i] / col_mass - 1));
    } else {
      beta[i] = col_mass / c;
      finite &= std::isfinite(beta[i]) && beta[i] > 0;
    }
  }
  return finite;
}

template <typename T>
void SinkhornBuffers<T>::resize(const SinkhornOptions& o, int64_t n_max_tokens) {
  sinkhorn_validate(o);
  SY_CHECK(n_max_tokens >= 0 && n_max_tokens * o.top_k < (int64_t(1) << 31),
           "sinkhorn: n_max·top_k must be in [0, 2^31), got {}", n_max_tokens * o.top_k);
  n_max = n_max_tokens;
  e = o.n_experts;
  k = o.top_k;
  n = 0;
  scores.assign(n_max * e, T(0));
  dscores.assign(n_max * e, T(0));
  row_pot.assign(n_max, 0.0);
  col_pot.assign(e, 0.0);
  expert.assign(n_max * k, 0);
  gate.assign(n_max * k, T(0));
  offsets.assign(e + 1, 0);
  slot_of_row.assign(n_max * k, 0);
  load.assign(e, 0);
  col_part.assign(((n_max + kSinkhornBlock - 1) / kSinkhornBlock) * e, 0.0);
  // Only the float path on AVX-512 reads the blocked copy.
  const bool blocked = std::is_same_v<T, float> && kHasAvx512;
  scores_blocked.assign(blocked ? ((n_max + 15) / 16) * 16 * e : 0, T(0));
}

namespace {

// Streaming log-sum-exp: one exp per element.
struct Lse {
  double m = -std::numeric_limits<double>::infinity(), s = 0;
  void add(double x) {
    if (x > m) {
      s = s * std::exp(m - x) + 1;
      m = x;
    } else {
      s += std::exp(x - m);
    }
  }
  double value() const { return m + std::log(s); }
};

// a_t ← −lse_i (z[t,i] + b_i) for every token.
template <typename T>
void row_step(const T* z, int64_t n, int64_t E, const double* b, double* a) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    Lse l;
    for (int64_t i = 0; i < E; ++i) l.add(static_cast<double>(z[t * E + i]) + b[i]);
    a[t] = -l.value();
  }
}

// The log-domain iterations (the definition): b ← potentials after `iterations` row and column
// steps, a ← the final row step; returns the column residual. One exp per element, in double:
// the fallback of scaling_iterations.
template <typename T>
double log_domain_iterations(const T* z, int64_t n, int64_t E, int iterations, double* a,
                             double* b) {
  std::fill(b, b + E, 0.0);
  const double log_col_mass = std::log(static_cast<double>(n) / static_cast<double>(E));
  for (int it = 0; it < iterations; ++it) {
    row_step(z, n, E, b, a);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < E; ++i) {
      Lse l;
      for (int64_t t = 0; t < n; ++t) l.add(static_cast<double>(z[t * E + i]) + a[t]);
      b[i] = log_col_mass - l.value();
    }
  }
  row_step(z, n, E, b, a);
  double col_err = 0;
#pragma omp parallel for schedule(static) reduction(max : col_err)
  for (int64_t i = 0; i < E; ++i) {
    double s = 0;
    for (int64_t t = 0; t < n; ++t) s += std::exp(static_cast<double>(z[t * E + i]) + a[t] + b[i]);
    col_err = std::max(col_err, std::abs(s * static_cast<double>(E) / static_cast<double>(n) - 1));
  }
  return col_err;
}

// Σ_i x[i]·y[i] in double, in eight interleaved partial sums (vectorisable, and a fixed order).
template <typename T>
inline double dot8(const T* x, const double* y, int64_t e) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= e; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]) * y[i + j];
  for (int j = 0; i < e; ++i, ++j) acc[j] += static_cast<double>(x[i]) * y[i];
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// The iterations in scaling form (see sinkhorn.h) on p = softmax(z). In: a[t] = lse_t. Out: the
// potentials a, b and the column residual, or NaN (a, b then undefined) when a sum left the
// double range. One sweep over p per row step, the column sums of the same sweep taken per
// block of kSinkhornBlock tokens and added in block order: independent of the thread count.
template <typename T>
double scaling_iterations(const T* p, int64_t n, int64_t E, int iterations, double* part, double* a,
                          double* b) {
  const int64_t blocks = (n + kSinkhornBlock - 1) / kSinkhornBlock;
  double* beta = b;  // β_i = e^{b_i} until the end
  std::fill(beta, beta + E, 1.0);
  const double col_mass = static_cast<double>(n) / static_cast<double>(E);
  double col_err = 0;
  for (int it = 0; it <= iterations; ++it) {
    const bool last = it == iterations;
    // Row step α_t = 1 / Σ_i p[t,i]·β_i, and the column sums Σ_t p[t,i]·α_t.
    bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      double* col = part + blk * E;
      std::fill(col, col + E, 0.0);
      const int64_t t1 = std::min(n, (blk + 1) * kSinkhornBlock);
      for (int64_t t = blk * kSinkhornBlock; t < t1; ++t) {
        const T* pt = p + t * E;
        const double alpha = 1.0 / dot8(pt, beta, E);
        finite = finite && alpha > 0 && alpha <= std::numeric_limits<double>::max();
        for (int64_t i = 0; i < E; ++i) col[i] += static_cast<double>(pt[i]) * alpha;
        if (last) a[t] = std::log(alpha) - a[t];
      }
    }
    // Column step β_i = (N/E) / Σ_t p[t,i]·α_t; after the last row step only the residual.
    finite &= column_step(part, blocks, E, col_mass, last, beta, col_err);
    if (!finite) return std::numeric_limits<double>::quiet_NaN();
  }
  for (int64_t i = 0; i < E; ++i) b[i] = std::log(beta[i]);
  return col_err;
}

// Gates of token t from its selected experts et[0..K) and raw scores pt; returns Σ selected p.
template <typename T>
inline T gates_of(GateFn g, const T* pt, const int32_t* et, int64_t K, T* gt) {
  T sel = 0;
  for (int64_t k = 0; k < K; ++k) sel += pt[et[k]];
  for (int64_t k = 0; k < K; ++k) gt[k] = g == GateFn::kRenorm ? pt[et[k]] / sel : pt[et[k]];
  return sel;
}

#if defined(__AVX512F__)
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
#endif

template <typename T>
double scaling_iterations_blocked(const T* /*pb*/, int64_t /*n*/, int64_t /*E*/, int /*iterations*/,
                                  double* /*part*/, double* /*a*/, double* /*b*/) {
  return 0;  // never called: softmax_fast returned false
}

template <typename T>
inline bool softmax_fast(const T* /*z*/, int64_t /*n*/, int64_t /*E*/, T* /*p*/, T* /*p_blocked*/,
                         double* /*a*/) {
  return false;
}

template <typename T>
inline bool select_fast(GateFn /*g*/, const T* /*z*/, const T* /*p*/, int64_t /*n*/, int64_t /*E*/,
                        int64_t /*K*/, const double* /*b*/, int32_t* /*expert*/, T* /*gate*/,
                        double& /*topk_sum*/) {
  return false;
}

}  // namespace

template <typename T>
SinkhornStats sinkhorn_route_forward(const SinkhornOptions& o, const T* z, int64_t n,
                                     SinkhornBuffers<T>& buf) {
  SY_CHECK(o.n_experts == buf.e && o.top_k == buf.k,
           "sinkhorn_route_forward: options (E = {}, K = {}) must match the buffers' (E = {}, K "
           "= {})",
           o.n_experts, o.top_k, buf.e, buf.k);
  SY_CHECK(n >= 0 && n <= buf.n_max,
           "sinkhorn_route_forward: n must be in [0, {}] (the size buffers were made for), got {}",
           buf.n_max, n);
  const int64_t E = o.n_experts, K = o.top_k;
  buf.n = n;
  SinkhornStats st;
  if (n == 0) {
    std::fill(buf.offsets.begin(), buf.offsets.end(), 0);
    std::fill(buf.load.begin(), buf.load.end(), 0);
    return st;
  }
  double* a = buf.row_pot.data();
  double* b = buf.col_pot.data();
  T* p = buf.scores.data();
  // Raw scores p = softmax(z); a holds lse_t until the potentials are known.
  const bool blocked = softmax_fast(z, n, E, p, buf.scores_blocked.data(), a);
  if (!blocked) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      const auto r = detail::softmax_row(z + t * E, E, p + t * E);
      a[t] = static_cast<double>(r.max) + std::log(static_cast<double>(r.sum));
    }
  }
  st.max_col_error = blocked ? scaling_iterations_blocked(buf.scores_blocked.data(), n, E,
                                                          o.iterations, buf.col_part.data(), a, b)
                             : scaling_iterations(p, n, E, o.iterations, buf.col_part.data(), a, b);
  if (!std::isfinite(st.max_col_error))
    st.max_col_error = log_domain_iterations(z, n, E, o.iterations, a, b);

  // Selection on z + b (a_t does not change a row's order), gates from the raw scores.
  int32_t* expert = buf.expert.data();
  T* gate = buf.gate.data();
  double topk_sum = 0;
  if (!select_fast(o.gate, z, p, n, E, K, b, expert, gate, topk_sum)) {
#pragma omp parallel for schedule(static) reduction(+ : topk_sum)
    for (int64_t t = 0; t < n; ++t) {
      const T* zt = z + t * E;
      int32_t* et = expert + t * K;
      detail::select_top_k<double>(
          E, K, [&](int64_t i) { return static_cast<double>(zt[i]) + b[i]; }, et);
      topk_sum += static_cast<double>(gates_of(o.gate, p + t * E, et, K, gate + t * K));
    }
  }
  st.topk_score_sum = topk_sum;

  detail::plan_by_expert(expert, n * K, E, buf.load.data(), buf.offsets.data(),
                         buf.slot_of_row.data());
  return st;
}

template <typename T>
void sinkhorn_route_backward(const SinkhornOptions& o, const T* dgate, SinkhornBuffers<T>& buf,
                             T* dz) {
  const int64_t E = o.n_experts, K = o.top_k, n = buf.n;
  SY_DCHECK(E == buf.e && K == buf.k);
  const T* p = buf.scores.data();
  const int32_t* expert = buf.expert.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* pt = p + t * E;
    const int32_t* et = expert + t * K;
    const T* dgt = dgate + t * K;
    T* ds = buf.dscores.data() + t * E;
    std::fill(ds, ds + E, T(0));
    if (o.gate == GateFn::kRaw) {
      for (int64_t k = 0; k < K; ++k) ds[et[k]] += dgt[k];
    } else {
      T s = 0, dot = 0;
      for (int64_t k = 0; k < K; ++k) s += pt[et[k]];
      for (int64_t k = 0; k < K; ++k) dot += dgt[k] * pt[et[k]];
      dot /= s;
      for (int64_t k = 0; k < K; ++k) ds[et[k]] += (dgt[k] - dot) / s;
    }
    T dot = 0;
    for (int64_t i = 0; i < E; ++i) dot += ds[i] * pt[i];
    for (int64_t i = 0; i < E; ++i) dz[t * E + i] = pt[i] * (ds[i] - dot);
  }
}

// NOLINTBEGIN(bugprone-macro-parentheses): T is a type, it cannot be parenthesized.
#define SY_INSTANTIATE(T)                                                                         \
  template struct SinkhornBuffers<T>;                                                             \
  template SinkhornStats sinkhorn_route_forward<T>(const SinkhornOptions&, const T*, int64_t,     \
                                                   SinkhornBuffers<T>&);                          \
  template void sinkhorn_route_backward<T>(const SinkhornOptions&, const T*, SinkhornBuffers<T>&, \
                                           T*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
