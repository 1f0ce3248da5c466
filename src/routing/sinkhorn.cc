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

}  // namespace

}  // namespace sy

// Float on AVX-512 with E ≤ 128: softmax_fast, scaling_iterations_blocked and select_fast (K ≤ 8),
// the lane kernels. Elsewhere (and for double) the templates below decline and the scalar loops
// of sinkhorn_route_forward run.
#if defined(__AVX512F__)
#include "routing/avx512/sinkhorn.h"
#endif

namespace sy {

namespace {

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
