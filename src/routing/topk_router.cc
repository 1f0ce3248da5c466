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

}  // namespace

}  // namespace sy

// Float on AVX-512: route_tokens_fast, the vectorised steps 1–2. Elsewhere (and for double) the
// template below declines and route_tokens_scalar runs.
#if defined(__AVX512F__)
#include "routing/avx512/topk_router.h"
#endif

namespace sy {

namespace {

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
