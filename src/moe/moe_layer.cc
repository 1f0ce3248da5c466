#include "moe/moe_layer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "core/stopwatch.h"
#include "core/sum_of_squares.h"
#include "kernels/kernels.h"

namespace sy {

// Under expert parallelism the rows a rank's experts receive depend on the routing: the buffers
// that hold them start at one rank's share (what balanced routing sends each rank) and grow
// (ensure_rows) when a call receives more, up to every row of the group (max_local_rows).
template <typename T>
void MoeActivations<T>::resize(const MoeDims& d) {
  const int64_t m = d.max_rows(), ml = m;
  const bool ep = d.ep > 1;
  plan.resize(d.n_max, d.e, m);
  logits.reset(d.n_max * d.e);
  xs.reset(ep || d.bf16_activations ? 0 : m * d.d);
  ys.reset(ml * d.d);
  hu.reset(ml * 2 * d.f);
  act.reset(d.bf16_activations ? 0 : ml * d.f);
  x16.reset(d.bf16_activations ? ml * d.d : 0);
  act16.reset(d.bf16_activations ? ml * d.f : 0);
  local_offsets.assign(d.e_local() + 1, 0);
  send_counts.assign(ep ? d.ep * (d.e_local() + 1) : 0, 0);
  sent_tokens.assign(ep ? d.ep * d.n_max : 0, 0);
  recv_counts.assign(ep ? d.ep * (d.e_local() + 1) : 0, 0);
  xl.reset(ep && !d.bf16_activations ? ml * d.d : 0);
  recv_row.assign(ep ? ml : 0, 0);  // the [Ml] ones grow with the buffers
  recv_pair.assign(ep ? ml : 0, 0);
  gate_local.reset(ep ? ml : 0);
  shared_hu.reset(d.n_shared * d.n_max * 2 * d.f_shared);
  shared_act.reset(d.n_shared * d.n_max * d.f_shared);
}

template <typename T>
void ExpertParallel<T>::resize(const MoeDims& d) {
  const bool ep = d.ep > 1;
  // Balanced top-K sends each token to min(K, ep) ranks; the token buffers grow past that.
  const int64_t tokens = d.n_max * std::min(d.max_per_token > 0 ? d.max_per_token : d.k, d.ep);
  sent.reset(ep ? tokens * d.d : 0);
  recv.reset(ep ? tokens * d.d : 0);
  pairs.reset(ep ? d.max_rows() : 0);
  slot_of_row.assign(ep ? d.max_rows() : 0, 0);
  slots.assign(ep ? d.max_rows() : 0, 0);
  for (auto* v : {&sc, &so, &rc, &ro, &psc, &pso, &prc, &pro}) v->assign(d.ep, 0);
}

template <typename T>
void MoeScratch<T>::resize(const MoeDims& d) {
  const int64_t m = d.max_rows(), ml = m;  // the expert-parallel rows grow (ensure_rows)
  const bool ep = d.ep > 1;
  dys.reset(ep || d.bf16_activations ? 0 : m * d.d);
  dxs.reset(ep ? 0 : m * d.d);
  dyl.reset(ep && !d.bf16_activations ? ml * d.d : 0);
  dxl.reset(ep ? ml * d.d : 0);
  dy16.reset(d.bf16_activations ? ml * d.d : 0);
  dact.reset(ml * d.f);
  dhu.reset(d.bf16_activations ? 0 : ml * 2 * d.f);
  dgate_row.reset(m);
  dz.reset(d.n_max * d.e);
  dshared_act.reset(d.n_shared > 0 ? d.n_max * d.f_shared : 0);
  dshared_hu.reset(d.n_shared > 0 ? d.n_max * 2 * d.f_shared : 0);
}

namespace {

// ---- The experts on their contiguous rows ----------------------------------------------------

// Small experts run side by side, one per thread, each GEMM on its calling thread: with many
// experts of few rows each (MEDIUM: 64 of ≈ 190), a GEMM split over every thread leaves them
// idle at its edges. Chosen when there are at least two experts per thread and none holds more
// than a thread's share of the rows (else the largest would run alone on one thread); the
// experts are independent, so either way gives the same results.
bool experts_side_by_side(int64_t n_experts, const int64_t* offsets) {
  const int64_t threads = omp_get_max_threads();
  if (threads < 2 || n_experts < 2 * threads || omp_in_parallel()) return false;
  int64_t largest = 0;
  for (int64_t e = 0; e < n_experts; ++e) largest = std::max(largest, offsets[e + 1] - offsets[e]);
  return largest * threads <= offsets[n_experts] - offsets[0];
}

// run(e, r0, ne) for each local expert e with rows (its ne rows start at r0), side by side when
// experts_side_by_side says so: the largest first (each thread takes the next when it is done),
// so the threads finish within about the smallest expert's time of each other instead of the
// last expert's (measured: 3.7% of SMALL's expert thread time idle in index order). The order
// does not change any result: each expert writes only its own rows and gradients. Returns the
// seconds it took.
template <typename Run>
double for_each_expert(int64_t n_experts, const int64_t* offsets, Run&& run) {
  Stopwatch clock;
  if (!experts_side_by_side(n_experts, offsets)) {
    for (int64_t e = 0; e < n_experts; ++e)
      if (offsets[e + 1] > offsets[e]) run(e, offsets[e], offsets[e + 1] - offsets[e]);
    return clock.lap();
  }
  std::vector<int64_t> order(static_cast<size_t>(n_experts));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [offsets](int64_t a, int64_t b) {
    return offsets[a + 1] - offsets[a] > offsets[b + 1] - offsets[b];
  });
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n_experts; ++i) {
    const int64_t e = order[static_cast<size_t>(i)], r0 = offsets[e], ne = offsets[e + 1] - r0;
    if (ne > 0) run(e, r0, ne);
  }
  return clock.lap();
}

