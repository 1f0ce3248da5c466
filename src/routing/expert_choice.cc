// Expert Choice routing: per-group top-k of each expert's column, causal thresholds, backward.
// The math and conventions are in expert_choice.h and ALGORITHMS.md §4.
#include "routing/expert_choice.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <type_traits>

#include "core/error.h"
#include "core/vec_math.h"
#include "routing/kth_select.h"
#include "routing/softmax.h"
#include "routing/transposed.h"

namespace sy {

namespace {
#if defined(__AVX512F__)
constexpr bool kHaveAvx512 = true;
#else
constexpr bool kHaveAvx512 = false;
#endif
}  // namespace

void ec_validate(const ExpertChoiceOptions& o) {
  SY_CHECK(o.n_experts >= 1, "expert_choice: n_experts must be ≥ 1, got {}", o.n_experts);
  SY_CHECK(o.capacity_factor > 0 && std::isfinite(o.capacity_factor),
           "expert_choice: capacity_factor must be a finite number > 0, got {} (it is the "
           "average number of experts per token; c = K matches top-K compute)",
           o.capacity_factor);
  SY_CHECK(o.chunk >= 0, "expert_choice: chunk must be ≥ 0 (0 = the whole batch), got {}", o.chunk);
}

int64_t ec_capacity(const ExpertChoiceOptions& o, int64_t group_tokens) {
  const auto k = static_cast<int64_t>(
      std::ceil(static_cast<double>(group_tokens) * o.capacity_factor / o.n_experts));
  return std::min(group_tokens, k);
}

int64_t ec_rows_per_expert(const ExpertChoiceOptions& o, int64_t n_tokens) {
  if (n_tokens <= 0) return 0;
  const int64_t g = o.chunk > 0 ? std::min(o.chunk, n_tokens) : n_tokens;
  const int64_t full = n_tokens / g, rest = n_tokens % g;
  return full * ec_capacity(o, g) + (rest > 0 ? ec_capacity(o, rest) : 0);
}

template <typename T>
void ExpertChoiceBuffers<T>::resize(const ExpertChoiceOptions& o, int64_t n_max_tokens) {
  ec_validate(o);
  SY_CHECK(n_max_tokens >= 0 && n_max_tokens < (int64_t(1) << 31),
           "expert_choice: n_max must be in [0, 2^31), got {}", n_max_tokens);
  n_max = n_max_tokens;
  e = o.n_experts;
  n = 0;
  rows = 0;
  const int64_t g = o.chunk > 0 ? std::min(o.chunk, n_max) : n_max;
  scores.assign(n_max * e, T(0));
  dscores.assign(n_max * e, T(0));
  offsets.assign(e + 1, 0);
  // The causal forward may route every token to every expert: size rows for N·E.
  token_of_row.assign(n_max * e, 0);
  gate_of_row.assign(n_max * e, T(0));
  experts_per_token.assign(n_max, 0);
  histogram.fill(0);
  kth_value.assign(e, T(0));
  candidates.assign(g * e, 0);
  // The transposed scores of the float AVX-512 path (none for double).
  if (std::is_same_v<T, float> && kHaveAvx512) {
    scores_t.assign(e * detail::padded_ld(n_max) + detail::kAlignSlack, T(0));
    work.assign(g * e, T(0));
  }
}

namespace {

void check_call(const char* where, int64_t n, int64_t n_experts, int64_t n_max, int64_t e) {
  SY_CHECK(n_experts == e, "{}: options.n_experts must equal the buffers' E = {}, got {}", where, e,
           n_experts);
  SY_CHECK(n >= 0 && n <= n_max,
           "{}: n must be in [0, {}] (the size buffers were made for), got {}", where, n_max, n);
}

template <typename T>
void softmax_rows(const T* z, int64_t n, int64_t E, T* s) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) detail::softmax_row(z + t * E, E, s + t * E);
}

// Per-token expert counts and their histogram from the plan. Each thread counts its own range of
// tokens: an expert's rows are in token order, so the rows of the range are found by bisection.
template <typename T>
void count_experts_per_token(ExpertChoiceBuffers<T>& buf, int64_t n) {
  int32_t* cnt = buf.experts_per_token.data();
  const int32_t* tok = buf.token_of_row.data();
  const int64_t* offsets = buf.offsets.data();
  const int64_t E = buf.e;
  buf.histogram.fill(0);
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t t0 = n * id / nt, t1 = n * (id + 1) / nt;
    std::fill(cnt + t0, cnt + t1, 0);
    for (int64_t i = 0; i < E; ++i) {
      const int32_t* lo = std::lower_bound(tok + offsets[i], tok + offsets[i + 1], t0);
      const int32_t* hi = std::lower_bound(lo, tok + offsets[i + 1], t1);
      for (const int32_t* r = lo; r < hi; ++r) ++cnt[*r];
    }
    std::array<int64_t, 6> h{};
    for (int64_t t = t0; t < t1; ++t) ++h[std::min<int32_t>(cnt[t], 5)];
#pragma omp critical
    for (int b = 0; b < 6; ++b) buf.histogram[b] += h[b];  // integers: any order, same sums
  }
}

}  // namespace

}  // namespace sy

