#include "moe/moe_layer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/gemm.h"
#include "kernels/kernels.h"

namespace sy {

// Under expert parallelism the rows a rank's experts receive depend on the routing: the buffers
// that hold them start at one rank's share (what balanced routing sends each rank) and grow
// (ensure_rows) when a call receives more, up to every row of the group (max_local_rows).
template <typename T>
void MoeActivations<T>::resize(const MoeDims& d) {
  const int64_t m = d.max_rows(), ml = m;
  plan.resize(d.n_max, d.e, m);
  logits.reset(d.n_max * d.e);
  xs.reset(m * d.d);
  ys.reset(m * d.d);
  xl.reset(d.ep > 1 ? ml * d.d : 0);
  hu.reset(ml * 2 * d.f);
  act.reset(ml * d.f);
  local_offsets.assign(d.e_local() + 1, 0);
  send_counts.assign(d.ep > 1 ? d.e : 0, 0);
  recv_counts.assign(d.ep > 1 ? d.e : 0, 0);
  recv_row.assign(d.ep > 1 ? ml : 0, 0);  // grown with the buffers
  shared_hu.reset(d.n_shared * d.n_max * 2 * d.f_shared);
  shared_act.reset(d.n_shared * d.n_max * d.f_shared);
}

template <typename T>
void ExpertParallel<T>::resize(const MoeDims& d) {
  rows.reset(d.ep > 1 ? d.max_rows() * d.d : 0);
  local.reset(d.ep > 1 ? d.max_rows() * d.d : 0);
  sc.assign(d.ep, 0);
  so.assign(d.ep, 0);
  rc.assign(d.ep, 0);
  ro.assign(d.ep, 0);
}

template <typename T>
void MoeScratch<T>::resize(const MoeDims& d) {
  const int64_t m = d.max_rows(), ml = m;  // the expert-parallel rows grow (ensure_rows)
  dys.reset(m * d.d);
  dxs.reset(m * d.d);
  dyl.reset(d.ep > 1 ? ml * d.d : 0);
  dxl.reset(d.ep > 1 ? ml * d.d : 0);
  dact.reset(ml * d.f);
  dhu.reset(ml * 2 * d.f);
  dgate_row.reset(m);
  dz.reset(d.n_max * d.e);
  dshared_act.reset(d.n_shared > 0 ? d.n_max * d.f_shared : 0);
  dshared_hu.reset(d.n_shared > 0 ? d.n_max * 2 * d.f_shared : 0);
}

namespace {

// ---- Expert parallelism: the exchange stages between dispatch and the experts ----------------
// Rows leave in the plan's expert order, so the rows for rank j's experts are one contiguous
// block; they arrive rank by rank, and are regrouped local expert by local expert (the order
// the experts run in), keeping a map recv_row back.

template <typename T>
bool expert_parallel(const MoeDims& dims, const ExpertParallel<T>* ep) {
  return dims.ep > 1 && ep != nullptr && ep->group != nullptr;
}

// b holds at least `rows` rows of `width`: else reallocated (contents discarded) for 1.5× its
// rows, at least `rows`, at most dims.max_local_rows().
template <typename T>
void ensure_rows(const MoeDims& dims, Buffer<T>& b, int64_t rows, int64_t width) {
  const int64_t have = static_cast<int64_t>(b.size()) / width;
  if (have >= rows) return;
  b.reset(
      static_cast<size_t>(std::min(dims.max_local_rows(), std::max(rows, have * 3 / 2)) * width));
}

// The alltoallv geometry (in elements) of rows of D values: to rank i, the plan's rows of its
// experts; from rank i, recv_counts of them, rank after rank. From the layer's own plan and
// counts, so backward can rebuild what later layers' forwards overwrote.
template <typename T>
void exchange_geometry(const MoeDims& dims, const MoeActivations<T>& a, ExpertParallel<T>& ep) {
  const int64_t R = dims.ep, El = dims.e_local(), D = dims.d;
  const std::vector<int64_t>& off = a.plan.expert_offsets;
  int64_t received = 0;
  for (int64_t i = 0; i < R; ++i) {
    ep.sc[i] = (off[(i + 1) * El] - off[i * El]) * D;
    ep.so[i] = off[i * El] * D;
    int64_t from_i = 0;
    for (int64_t j = 0; j < El; ++j) from_i += a.recv_counts[i * El + j];
    ep.rc[i] = from_i * D;
    ep.ro[i] = received * D;
    received += from_i;
  }
}

// Counts: how many rows go to each (rank, local expert), exchanged; then the local layout
// (local_offsets, recv_row) and the geometry.
template <typename T>
void plan_exchange(const MoeDims& dims, MoeActivations<T>& a, ExpertParallel<T>& ep) {
  const int64_t R = dims.ep, El = dims.e_local(), D = dims.d;
  const RoutingPlan<T>& p = a.plan;
  for (int64_t e = 0; e < dims.e; ++e)
    a.send_counts[e] = p.expert_offsets[e + 1] - p.expert_offsets[e];
  ep.group->alltoall(a.send_counts.data(), a.recv_counts.data(), El);
  exchange_geometry(dims, a, ep);
  int64_t ml = 0;
  for (int64_t c : a.recv_counts) ml += c;
  ensure_rows(dims, a.xl, ml, D);
  ensure_rows(dims, a.hu, ml, 2 * dims.f);
  ensure_rows(dims, a.act, ml, dims.f);
  ensure_rows(dims, ep.rows, ml, D);
  ensure_rows(dims, ep.local, ml, D);
  if (static_cast<int64_t>(a.recv_row.size()) < ml) a.recv_row.resize(a.xl.size() / D);
  // Local expert j's rows: from rank 0, then rank 1, ...; recv_row maps each to the buffer.
  int64_t r = 0;
  for (int64_t j = 0; j < El; ++j) {
    a.local_offsets[j] = r;
    for (int64_t i = 0; i < R; ++i) {
      int64_t at = ep.ro[i] / D;
      for (int64_t jj = 0; jj < j; ++jj) at += a.recv_counts[i * El + jj];
      for (int64_t c = 0; c < a.recv_counts[i * El + j]; ++c) a.recv_row[r++] = at + c;
    }
  }
  a.local_offsets[El] = r;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Bytes of one alltoallv (counts in elements) that leave this rank.
template <typename T>
int64_t bytes_away(const std::vector<int64_t>& counts, int64_t me) {
  int64_t n = 0;
  for (size_t i = 0; i < counts.size(); ++i)
    if (static_cast<int64_t>(i) != me) n += counts[i];
  return n * static_cast<int64_t>(sizeof(T));
}

// rows[M,D] in the plan's expert order → local[Ml,D], this rank's experts' rows.
template <typename T>
void send_to_experts(const MoeDims& dims, const MoeActivations<T>& a, ExpertParallel<T>& ep,
                     const T* rows, T* local) {
  const int64_t D = dims.d, ml = a.local_offsets[dims.e_local()];
  ep.group->alltoallv(rows, ep.sc.data(), ep.so.data(), ep.rows.data(), ep.rc.data(), ep.ro.data());
  const T* buf = ep.rows.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < ml; ++r) std::copy_n(buf + a.recv_row[r] * D, D, local + r * D);
}

// The way back: local[Ml,D] → rows[M,D] in the plan's expert order, where they came from.
template <typename T>
void return_from_experts(const MoeDims& dims, const MoeActivations<T>& a, ExpertParallel<T>& ep,
                         const T* local, T* rows) {
  const int64_t D = dims.d, ml = a.local_offsets[dims.e_local()];
  T* buf = ep.rows.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < ml; ++r) std::copy_n(local + r * D, D, buf + a.recv_row[r] * D);
  ep.group->alltoallv(buf, ep.rc.data(), ep.ro.data(), rows, ep.sc.data(), ep.so.data());
}

}  // namespace