// y[rows, D] = expert_e(x) for local expert e's rows [offsets[e], offsets[e+1]), one GEMM chain
// per expert; hu/act keep what the backward needs. x: the rows, or with bf16_activations a.x16
// (x unread). Returns the seconds it took.
template <typename T>
double experts_forward(const MoeDims& dims, const MoeWeights<T>& w, const int64_t* offsets,
                       const T* x, MoeActivations<T>& a, T* y) {
  const int64_t D = dims.d, F = dims.f;
  return for_each_expert(dims.e_local(), offsets, [&](int64_t e, int64_t r0, int64_t ne) {
    if constexpr (std::is_same_v<T, float>) {
      if (dims.bf16_activations) {
        swiglu_ffn_forward_bf16(y + r0 * D, 0.f, a.hu.data() + r0 * 2 * F, a.act16.data() + r0 * F,
                                a.x16.data() + r0 * D, w.gate_up + e * 2 * F * D,
                                w.down + e * D * F, ne, D, F, *w.bf16);
        return;
      }
    }
    swiglu_ffn_forward(y + r0 * D, T(0), a.hu.data() + r0 * 2 * F, a.act.data() + r0 * F,
                       x + r0 * D, w.gate_up + e * 2 * F * D, w.down + e * D * F, ne, D, F, w.bf16);
  });
}

// dx[rows, D] (overwritten) from dy of the same rows (with bf16_activations: from s.dy16, and x
// from a.x16; x and dy unread); expert gradients accumulate into g (or are written,
// g.experts_zero). Returns the seconds it took.
template <typename T>
double experts_backward(const MoeDims& dims, const MoeWeights<T>& w, const MoeGrads<T>& g,
                        const int64_t* offsets, const T* x, const MoeActivations<T>& a,
                        MoeScratch<T>& s, const T* dy, T* dx) {
  const int64_t D = dims.d, F = dims.f, El = dims.e_local();
  const T dw_beta = g.experts_zero ? T(0) : T(1);
  // Σ g² of expert e's gradient (gate|up, then down), on the thread that just wrote it.
  const auto sum_sq = [&](int64_t e) {
    return sum_of_squares_serial(g.gate_up + e * 2 * F * D, 2 * F * D) +
           sum_of_squares_serial(g.down + e * D * F, D * F);
  };
  const double seconds = for_each_expert(El, offsets, [&](int64_t e, int64_t r0, int64_t ne) {
    if constexpr (std::is_same_v<T, float>) {
      if (dims.bf16_activations) {
        swiglu_ffn_backward_bf16(dx + r0 * D, 0.f, g.gate_up + e * 2 * F * D, g.down + e * D * F,
                                 dw_beta, s.dact.data() + r0 * F, s.dy16.data() + r0 * D,
                                 a.x16.data() + r0 * D, a.hu.data() + r0 * 2 * F,
                                 a.act16.data() + r0 * F, w.gate_up + e * 2 * F * D,
                                 w.down + e * D * F, ne, D, F, *w.bf16);
        if (g.expert_sum_sq != nullptr) g.expert_sum_sq[e] = sum_sq(e);
        return;
      }
    }
    swiglu_ffn_backward(dx + r0 * D, T(0), g.gate_up + e * 2 * F * D, g.down + e * D * F, dw_beta,
                        s.dhu.data() + r0 * 2 * F, s.dact.data() + r0 * F, dy + r0 * D, x + r0 * D,
                        a.hu.data() + r0 * 2 * F, a.act.data() + r0 * F, w.gate_up + e * 2 * F * D,
                        w.down + e * D * F, ne, D, F, w.bf16);
    if (g.expert_sum_sq != nullptr) g.expert_sum_sq[e] = sum_sq(e);
  });
  if (g.expert_sum_sq != nullptr)  // the experts without rows (their gradients untouched)
    for (int64_t e = 0; e < El; ++e)
      if (offsets[e + 1] == offsets[e]) g.expert_sum_sq[e] = g.experts_zero ? 0.0 : sum_sq(e);
  return seconds;
}

