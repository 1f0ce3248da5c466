#include "moe/moe_layer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/gemm.h"
#include "kernels/kernels.h"

namespace sy {

template <typename T>
void MoeActivations<T>::resize(const MoeDims& d, const SelectorOptions& sel, const TopKOptions& opt,
                               const ExpertChoiceOptions* ec_opt) {
  if (sel.type != RouterType::kTopK) selector.resize(sel, opt, d.n_max);
  if (d.expert_choice) ec.resize(*ec_opt, d.n_max);
  const int64_t m = d.max_rows();
  logits.reset(d.n_max * d.e);
  route.resize(d.n_max, d.e, d.k);
  xs.reset(m * d.d);
  hu.reset(m * 2 * d.f);
  act.reset(m * d.f);
  ys.reset(m * d.d);
  shared_hu.reset(d.n_shared * d.n_max * 2 * d.f_shared);
  shared_act.reset(d.n_shared * d.n_max * d.f_shared);
  expert_offsets.assign(d.e + 1, 0);
  token_of_row.assign(m, 0);
  gate_of_row.assign(m, T(0));
  token_offsets.assign(d.n_max + 1, 0);
  token_rows.assign(m, 0);
}

template <typename T>
void MoeScratch<T>::resize(const MoeDims& d) {
  const int64_t m = d.max_rows();
  dys.reset(m * d.d);
  dact.reset(m * d.f);
  dhu.reset(m * 2 * d.f);
  dxs.reset(m * d.d);
  dgate.reset(d.n_max * d.k);
  dgate_row.reset(m);
  dz.reset(d.n_max * d.e);
  dshared_act.reset(d.n_shared > 0 ? d.n_max * d.f_shared : 0);
  dshared_hu.reset(d.n_shared > 0 ? d.n_max * 2 * d.f_shared : 0);
}

namespace {

// The token-major view of the plan: a counting sort of the rows by token (stable, so a token's
// rows stay in expert order), and the experts-per-token histogram.
template <typename T>
void index_rows_by_token(MoeActivations<T>& a, int64_t n, RoutingStats& st) {
  int64_t* off = a.token_offsets.data();
  std::fill(off, off + n + 1, int64_t(0));
  for (int64_t r = 0; r < a.rows; ++r) ++off[a.token_of_row[r] + 1];
  for (int64_t t = 0; t < n; ++t) {
    ++st.experts_per_token[std::min<int64_t>(off[t + 1], 5)];
    off[t + 1] += off[t];
  }
  // Fill using a running cursor per token: the start of each token's range, advanced in place,
  // then restored by shifting.
  for (int64_t r = 0; r < a.rows; ++r)
    a.token_rows[off[a.token_of_row[r]]++] = static_cast<int32_t>(r);
  for (int64_t t = n; t > 0; --t) off[t] = off[t - 1];
  off[0] = 0;
}

}  // namespace

template <typename T>
RoutingStats moe_forward(const TopKOptions& opt, const MoeDims& dims, const MoeWeights<T>& w,
                         const T* h, int64_t n, MoeActivations<T>& a, T* y,
                         const RouteInputs<T>& ri) {
  const int64_t D = dims.d, E = dims.e, K = dims.k, F = dims.f, Fs = dims.f_shared;
  // Router: z[N,E] = h · W_rᵀ, then the plan, as rows.
  gemm(false, true, n, E, D, T(1), h, D, w.router, D, T(0), a.logits.data(), E);
  RoutingStats st;
  if (dims.expert_choice) {
    ExpertChoiceBuffers<T>& ec = a.ec;
    if (ri.ec_causal) {
      ec_route_causal(*ri.ec, a.logits.data(), n, ri.ec_theta, ec);
    } else {
      ec_route_forward(*ri.ec, a.logits.data(), n, ri.ec_perm, ec);
      if (ri.update && ri.ec_theta)
        ec_update_thresholds(ri.ec_theta, ec.kth_value.data(), E, ri.ec_decay);
    }
    a.rows = ec.rows;
    std::copy(ec.offsets.begin(), ec.offsets.begin() + E + 1, a.expert_offsets.begin());
    std::copy(ec.token_of_row.begin(), ec.token_of_row.begin() + a.rows, a.token_of_row.begin());
    std::copy(ec.gate_of_row.begin(), ec.gate_of_row.begin() + a.rows, a.gate_of_row.begin());
    // The shared statistics, so metrics read every router the same way.
    RoutingBuffers<T>& r = a.route;
    r.n = n;
    r.rows = a.rows;
    r.dropped = 0;
    r.lbl_group = 0;
    for (int64_t i = 0; i < E; ++i) r.load[i] = r.demand[i] = ec.offsets[i + 1] - ec.offsets[i];
    // Entropy H_t = Σ_i p_i·(lse_t − z_i), with lse_t = z_m − log p_m at the largest score p_m
    // (≥ 1/E, so its logarithm is well conditioned): one logarithm per token, not one per score,
    // and every term ≥ 0 (no cancellation).
    double entropy = 0;
#pragma omp parallel for schedule(static) reduction(+ : entropy)
    for (int64_t t = 0; t < n; ++t) {
      const T* pt = ec.scores.data() + t * E;
      const T* zt = a.logits.data() + t * E;
      int64_t m = 0;
      for (int64_t i = 1; i < E; ++i) m = pt[i] > pt[m] ? i : m;
      const double lse = static_cast<double>(zt[m]) - std::log(static_cast<double>(pt[m]));
      double ht = 0;
      for (int64_t i = 0; i < E; ++i)
        ht += static_cast<double>(pt[i]) * std::max(0.0, lse - static_cast<double>(zt[i]));
      entropy += ht;
    }
    st.entropy_sum = entropy;
    for (int64_t r2 = 0; r2 < a.rows; ++r2)
      st.topk_score_sum += static_cast<double>(a.gate_of_row[r2]);
  } else {
    typename Selector<T>::Choice choice{ri.bias, nullptr};
    const bool sinkhorn = ri.selector && ri.selector->type == RouterType::kSinkhorn;
    if (sinkhorn && ri.sinkhorn_causal && ri.sinkhorn_b) {
      choice = a.selector.select_sinkhorn_causal(opt, a.logits.data(), n, ri.sinkhorn_b);
    } else if (ri.selector && ri.selector->type != RouterType::kTopK) {
      choice = a.selector.select(*ri.selector, opt, a.logits.data(), ri.token_ids, n, ri.bip_dual,
                                 ri.bias, ri.update);
      if (sinkhorn && ri.update && ri.sinkhorn_b) {
        const double* b = a.selector.sinkhorn_potentials();
        const double d = ri.sinkhorn_decay;
        for (int64_t i = 0; i < E; ++i)
          ri.sinkhorn_b[i] =
              static_cast<T>(d * static_cast<double>(ri.sinkhorn_b[i]) + (1 - d) * b[i]);
      }
    }
    st = topk_route_forward(opt, a.logits.data(), n, a.route, choice.bias, choice.forced);
    const RoutingBuffers<T>& r = a.route;
    a.rows = r.rows;
    std::copy(r.offsets.begin(), r.offsets.begin() + E + 1, a.expert_offsets.begin());
    for (int64_t row = 0; row < a.rows; ++row) {
      const int32_t slot = r.slot_of_row[row];
      a.token_of_row[row] = slot / static_cast<int32_t>(K);
      a.gate_of_row[row] = r.gate[slot];
    }
  }
  index_rows_by_token(a, n, st);
  const int64_t rows = a.rows;

  // Dispatch: gather token rows into expert order.
  T* xs = a.xs.data();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const T* src = h + static_cast<int64_t>(a.token_of_row[row]) * D;
    std::copy(src, src + D, xs + row * D);
  }
  // Experts: one GEMM chain per expert on its contiguous rows (each GEMM uses every thread).
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = a.expert_offsets[e], ne = a.expert_offsets[e + 1] - r0;
    if (ne == 0) continue;
    T* hu = a.hu.data() + r0 * 2 * F;
    T* act = a.act.data() + r0 * F;
    gemm(false, true, ne, 2 * F, D, T(1), xs + r0 * D, D, w.gate_up + e * 2 * F * D, D, T(0), hu,
         2 * F);
    swiglu_forward(act, hu, ne, F);
    gemm(false, true, ne, D, F, T(1), act, F, w.down + e * D * F, F, T(0), a.ys.data() + r0 * D, D);
  }
  // Combine, token-major, a token's rows in expert order: the summation order is fixed.
  const T* ys = a.ys.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    T* yt = y + t * D;
    std::fill(yt, yt + D, T(0));
    for (int64_t q = a.token_offsets[t]; q < a.token_offsets[t + 1]; ++q) {
      const int64_t row = a.token_rows[q];
      const T g = a.gate_of_row[row];
      const T* yr = ys + row * D;
      for (int64_t j = 0; j < D; ++j) yt[j] += g * yr[j];
    }
  }
  // Shared experts, ungated, on every token.
  for (int64_t j = 0; j < dims.n_shared; ++j) {
    T* hu = a.shared_hu.data() + j * dims.n_max * 2 * Fs;
    T* act = a.shared_act.data() + j * dims.n_max * Fs;
    gemm(false, true, n, 2 * Fs, D, T(1), h, D, w.shared_gate_up + j * 2 * Fs * D, D, T(0), hu,
         2 * Fs);
    swiglu_forward(act, hu, n, Fs);
    gemm(false, true, n, D, Fs, T(1), act, Fs, w.shared_down + j * D * Fs, Fs, T(1), y, D);
  }
  return st;
}