template <typename T>
RoutingStats moe_forward(const MoeDims& dims, const MoeWeights<T>& w, Router<T>& router,
                         const RouteCall<T>& call, const T* h, int64_t n, MoeActivations<T>& a,
                         T* y, ExpertParallel<T>* ep) {
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
  // With expert parallelism: every row to the rank holding its expert (xl), results back to ys.
  const bool parallel = expert_parallel(dims, ep);
  const T* xl = xs;
  T* yl = a.ys.data();
  const int64_t* offsets = p.expert_offsets.data();
  a.exchange = ExchangeStats{};
  std::chrono::steady_clock::time_point t0;  // timed only under expert parallelism
  if (parallel) {
    t0 = std::chrono::steady_clock::now();
    plan_exchange(dims, a, *ep);
    send_to_experts(dims, a, *ep, xs, a.xl.data());
    xl = a.xl.data();
    yl = ep->local.data();
    offsets = a.local_offsets.data();
    a.exchange.rows = a.local_offsets[dims.e_local()];
    a.exchange.bytes_sent =
        bytes_away<T>(ep->sc, dims.ep_rank) + bytes_away<T>(ep->rc, dims.ep_rank);
    a.exchange.exchange_s += seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
  }
  // Experts: one GEMM chain per expert on its contiguous rows (each GEMM uses every thread).
  for (int64_t e = 0; e < dims.e_local(); ++e) {
    const int64_t r0 = offsets[e], ne = offsets[e + 1] - r0;
    if (ne == 0) continue;
    swiglu_ffn_forward(yl + r0 * D, T(0), a.hu.data() + r0 * 2 * F, a.act.data() + r0 * F,
                       xl + r0 * D, w.gate_up + e * 2 * F * D, w.down + e * D * F, ne, D, F);
  }
  if (parallel) {
    a.exchange.experts_s += seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    return_from_experts(dims, a, *ep, yl, a.ys.data());
    a.exchange.exchange_s += seconds_since(t0);
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
                  const T* dy, T aux_scale, T* dh, ExpertParallel<T>* ep) {
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
  // With expert parallelism: each row's output gradient to its expert's rank, input gradients
  // back.
  const bool parallel = expert_parallel(dims, ep);
  const T* dyl = dys;
  const T* xl = a.xs.data();
  T* dxl = s.dxs.data();
  const int64_t* offsets = p.expert_offsets.data();
  std::chrono::steady_clock::time_point t0;  // timed only under expert parallelism
  if (parallel) {
    t0 = std::chrono::steady_clock::now();
    exchange_geometry(dims, a, *ep);
    const int64_t ml = a.local_offsets[dims.e_local()];
    ensure_rows(dims, s.dyl, ml, D);
    ensure_rows(dims, s.dxl, ml, D);
    ensure_rows(dims, s.dact, ml, F);
    ensure_rows(dims, s.dhu, ml, 2 * F);
    send_to_experts(dims, a, *ep, dys, s.dyl.data());
    dyl = s.dyl.data();
    xl = a.xl.data();
    dxl = s.dxl.data();
    offsets = a.local_offsets.data();
    a.exchange.bytes_sent +=
        bytes_away<T>(ep->sc, dims.ep_rank) + bytes_away<T>(ep->rc, dims.ep_rank);
    a.exchange.exchange_s += seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
  }
  // Experts backward.
  for (int64_t e = 0; e < dims.e_local(); ++e) {
    const int64_t r0 = offsets[e], ne = offsets[e + 1] - r0;
    if (ne == 0) continue;
    swiglu_ffn_backward(dxl + r0 * D, T(0), g.gate_up + e * 2 * F * D, g.down + e * D * F,
                        s.dhu.data() + r0 * 2 * F, s.dact.data() + r0 * F, dyl + r0 * D,
                        xl + r0 * D, a.hu.data() + r0 * 2 * F, a.act.data() + r0 * F,
                        w.gate_up + e * 2 * F * D, w.down + e * D * F, ne, D, F);
  }
  if (parallel) {
    a.exchange.experts_s += seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    return_from_experts(dims, a, *ep, dxl, s.dxs.data());
    a.exchange.exchange_s += seconds_since(t0);
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
  template struct ExpertParallel<T>;                                                               \
  template RoutingStats moe_forward<T>(const MoeDims&, const MoeWeights<T>&, Router<T>&,           \
                                       const RouteCall<T>&, const T*, int64_t, MoeActivations<T>&, \
                                       T*, ExpertParallel<T>*);                                    \
  template void moe_backward<T>(const MoeDims&, const MoeWeights<T>&, const MoeGrads<T>&,          \
                                Router<T>&, const T*, int64_t, MoeActivations<T>&, MoeScratch<T>&, \
                                const T*, T, T*, ExpertParallel<T>*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