// ---- Expert parallelism: the exchange stages --------------------------------------------------
// The plan's rows are in expert order, so the rows for rank i's experts are one contiguous block
// [offsets[i·E_local], offsets[(i+1)·E_local]) and a token's rows (in expert order) meet the
// ranks in ascending order. Each token goes once to each rank in its rows (a token row), with
// one (token index, gate) pair per row; the receiver regroups the pairs local expert by local
// expert (the order its experts run in).

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

void ensure_size(std::vector<int64_t>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(std::max(n, n * 3 / 2)));
}

// The alltoallv geometries, from the layer's own plan and counts (so the backward can rebuild
// what later layers' forwards overwrote): token rows (elements, D per token) and pairs (one per
// row). To rank i: its tokens, and the plan's rows of its experts; from rank i: what its counts
// say, rank after rank.
template <typename T>
void exchange_geometry(const MoeDims& dims, const MoeActivations<T>& a, ExpertParallel<T>& ep) {
  const int64_t R = dims.ep, El = dims.e_local(), D = dims.d, W = El + 1;
  const std::vector<int64_t>& off = a.plan.expert_offsets;
  int64_t sent = 0, received = 0, pairs = 0;
  for (int64_t i = 0; i < R; ++i) {
    ep.sc[i] = a.send_counts[i * W + El] * D;
    ep.so[i] = sent * D;
    sent += a.send_counts[i * W + El];
    ep.psc[i] = off[(i + 1) * El] - off[i * El];
    ep.pso[i] = off[i * El];
    ep.rc[i] = a.recv_counts[i * W + El] * D;
    ep.ro[i] = received * D;
    received += a.recv_counts[i * W + El];
    int64_t from_i = 0;
    for (int64_t j = 0; j < El; ++j) from_i += a.recv_counts[i * W + j];
    ep.prc[i] = from_i;
    ep.pro[i] = pairs;
    pairs += from_i;
  }
}

// Token rows received (Ur) and local rows (Ml) of the layer's last forward.
template <typename T>
int64_t tokens_received(const MoeDims& dims, const ExpertParallel<T>& ep) {
  return (ep.ro[dims.ep - 1] + ep.rc[dims.ep - 1]) / dims.d;
}

// The sender's side: per rank, the rows for each of its experts and the tokens they belong to
// (sent_tokens, rank by rank), and each plan row's token index in its rank's list (slot_of_row).
template <typename T>
void list_tokens(const MoeDims& dims, MoeActivations<T>& a, ExpertParallel<T>& ep) {
  const int64_t R = dims.ep, El = dims.e_local(), W = El + 1;
  const RoutingPlan<T>& p = a.plan;
  const std::vector<int64_t>& off = p.expert_offsets;
  for (int64_t i = 0; i < R; ++i) {
    for (int64_t j = 0; j < El; ++j)
      a.send_counts[i * W + j] = off[i * El + j + 1] - off[i * El + j];
    a.send_counts[i * W + El] = 0;
  }
  // Walks a token's rows, calling visit(rank) once per rank they reach and row(rank, r) per row.
  auto walk = [&](int64_t t, auto&& visit, auto&& row) {
    int64_t i = 0, last = -1;
    for (int64_t q = p.token_offsets[t]; q < p.token_offsets[t + 1]; ++q) {
      const int64_t r = p.token_rows[q];
      while (r >= off[(i + 1) * El]) ++i;
      if (i != last) visit(i), last = i;
      row(i, r);
    }
  };
  for (int64_t t = 0; t < p.n; ++t)
    walk(
        t, [&](int64_t i) { ++a.send_counts[i * W + El]; }, [](int64_t, int64_t) {});
  // The lists' starts and ends so far (sc and so are scratch here: the geometry rebuilds them).
  std::vector<int64_t>&first = ep.so, &cursor = ep.sc;
  int64_t begin = 0;
  for (int64_t i = 0; i < R; ++i) first[i] = cursor[i] = begin, begin += a.send_counts[i * W + El];
  for (int64_t t = 0; t < p.n; ++t)
    walk(
        t, [&](int64_t i) { a.sent_tokens[cursor[i]++] = static_cast<int32_t>(t); },
        [&](int64_t i, int64_t r) { ep.slot_of_row[r] = cursor[i] - 1 - first[i]; });
}