// Float on AVX-512: route_unshuffled_avx512, which ec_route_forward calls in place of its generic
// loop when the tokens are not shuffled.
#if defined(__AVX512F__)
#include "routing/avx512/expert_choice.h"
#endif

namespace sy {

template <typename T>
void ec_route_forward(const ExpertChoiceOptions& o, const T* z, int64_t n, const int32_t* perm,
                      ExpertChoiceBuffers<T>& buf) {
  check_call("ec_route_forward", n, o.n_experts, buf.n_max, buf.e);
  const int64_t E = o.n_experts;
  buf.n = n;
  T* S = buf.scores.data();
  const bool fast = std::is_same_v<T, float> && perm == nullptr && n > 0 && kHaveAvx512;
  if (!fast) softmax_rows(z, n, E, S);

  const int64_t per_expert = ec_rows_per_expert(o, n);
  int64_t* offsets = buf.offsets.data();
  for (int64_t i = 0; i <= E; ++i) offsets[i] = i * per_expert;
  buf.rows = E * per_expert;
  const int64_t G = n == 0 ? 1 : (o.chunk > 0 ? std::min(o.chunk, n) : n);
  SY_CHECK(n == 0 || G * E <= static_cast<int64_t>(buf.candidates.size()),
           "ec_route_forward: chunk must be the one the buffers were resized with, got {}",
           o.chunk);
  int32_t* token_of_row = buf.token_of_row.data();
  T* gate_of_row = buf.gate_of_row.data();

#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (fast) {
      route_unshuffled_avx512(o, z, n, G, buf);
      count_experts_per_token(buf, n);
      return;
    }
  }
#endif
  // Experts are independent: each owns its row segment, its candidate scratch and kth_value[i].
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < E; ++i) {
    int32_t* cand = buf.candidates.data() + i * G;
    int32_t* out = token_of_row + offsets[i];
    auto better = [&](int32_t a, int32_t b) {
      const T sa = S[a * E + i], sb = S[b * E + i];
      return sa > sb || (sa == sb && a < b);
    };
    double kth_acc = 0;
    int64_t w = 0;
    if (perm == nullptr) {
      // Unshuffled groups are contiguous token ranges. Select the k-th largest VALUE on a
      // contiguous copy of the column (no indirect comparator), then take, in token order, the
      // tokens above it and the first ties: the same set as the comparator's, already sorted.
      // The copy lives in dscores, the backward pass's scratch, which overwrites it.
      T* col = buf.dscores.data() + i * G;
      T kth = T(0);
      for (int64_t start = 0; start < n; start += G) {
        const int64_t tg = std::min(G, n - start);
        const int64_t k = ec_capacity(o, tg);
        for (int64_t p = 0; p < tg; ++p) col[p] = S[(start + p) * E + i];
        std::nth_element(col, col + (k - 1), col + tg, std::greater<T>());
        kth = col[k - 1];
        // Everything beyond position k−1 is ≤ kth, so the tokens strictly above kth are among
        // col[0..k−1); the rest of the k are ties with kth, taken by lower token index.
        int64_t ties = k;
        for (int64_t p = 0; p < k - 1; ++p) ties -= col[p] > kth;
        for (int64_t t = start; t < start + tg; ++t) {
          const T v = S[t * E + i];
          if (v > kth || (v == kth && ties-- > 0)) out[w++] = static_cast<int32_t>(t);
        }
        kth_acc += static_cast<double>(kth) * static_cast<double>(tg);
      }
      for (int64_t r = 0; r < w; ++r) gate_of_row[offsets[i] + r] = S[out[r] * E + i];
      buf.kth_value[i] = G >= n ? kth : static_cast<T>(kth_acc / static_cast<double>(n));
      continue;
    }
    for (int64_t start = 0; start < n; start += G) {
      const int64_t tg = std::min(G, n - start);
      const int64_t k = ec_capacity(o, tg);
      for (int64_t p = 0; p < tg; ++p)
        cand[p] = perm ? perm[start + p] : static_cast<int32_t>(start + p);
      std::nth_element(cand, cand + (k - 1), cand + tg, better);
      kth_acc += static_cast<double>(S[cand[k - 1] * E + i]) * static_cast<double>(tg);
      std::copy(cand, cand + k, out + w);
      w += k;
    }
    std::sort(out, out + w);
    for (int64_t r = 0; r < w; ++r) gate_of_row[offsets[i] + r] = S[out[r] * E + i];
    // One group: the k-th value itself, bit-exact (θ = kth_value then reproduces the selection).
    if (G >= n) {
      buf.kth_value[i] = n > 0 ? S[cand[ec_capacity(o, n) - 1] * E + i] : T(0);
    } else {
      buf.kth_value[i] = static_cast<T>(kth_acc / static_cast<double>(n));
    }
  }
  count_experts_per_token(buf, n);
}

