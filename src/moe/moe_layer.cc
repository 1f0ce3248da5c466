#include "moe/moe_layer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/gemm.h"
#include "kernels/kernels.h"

namespace sy {

template <typename T>
void MoeActivations<T>::resize(const MoeDims& d) {
  const int64_t m = d.max_rows();
  plan.resize(d.n_max, d.e, m);
  logits.reset(d.n_max * d.e);
  xs.reset(m * d.d);
  hu.reset(m * 2 * d.f);
  act.reset(m * d.f);
  ys.reset(m * d.d);
  shared_hu.reset(d.n_shared * d.n_max * 2 * d.f_shared);
  shared_act.reset(d.n_shared * d.n_max * d.f_shared);
}

template <typename T>
void MoeScratch<T>::resize(const MoeDims& d) {
  const int64_t m = d.max_rows();
  dys.reset(m * d.d);
  dact.reset(m * d.f);
  dhu.reset(m * 2 * d.f);
  dxs.reset(m * d.d);
  dgate_row.reset(m);
  dz.reset(d.n_max * d.e);
  dshared_act.reset(d.n_shared > 0 ? d.n_max * d.f_shared : 0);
  dshared_hu.reset(d.n_shared > 0 ? d.n_max * 2 * d.f_shared : 0);
}

template <typename T>
RoutingStats moe_forward(const MoeDims& dims, const MoeWeights<T>& w, Router<T>& router,
                         const RouteCall<T>& call, const T* h, int64_t n, MoeActivations<T>& a,
                         T* y) {
  const int64_t D = dims.d, E = dims.e, F = dims.f, Fs = dims.f_shared;
  // Router: z[N,E] = h · W_rᵀ, then the plan, as rows.
  gemm(false, true, n, E, D, T(1), h, D, w.router, D, T(0), a.logits.data(), E);
  const RoutingStats st = router.route(a.logits.data(), n, call, a.plan);
  const RoutingPlan<T>& p = a.plan;
  const int64_t rows = p.rows;

  // Dispatch: gather token rows into expert order.
  T* xs = a.xs.data();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const T* src = h + static_cast<int64_t>(p.token_of_row[row]) * D;
    std::copy(src, src + D, xs + row * D);
  }
  // Experts: one GEMM chain per expert on its contiguous rows (each GEMM uses every thread).
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = p.expert_offsets[e], ne = p.expert_offsets[e + 1] - r0;
    if (ne == 0) continue;
    swiglu_ffn_forward(a.ys.data() + r0 * D, T(0), a.hu.data() + r0 * 2 * F, a.act.data() + r0 * F,
                       xs + r0 * D, w.gate_up + e * 2 * F * D, w.down + e * D * F, ne, D, F);
  }
  // Combine, token-major, a token's rows in expert order: the summation order is fixed.
  const T* ys = a.ys.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    T* yt = y + t * D;
    std::fill(yt, yt + D, T(0));
    for (int64_t q = p.token_offsets[t]; q < p.token_offsets[t + 1]; ++q) {
      const int64_t row = p.token_rows[q];
      const T g = p.gate_of_row[row];
      const T* yr = ys + row * D;
      for (int64_t j = 0; j < D; ++j) yt[j] += g * yr[j];
    }
  }
  // Shared experts, ungated, on every token.
  for (int64_t j = 0; j < dims.n_shared; ++j) {
    swiglu_ffn_forward(y, T(1), a.shared_hu.data() + j * dims.n_max * 2 * Fs,
                       a.shared_act.data() + j * dims.n_max * Fs, h,
                       w.shared_gate_up + j * 2 * Fs * D, w.shared_down + j * D * Fs, n, D, Fs);
  }
  return st;
}

template <typename T>
void moe_backward(const MoeDims& dims, const MoeWeights<T>& w, const MoeGrads<T>& g,
                  Router<T>& router, const T* h, int64_t n, MoeActivations<T>& a, MoeScratch<T>& s,
                  const T* dy, T aux_scale, T* dh) {
  const int64_t D = dims.d, E = dims.e, F = dims.f, Fs = dims.f_shared;
  const RoutingPlan<T>& p = a.plan;
  const int64_t rows = p.rows;
  const T* ys = a.ys.data();
  T* dys = s.dys.data();

  // Combine backward: per row, the gate gradient and the expert-order output gradient.
  T* dgate_row = s.dgate_row.data();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const T* dyt = dy + static_cast<int64_t>(p.token_of_row[row]) * D;
    const T gk = p.gate_of_row[row];
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
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = p.expert_offsets[e], ne = p.expert_offsets[e + 1] - r0;
    if (ne == 0) continue;
    swiglu_ffn_backward(s.dxs.data() + r0 * D, T(0), g.gate_up + e * 2 * F * D, g.down + e * D * F,
                        s.dhu.data() + r0 * 2 * F, s.dact.data() + r0 * F, dys + r0 * D,
                        a.xs.data() + r0 * D, a.hu.data() + r0 * 2 * F, a.act.data() + r0 * F,
                        w.gate_up + e * 2 * F * D, w.down + e * D * F, ne, D, F);
  }
  // Dispatch backward: token-major, a token's rows in expert order.
  const T* dxs = s.dxs.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    T* dht = dh + t * D;
    for (int64_t q = p.token_offsets[t]; q < p.token_offsets[t + 1]; ++q) {
      const T* src = dxs + static_cast<int64_t>(p.token_rows[q]) * D;
      for (int64_t j = 0; j < D; ++j) dht[j] += src[j];
    }
  }
  // Router backward: dz, then the router weight and input gradients.
  T* dz = s.dz.data();
  router.backward(a.logits.data(), p, dgate_row, aux_scale, dz);
  gemm(true, false, E, D, n, T(1), dz, E, h, D, T(1), g.router, D);
  gemm(false, false, n, D, E, T(1), dz, E, w.router, D, T(1), dh, D);
  // Shared experts backward.
  for (int64_t j = 0; j < dims.n_shared; ++j) {
    swiglu_ffn_backward(dh, T(1), g.shared_gate_up + j * 2 * Fs * D, g.shared_down + j * D * Fs,
                        s.dshared_hu.data(), s.dshared_act.data(), dy, h,
                        a.shared_hu.data() + j * dims.n_max * 2 * Fs,
                        a.shared_act.data() + j * dims.n_max * Fs,
                        w.shared_gate_up + j * 2 * Fs * D, w.shared_down + j * D * Fs, n, D, Fs);
  }
}

// NOLINTBEGIN(bugprone-macro-parentheses): T is a type, it cannot be parenthesized.
#define SY_INSTANTIATE(T)                                                                          \
  template struct MoeActivations<T>;                                                               \
  template struct MoeScratch<T>;                                                                   \
  template RoutingStats moe_forward<T>(const MoeDims&, const MoeWeights<T>&, Router<T>&,           \
                                       const RouteCall<T>&, const T*, int64_t, MoeActivations<T>&, \
                                       T*);                                                        \
  template void moe_backward<T>(const MoeDims&, const MoeWeights<T>&, const MoeGrads<T>&,          \
                                Router<T>&, const T*, int64_t, MoeActivations<T>&, MoeScratch<T>&, \
                                const T*, T, T*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