// Counts exchanged, then the pairs (token index, gate) of every row, and the receiver's local
// layout: local_offsets, recv_row, recv_pair, gate_local. Grows the [Ml] and token buffers.
template <typename T>
void plan_exchange(const MoeDims& dims, MoeActivations<T>& a, ExpertParallel<T>& ep) {
  const int64_t R = dims.ep, El = dims.e_local(), D = dims.d, W = El + 1;
  list_tokens(dims, a, ep);
  ep.group->alltoall(a.send_counts.data(), a.recv_counts.data(), W);
  exchange_geometry(dims, a, ep);
  const int64_t ml = ep.pro[R - 1] + ep.prc[R - 1];
  const int64_t us = (ep.so[R - 1] + ep.sc[R - 1]) / D, ur = tokens_received(dims, ep);
  ensure_rows(dims, a.ys, ml, D);
  ensure_rows(dims, a.hu, ml, 2 * dims.f);
  if (dims.bf16_activations) {
    ensure_rows(dims, a.x16, ml, D);
    ensure_rows(dims, a.act16, ml, dims.f);
  } else {
    ensure_rows(dims, a.xl, ml, D);
    ensure_rows(dims, a.act, ml, dims.f);
  }
  ensure_rows(dims, a.gate_local, ml, 1);
  ensure_rows(dims, ep.pairs, ml, 1);
  ensure_rows(dims, ep.sent, us, D);
  ensure_rows(dims, ep.recv, ur, D);
  for (auto* v : {&a.recv_row, &a.recv_pair, &ep.slots}) ensure_size(*v, ml);
  ep.group->alltoallv(ep.slot_of_row.data(), ep.psc.data(), ep.pso.data(), ep.slots.data(),
                      ep.prc.data(), ep.pro.data());
  ep.group->alltoallv(a.plan.gate_of_row.data(), ep.psc.data(), ep.pso.data(), ep.pairs.data(),
                      ep.prc.data(), ep.pro.data());
  // Local expert j's rows: from rank 0, then rank 1, ...
  int64_t r = 0;
  for (int64_t j = 0; j < El; ++j) {
    a.local_offsets[j] = r;
    for (int64_t i = 0; i < R; ++i) {
      int64_t q = ep.pro[i];
      for (int64_t jj = 0; jj < j; ++jj) q += a.recv_counts[i * W + jj];
      const int64_t first_token = ep.ro[i] / D;
      for (int64_t c = 0; c < a.recv_counts[i * W + j]; ++c, ++q, ++r) {
        a.recv_pair[r] = q;
        a.recv_row[r] = first_token + ep.slots[q];
        a.gate_local[r] = ep.pairs[q];
      }
    }
  }
  a.local_offsets[El] = r;
}

// Values of one alltoallv (counts per rank) that leave this rank.
int64_t away(const std::vector<int64_t>& counts, int64_t me) {
  int64_t n = 0;
  for (size_t i = 0; i < counts.size(); ++i)
    if (static_cast<int64_t>(i) != me) n += counts[i];
  return n;
}

// src[N,D] by token → ep.recv: the token rows this rank's experts need, from every rank.
template <typename T>
void send_tokens(const MoeDims& dims, const MoeActivations<T>& a, ExpertParallel<T>& ep,
                 const T* src) {
  const int64_t D = dims.d, us = (ep.so[dims.ep - 1] + ep.sc[dims.ep - 1]) / D;
  T* sent = ep.sent.data();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < us; ++k)
    std::copy_n(src + static_cast<int64_t>(a.sent_tokens[k]) * D, D, sent + k * D);
  ep.group->alltoallv(sent, ep.sc.data(), ep.so.data(), ep.recv.data(), ep.rc.data(), ep.ro.data());
}