template <typename T>
void ec_route_causal(const ExpertChoiceOptions& o, const T* z, int64_t n, const T* theta,
                     ExpertChoiceBuffers<T>& buf) {
  check_call("ec_route_causal", n, o.n_experts, buf.n_max, buf.e);
  const int64_t E = o.n_experts;
  buf.n = n;
  T* S = buf.scores.data();
  softmax_rows(z, n, E, S);
  int64_t* offsets = buf.offsets.data();
  // Pass 1: loads per expert (into offsets[i+1]), prefix sum; pass 2: fill in token order.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < E; ++i) {
    int64_t c = 0;
    for (int64_t t = 0; t < n; ++t) c += S[t * E + i] >= theta[i];
    offsets[i + 1] = c;
  }
  offsets[0] = 0;
  for (int64_t i = 0; i < E; ++i) offsets[i + 1] += offsets[i];
  buf.rows = offsets[E];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < E; ++i) {
    int64_t r = offsets[i];
    for (int64_t t = 0; t < n; ++t) {
      const T s = S[t * E + i];
      if (s >= theta[i]) {
        buf.token_of_row[r] = static_cast<int32_t>(t);
        buf.gate_of_row[r] = s;
        ++r;
      }
    }
  }
  count_experts_per_token(buf, n);
}

template <typename T>
void ec_update_thresholds(T* theta, const T* kth_values, int64_t n_experts, double decay) {
  SY_CHECK(decay >= 0 && decay < 1, "ec_update_thresholds: decay must be in [0, 1), got {}", decay);
  for (int64_t i = 0; i < n_experts; ++i)
    theta[i] = static_cast<T>(decay * static_cast<double>(theta[i]) +
                              (1 - decay) * static_cast<double>(kth_values[i]));
}

template <typename T>
void ec_route_backward(const ExpertChoiceOptions& o, const T* dgate_of_row,
                       ExpertChoiceBuffers<T>& buf, T* dz) {
  const int64_t E = o.n_experts, n = buf.n;
  SY_DCHECK(E == buf.e);
  const T* S = buf.scores.data();
  T* ds = buf.dscores.data();
  std::fill(ds, ds + n * E, T(0));
  // Each (token, expert) pair occurs in at most one row: the scatter has no conflicts.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < E; ++i)
    for (int64_t r = buf.offsets[i]; r < buf.offsets[i + 1]; ++r)
      ds[buf.token_of_row[r] * E + i] = dgate_of_row[r];
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* st = S + t * E;
    const T* dst = ds + t * E;
    T dot = 0;
    for (int64_t i = 0; i < E; ++i) dot += dst[i] * st[i];
    for (int64_t i = 0; i < E; ++i) dz[t * E + i] = st[i] * (dst[i] - dot);
  }
}

// NOLINTBEGIN(bugprone-macro-parentheses): T is a type, it cannot be parenthesized.
#define SY_INSTANTIATE(T)                                                                          \
  template struct ExpertChoiceBuffers<T>;                                                          \
  template void ec_route_forward<T>(const ExpertChoiceOptions&, const T*, int64_t, const int32_t*, \
                                    ExpertChoiceBuffers<T>&);                                      \
  template void ec_route_causal<T>(const ExpertChoiceOptions&, const T*, int64_t, const T*,        \
                                   ExpertChoiceBuffers<T>&);                                       \
  template void ec_update_thresholds<T>(T*, const T*, int64_t, double);                            \
  template void ec_route_backward<T>(const ExpertChoiceOptions&, const T*,                         \
                                     ExpertChoiceBuffers<T>&, T*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