template <typename T>
void moe_backward(const TopKOptions& opt, const MoeDims& dims, const MoeWeights<T>& w,
                  const MoeGrads<T>& g, const T* h, int64_t n, MoeActivations<T>& a,
                  MoeScratch<T>& s, const T* dy, T aux_scale, T* dh,
                  const ExpertChoiceOptions* ec_opt) {
  const int64_t D = dims.d, E = dims.e, K = dims.k, F = dims.f, Fs = dims.f_shared;
  const int64_t rows = a.rows;
  const T* ys = a.ys.data();
  T* dys = s.dys.data();
  T* dgate = s.dgate.data();

  // Combine backward: per row, the gate gradient and the expert-order output gradient.
  T* dgate_row = s.dgate_row.data();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const T* dyt = dy + static_cast<int64_t>(a.token_of_row[row]) * D;
    const T gk = a.gate_of_row[row];
    const T* yr = ys + row * D;
    T* dyr = dys + row * D;
    T dot = 0;
    for (int64_t j = 0; j < D; ++j) {
      dot += dyt[j] * yr[j];
      dyr[j] = gk * dyt[j];
    }
    dgate_row[row] = dot;
  }
  // Experts backward.
  std::fill(s.dhu.data(), s.dhu.data() + rows * 2 * F, T(0));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = a.expert_offsets[e], ne = a.expert_offsets[e + 1] - r0;
    if (ne == 0) continue;
    T* dact = s.dact.data() + r0 * F;
    T* dhu = s.dhu.data() + r0 * 2 * F;
    gemm(false, false, ne, F, D, T(1), dys + r0 * D, D, w.down + e * D * F, F, T(0), dact, F);
    gemm(true, false, D, F, ne, T(1), dys + r0 * D, D, a.act.data() + r0 * F, F, T(1),
         g.down + e * D * F, F);
    swiglu_backward(dhu, dact, a.hu.data() + r0 * 2 * F, ne, F);
    gemm(false, false, ne, D, 2 * F, T(1), dhu, 2 * F, w.gate_up + e * 2 * F * D, D, T(0),
         s.dxs.data() + r0 * D, D);
    gemm(true, false, 2 * F, D, ne, T(1), dhu, 2 * F, a.xs.data() + r0 * D, D, T(1),
         g.gate_up + e * 2 * F * D, D);
  }
  // Dispatch backward: token-major, a token's rows in expert order.
  const T* dxs = s.dxs.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    T* dht = dh + t * D;
    for (int64_t q = a.token_offsets[t]; q < a.token_offsets[t + 1]; ++q) {
      const T* src = dxs + static_cast<int64_t>(a.token_rows[q]) * D;
      for (int64_t j = 0; j < D; ++j) dht[j] += src[j];
    }
  }
  // Router backward: dz, then the router weight and input gradients.
  T* dz = s.dz.data();
  if (dims.expert_choice) {
    ec_route_backward(*ec_opt, dgate_row, a.ec, dz);
  } else {
    RoutingBuffers<T>& r = a.route;
    for (int64_t slot = 0; slot < n * K; ++slot) {
      const int64_t row = r.row_of_slot[slot];
      dgate[slot] = row < 0 ? T(0) : dgate_row[row];
    }
    topk_route_backward(opt, a.logits.data(), dgate, aux_scale, r, dz);
  }
  gemm(true, false, E, D, n, T(1), dz, E, h, D, T(1), g.router, D);
  gemm(false, false, n, D, E, T(1), dz, E, w.router, D, T(1), dh, D);
  // Shared experts backward.
  for (int64_t j = 0; j < dims.n_shared; ++j) {
    const T* hu = a.shared_hu.data() + j * dims.n_max * 2 * Fs;
    const T* act = a.shared_act.data() + j * dims.n_max * Fs;
    T* dact = s.dshared_act.data();
    T* dhu = s.dshared_hu.data();
    gemm(false, false, n, Fs, D, T(1), dy, D, w.shared_down + j * D * Fs, Fs, T(0), dact, Fs);
    gemm(true, false, D, Fs, n, T(1), dy, D, act, Fs, T(1), g.shared_down + j * D * Fs, Fs);
    std::fill(dhu, dhu + n * 2 * Fs, T(0));
    swiglu_backward(dhu, dact, hu, n, Fs);
    gemm(false, false, n, D, 2 * Fs, T(1), dhu, 2 * Fs, w.shared_gate_up + j * 2 * Fs * D, D, T(1),
         dh, D);
    gemm(true, false, 2 * Fs, D, n, T(1), dhu, 2 * Fs, h, D, T(1),
         g.shared_gate_up + j * 2 * Fs * D, D);
  }
}

// NOLINTBEGIN(bugprone-macro-parentheses): T is a type, it cannot be parenthesized.
#define SY_INSTANTIATE(T)                                                                        \
  template struct MoeActivations<T>;                                                             \
  template struct MoeScratch<T>;                                                                 \
  template RoutingStats moe_forward<T>(const TopKOptions&, const MoeDims&, const MoeWeights<T>&, \
                                       const T*, int64_t, MoeActivations<T>&, T*,                \
                                       const RouteInputs<T>&);                                   \
  template void moe_backward<T>(const TopKOptions&, const MoeDims&, const MoeWeights<T>&,        \
                                const MoeGrads<T>&, const T*, int64_t, MoeActivations<T>&,       \
                                MoeScratch<T>&, const T*, T, T*, const ExpertChoiceOptions*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