// ep.recv (overwritten) = per received token row, Σ over its local rows (in local expert order)
// of scale[r]·rows[r] (scale null: 1) — a token's results pre-combined on this rank.
template <typename T>
void combine_local(const MoeDims& dims, const MoeActivations<T>& a, ExpertParallel<T>& ep,
                   const T* rows, const T* scale) {
  const int64_t D = dims.d;
  T* out = ep.recv.data();
  std::fill_n(out, tokens_received(dims, ep) * D, T(0));
  for (int64_t j = 0; j < dims.e_local(); ++j) {  // one row per token within an expert: no race
#pragma omp parallel for schedule(static)
    for (int64_t r = a.local_offsets[j]; r < a.local_offsets[j + 1]; ++r) {
      const T g = scale != nullptr ? scale[r] : T(1);
      T* o = out + a.recv_row[r] * D;
      const T* x = rows + r * D;
      for (int64_t c = 0; c < D; ++c) o[c] += g * x[c];
    }
  }
}

// ep.recv's pre-combined rows back where they came from, dst[N,D] += them rank by rank (a
// token's sum in a fixed order).
template <typename T>
void return_tokens(const MoeDims& dims, const MoeActivations<T>& a, ExpertParallel<T>& ep, T* dst) {
  const int64_t D = dims.d;
  T* back = ep.sent.data();
  ep.group->alltoallv(ep.recv.data(), ep.rc.data(), ep.ro.data(), back, ep.sc.data(), ep.so.data());
  for (int64_t i = 0; i < dims.ep; ++i) {  // a token appears once per rank: no race
    const int64_t k0 = ep.so[i] / D, k1 = k0 + ep.sc[i] / D;
#pragma omp parallel for schedule(static)
    for (int64_t k = k0; k < k1; ++k) {
      T* d = dst + static_cast<int64_t>(a.sent_tokens[k]) * D;
      const T* b = back + k * D;
      for (int64_t c = 0; c < D; ++c) d[c] += b[c];
    }
  }
}

// Row `row` of the experts' output gradients from its token's dy_t and gate g (gated_row_backward):
// written to dy_rows (fp32), or with bf16_activations to s.dy16 in bf16. Returns ∂loss/∂g.
template <typename T>
T gated_row_backward_to(const MoeDims& dims, const T* dyt, T g, const T* ys, MoeScratch<T>& s,
                        T* dy_rows, int64_t row) {
  const int64_t D = dims.d;
  if constexpr (std::is_same_v<T, float>) {
    if (dims.bf16_activations)
      return gated_row_backward_bf16(dyt, g, ys + row * D, s.dy16.data() + row * D, D);
  }
  return gated_row_backward(dyt, g, ys + row * D, dy_rows + row * D, D);
}

// ---- The stages of one layer ------------------------------------------------------------------

// Dispatch, experts, combine on one rank: rows gathered in expert order, combined token-major,
// a token's rows in expert order (the summation order is fixed).
template <typename T>
void routed_forward(const MoeDims& dims, const MoeWeights<T>& w, const T* h, int64_t n,
                    MoeActivations<T>& a, T* y) {
  const int64_t D = dims.d;
  const RoutingPlan<T>& p = a.plan;
  T* xs = a.xs.data();
  if constexpr (std::is_same_v<T, float>)
    if (dims.bf16_activations) gather_rows_bf16(a.x16.data(), h, p.token_of_row.data(), p.rows, D);
  if (!dims.bf16_activations) gather_rows(xs, h, p.token_of_row.data(), p.rows, D);
  a.forward_times.experts_s = experts_forward(dims, w, p.expert_offsets.data(), xs, a, a.ys.data());
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
}

// The same over the expert-parallel group: tokens out, expanded to this rank's experts' rows
// (xl), the experts, their results pre-combined per token and sent back, summed rank by rank.
template <typename T>
void routed_forward_parallel(const MoeDims& dims, const MoeWeights<T>& w, const T* h, int64_t n,
                             MoeActivations<T>& a, ExpertParallel<T>& ep, T* y) {
  const int64_t D = dims.d;
  Stopwatch clock;
  plan_exchange(dims, a, ep);
  send_tokens(dims, a, ep, h);
  const int64_t ml = a.local_offsets[dims.e_local()];
  const T* recv = ep.recv.data();
  T* xl = a.xl.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < ml; ++r) {
    const T* src = recv + a.recv_row[r] * D;
    if constexpr (std::is_same_v<T, float>) {
      if (dims.bf16_activations) {
        to_bf16_row(src, a.x16.data() + r * D, D);
        continue;
      }
    }
    std::copy_n(src, D, xl + r * D);
  }
  a.exchange.exchange_s += clock.lap();
  a.forward_times.experts_s = experts_forward(dims, w, a.local_offsets.data(), xl, a, a.ys.data());
  clock.lap();
  combine_local(dims, a, ep, a.ys.data(), a.gate_local.data());
  std::fill_n(y, n * D, T(0));
  return_tokens(dims, a, ep, y);
  a.exchange.exchange_s += clock.lap();
  const int64_t me = dims.ep_rank, pair_bytes = sizeof(int64_t) + sizeof(T);
  a.exchange.rows = ml;
  a.exchange.tokens = tokens_received(dims, ep);
  a.exchange.bytes_sent = (away(ep.sc, me) + away(ep.rc, me)) * static_cast<int64_t>(sizeof(T)) +
                          away(ep.psc, me) * pair_bytes;
}

// Backward on one rank: per row the gate gradient and the expert-order output gradient, the
// experts, then each token's input gradient summed over its rows in expert order.
template <typename T>
void routed_backward(const MoeDims& dims, const MoeWeights<T>& w, const MoeGrads<T>& g, int64_t n,
                     MoeActivations<T>& a, MoeScratch<T>& s, const T* dy, T* dh) {
  const int64_t D = dims.d;
  const RoutingPlan<T>& p = a.plan;
  const T* ys = a.ys.data();
  T* dys = s.dys.data();
  T* dgate_row = s.dgate_row.data();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < p.rows; ++row) {
    dgate_row[row] = gated_row_backward_to(dims, dy + static_cast<int64_t>(p.token_of_row[row]) * D,
                                           p.gate_of_row[row], ys, s, dys, row);
  }
  a.backward_times.experts_s =
      experts_backward(dims, w, g, p.expert_offsets.data(), a.xs.data(), a, s, dys, s.dxs.data());
  const T* dxs = s.dxs.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    T* dht = dh + t * D;
    for (int64_t q = p.token_offsets[t]; q < p.token_offsets[t + 1]; ++q) {
      const T* src = dxs + static_cast<int64_t>(p.token_rows[q]) * D;
      for (int64_t j = 0; j < D; ++j) dht[j] += src[j];
    }
  }
}

// The same over the group: each token's output gradient out once per rank; there, per local
// row, the gate gradient and the gated output gradient; the experts; the input gradients
// pre-combined per token and the gate gradients sent back.
template <typename T>
void routed_backward_parallel(const MoeDims& dims, const MoeWeights<T>& w, const MoeGrads<T>& g,
                              MoeActivations<T>& a, MoeScratch<T>& s, ExpertParallel<T>& ep,
                              const T* dy, T* dh) {
  const int64_t D = dims.d, F = dims.f;
  Stopwatch clock;
  exchange_geometry(dims, a, ep);
  const int64_t ml = a.local_offsets[dims.e_local()];
  ensure_rows(dims, s.dxl, ml, D);
  ensure_rows(dims, s.dact, ml, F);
  if (dims.bf16_activations) {
    ensure_rows(dims, s.dy16, ml, D);
  } else {
    ensure_rows(dims, s.dyl, ml, D);
    ensure_rows(dims, s.dhu, ml, 2 * F);
  }
  send_tokens(dims, a, ep, dy);
  const T* recv = ep.recv.data();
  const T* ys = a.ys.data();
  T* dyl = s.dyl.data();
  T* dgate = ep.pairs.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < ml; ++r) {
    dgate[a.recv_pair[r]] =
        gated_row_backward_to(dims, recv + a.recv_row[r] * D, a.gate_local[r], ys, s, dyl, r);
  }
  a.exchange.exchange_s += clock.lap();
  a.backward_times.experts_s =
      experts_backward(dims, w, g, a.local_offsets.data(), a.xl.data(), a, s, dyl, s.dxl.data());
  clock.lap();
  combine_local(dims, a, ep, s.dxl.data(), static_cast<const T*>(nullptr));
  return_tokens(dims, a, ep, dh);
  ep.group->alltoallv(dgate, ep.prc.data(), ep.pro.data(), s.dgate_row.data(), ep.psc.data(),
                      ep.pso.data());
  a.exchange.exchange_s += clock.lap();
  const int64_t me = dims.ep_rank;
  a.exchange.bytes_sent +=
      (away(ep.sc, me) + away(ep.rc, me) + away(ep.prc, me)) * static_cast<int64_t>(sizeof(T));
}

}  // namespace

template <typename T>
RoutingStats moe_forward(const MoeDims& dims, const MoeWeights<T>& w, Router<T>& router,
                         const RouteCall<T>& call, const T* h, int64_t n, MoeActivations<T>& a,
                         T* y, ExpertParallel<T>* ep) {
  const int64_t D = dims.d, E = dims.e, Fs = dims.f_shared;
  SY_CHECK(!dims.bf16_activations || w.bf16 != nullptr,
           "moe_forward: bf16 activations need the bf16 expert GEMMs (MoeWeights::bf16)");
  Stopwatch clock;
  MoeTimes& tm = a.forward_times;
  tm = MoeTimes{};
  // Router: z[N,E] = h · W_rᵀ, then the plan, as rows.
  gemm(false, true, n, E, D, T(1), h, D, w.router, D, T(0), a.logits.data(), E);
  const RoutingStats st = router.route(a.logits.data(), n, call, a.plan);
  tm.router_s = clock.lap();
  // The routed experts: here, or over the expert-parallel group.
  a.exchange = ExchangeStats{};
  if (expert_parallel(dims, ep))
    routed_forward_parallel(dims, w, h, n, a, *ep, y);
  else
    routed_forward(dims, w, h, n, a, y);
  tm.total_s = tm.router_s + clock.lap();
  // Shared experts, ungated, on every token.
  for (int64_t j = 0; j < dims.n_shared; ++j) {
    swiglu_ffn_forward(y, T(1), a.shared_hu.data() + j * dims.n_max * 2 * Fs,
                       a.shared_act.data() + j * dims.n_max * Fs, h,
                       w.shared_gate_up + j * 2 * Fs * D, w.shared_down + j * D * Fs, n, D, Fs,
                       w.bf16);
  }
  tm.shared_s = clock.lap();
  tm.total_s += tm.shared_s;
  return st;
}

template <typename T>
void moe_backward(const MoeDims& dims, const MoeWeights<T>& w, const MoeGrads<T>& g,
                  Router<T>& router, const T* h, int64_t n, MoeActivations<T>& a, MoeScratch<T>& s,
                  const T* dy, T aux_scale, T* dh, ExpertParallel<T>* ep) {
  const int64_t D = dims.d, E = dims.e, Fs = dims.f_shared;
  Stopwatch clock;
  MoeTimes& tm = a.backward_times;
  tm = MoeTimes{};
  // The routed experts: the gate gradients (dgate_row) and dh += their input gradients.
  if (expert_parallel(dims, ep))
    routed_backward_parallel(dims, w, g, a, s, *ep, dy, dh);
  else
    routed_backward(dims, w, g, n, a, s, dy, dh);
  tm.total_s = clock.lap();
  // Router backward: dz, then the router weight and input gradients.
  T* dz = s.dz.data();
  router.backward(a.logits.data(), a.plan, s.dgate_row.data(), aux_scale, dz);
  gemm(true, false, E, D, n, T(1), dz, E, h, D, T(1), g.router, D);
  gemm(false, false, n, D, E, T(1), dz, E, w.router, D, T(1), dh, D);
  tm.router_s = clock.lap();
  // Shared experts backward.
  for (int64_t j = 0; j < dims.n_shared; ++j) {
    swiglu_ffn_backward(
        dh, T(1), g.shared_gate_up + j * 2 * Fs * D, g.shared_down + j * D * Fs, T(1),
        s.dshared_hu.data(), s.dshared_act.data(), dy, h,
        a.shared_hu.data() + j * dims.n_max * 2 * Fs, a.shared_act.data() + j * dims.n_max * Fs,
        w.shared_gate_up + j * 2 * Fs * D, w.shared_down + j * D * Fs, n, D, Fs, w.bf16);
  }
  tm.shared_s = clock.lap();
  tm.total_s += tm.router_s + tm.shared_s;
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
