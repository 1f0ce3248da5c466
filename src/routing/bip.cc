// BIP dual coordinate minimisation and routing by expert prices. The math is in bip.h.
#include "routing/bip.h"

#include <omp.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "routing/kth_select.h"
#include "routing/select.h"
#include "routing/transposed.h"

namespace sy {

int64_t bip_capacity(int64_t n, int64_t m, int64_t k) {
  SY_CHECK(m >= 1 && k >= 1 && n >= 0,
           "bip_capacity: need n ≥ 0, m ≥ 1, k ≥ 1, got n={}, m={}, k={}", n, m, k);
  return (k * n + m - 1) / m;
}

namespace {
// Per-thread scratch: two columns of N values (or rows of E), each with one vector of slack for
// the 16-lane compressing stores: the positive margins, and the selection's candidates.
int64_t per_column(int64_t n, int64_t m) { return std::max(n, m) + 16; }
int64_t per_thread_scratch(int64_t n, int64_t m) { return 2 * per_column(n, m); }
// Scratch layout: [sT: E·ld, aligned to 64 bytes within kAlignSlack spare elements][per thread].
int64_t transposed_area(int64_t n, int64_t m) {
  return m * detail::padded_ld(n) + detail::kAlignSlack;
}
}  // namespace

int64_t bip_transposed_ld(int64_t n) { return detail::padded_ld(n); }

int64_t bip_scratch_size(int64_t n, int64_t m, int threads) {
  return transposed_area(n, m) +
         static_cast<int64_t>(std::max(threads, 1)) * per_thread_scratch(n, m);
}

BipShape bip_shape(int64_t n, int64_t m, int64_t k) { return {n, m, k, bip_capacity(n, m, k)}; }

void bip_validate(const BipShape& sh, const char* where) {
  SY_CHECK(sh.n >= 1, "{}: n (tokens) must be ≥ 1, got {}", where, sh.n);
  SY_CHECK(sh.m >= 1, "{}: m (experts) must be ≥ 1, got {}", where, sh.m);
  SY_CHECK(sh.k >= 1 && sh.k <= sh.m, "{}: k must be in [1, m={}], got {}", where, sh.m, sh.k);
  SY_CHECK(sh.capacity >= 0 && sh.capacity * sh.m >= sh.k * sh.n,
           "{}: capacity must satisfy capacity·m ≥ k·n = {} (feasibility), got {}; use "
           "bip_capacity(n, m, k) = {}",
           where, sh.k * sh.n, sh.capacity, bip_capacity(sh.n, sh.m, sh.k));
}

namespace {

// The r-th largest (0-based r) of v[0..len), reordering v; the smallest when r ≥ len.
template <typename T>
inline T rth_largest(T* v, int64_t len, int64_t r) {
  if (r >= len) return *std::min_element(v, v + len);
  std::nth_element(v, v + r, v + len, std::greater<T>());
  return v[r];
}

// The r-th largest (0-based) of the E values st[i] − q[i], for the small r of the row pass: one
// pass keeping the r+1 largest in descending order (most values fail the first comparison).
// The same value as rth_largest, without copying or partitioning.
constexpr int64_t kMaxInsertRank = 32;

template <typename T>
inline T rth_largest_of_row(const T* st, const T* q, int64_t m, int64_t r, T* v) {
  if (r >= m || r >= kMaxInsertRank) {
    for (int64_t i = 0; i < m; ++i) v[i] = st[i] - q[i];
    return rth_largest(v, m, r);
  }
  T best[kMaxInsertRank];
  const int64_t keep = r + 1;
  int64_t cnt = 0;
  for (int64_t i = 0; i < m; ++i) {
    const T x = st[i] - q[i];
    // best[r] is written before it is read: cnt == keep means best[0..r] are filled.
    // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
    if (cnt == keep && !(x > best[r])) continue;
    int64_t j = cnt < keep ? cnt++ : r;
    for (; j > 0 && x > best[j - 1]; --j) best[j] = best[j - 1];
    best[j] = x;
  }
  return best[r];
}

int usable_threads(const BipShape& sh, int64_t scratch_size) {
  const int64_t spare = scratch_size - transposed_area(sh.n, sh.m);
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(omp_get_max_threads(), spare / per_thread_scratch(sh.n, sh.m))));
}

}  // namespace

}  // namespace sy

// Float on AVX-512 (min(K, E − 1) + 1 ≤ 16): bip_passes_avx512, which bip_iterate and
// bip_iterate_transposed call in place of their scalar passes.
#if defined(__AVX512F__)
#include "routing/avx512/bip.h"
#endif

namespace sy {

template <typename T>
double bip_dual_objective(const BipShape& sh, const T* s, const T* p, const T* q) {
  const int64_t n = sh.n, m = sh.m;
  double slack = 0, sum_p = 0, sum_q = 0;
#pragma omp parallel for schedule(static) reduction(+ : slack, sum_p)
  for (int64_t t = 0; t < n; ++t) {
    const T* st = s + t * m;
    const double pt = static_cast<double>(p[t]);
    double acc = 0;
    for (int64_t i = 0; i < m; ++i)
      acc += std::max(0.0, static_cast<double>(st[i]) - pt - static_cast<double>(q[i]));
    slack += acc;
    sum_p += pt;
  }
  for (int64_t i = 0; i < m; ++i) sum_q += static_cast<double>(q[i]);
  return static_cast<double>(sh.k) * sum_p + static_cast<double>(sh.capacity) * sum_q + slack;
}

template <typename T>
double bip_dual_at_prices(const BipShape& sh, const T* s, const T* q) {
  const int64_t n = sh.n, m = sh.m, K = sh.k;
  double rows = 0, sum_q = 0;
#pragma omp parallel reduction(+ : rows)
  {
    std::vector<int32_t> top(K);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      const T* st = s + t * m;
      const auto v = [&](int64_t i) {
        return static_cast<double>(st[i]) - static_cast<double>(q[i]);
      };
      detail::select_top_k<double>(m, K, v, top.data());
      for (int64_t k = 0; k < K; ++k) rows += v(top[k]);
    }
  }
  for (int64_t i = 0; i < m; ++i) sum_q += static_cast<double>(q[i]);
  return static_cast<double>(sh.capacity) * sum_q + rows;
}

template <typename T>
void bip_iterate(const BipShape& sh, const T* s, int iterations, T* q, T* p, T* scratch,
                 int64_t scratch_size, double* dual) {
  bip_validate(sh, "bip_iterate");
  SY_CHECK(iterations >= 1, "bip_iterate: iterations must be ≥ 1, got {}", iterations);
  SY_CHECK(scratch_size >= bip_scratch_size(sh.n, sh.m, 1),
           "bip_iterate: scratch_size must be ≥ bip_scratch_size(n, m, 1) = {}, got {}",
           bip_scratch_size(sh.n, sh.m, 1), scratch_size);
  const int64_t n = sh.n, m = sh.m, K = sh.k, c = sh.capacity;
  const int threads = usable_threads(sh, scratch_size);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (use_avx512_passes(sh)) {
      float* sT = detail::align64(scratch);
      bip_passes_avx512(sh, s, sT, sT, iterations, q, p, scratch + transposed_area(n, m), threads,
                        dual);
      return;
    }
  }
#endif
  for (int it = 0; it < iterations; ++it) {
#pragma omp parallel num_threads(threads)
    {
      T* v = scratch + transposed_area(n, m) + omp_get_thread_num() * per_thread_scratch(n, m);
      // Row pass: p[t] = (K+1)-th largest of s[t,·] − q.
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n; ++t) {
        p[t] = rth_largest_of_row(s + t * m, q, m, K, v);
      }
      // Column pass (after the implicit barrier): q[i] = max(0, (c+1)-th largest of s[·,i] − p).
#pragma omp for schedule(static)
      for (int64_t i = 0; i < m; ++i) {
        if (c >= n) {
          q[i] = T(0);
          continue;
        }
        for (int64_t t = 0; t < n; ++t) v[t] = s[t * m + i] - p[t];
        q[i] = std::max(T(0), rth_largest(v, n, c));
      }
    }
    if (dual != nullptr) dual[it] = bip_dual_objective(sh, s, p, q);
  }
}

template <typename T>
void bip_iterate_transposed(const BipShape& sh, const T* sT, int iterations, T* q, T* p, T* scratch,
                            int64_t scratch_size) {
  bip_validate(sh, "bip_iterate_transposed");
  SY_CHECK(iterations >= 1, "bip_iterate_transposed: iterations must be ≥ 1, got {}", iterations);
  SY_CHECK(scratch_size >= bip_scratch_size(sh.n, sh.m, 1),
           "bip_iterate_transposed: scratch_size must be ≥ bip_scratch_size(n, m, 1) = {}, got {}",
           bip_scratch_size(sh.n, sh.m, 1), scratch_size);
  const int64_t n = sh.n, m = sh.m, K = sh.k, c = sh.capacity, ld = bip_transposed_ld(n);
  const int threads = usable_threads(sh, scratch_size);
  T* work = scratch + transposed_area(n, m);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (use_avx512_passes(sh)) {
      bip_passes_avx512(sh, nullptr, sT, nullptr, iterations, q, p, work, threads, nullptr);
      return;
    }
  }
#endif
  for (int it = 0; it < iterations; ++it) {
#pragma omp parallel num_threads(threads)
    {
      T* v = work + omp_get_thread_num() * per_thread_scratch(n, m);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < m; ++i) v[i] = sT[i * ld + t] - q[i];
        p[t] = rth_largest(v, m, K);
      }
#pragma omp for schedule(static)
      for (int64_t i = 0; i < m; ++i) {
        if (c >= n) {
          q[i] = T(0);
          continue;
        }
        for (int64_t t = 0; t < n; ++t) v[t] = sT[i * ld + t] - p[t];
        q[i] = std::max(T(0), rth_largest(v, n, c));
      }
    }
  }
}

template <typename T>
void bip_route(const BipShape& sh, const T* s, const T* q, int32_t* experts) {
  const int64_t n = sh.n, m = sh.m, K = sh.k;
  SY_DCHECK(K >= 1 && K <= m);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* st = s + t * m;
    int32_t* et = experts + t * K;
    // Repeated arg-max (K is small); strict '>' scanning upward makes the lower index win ties.
    for (int64_t k = 0; k < K; ++k) {
      int32_t best = -1;
      T best_v = 0;
      for (int64_t i = 0; i < m; ++i) {
        bool taken = false;
        for (int64_t j = 0; j < k; ++j) taken |= (et[j] == i);
        if (taken) continue;
        const T v = st[i] - q[i];
        if (best < 0 || v > best_v) {
          best = static_cast<int32_t>(i);
          best_v = v;
        }
      }
      et[k] = best;
    }
  }
}

template <typename T>
void bip_step(BipMode mode, const BipShape& sh, const T* s, int iterations, T* q, T* p, T* scratch,
              int64_t scratch_size, int32_t* experts, double* dual) {
  if (mode == BipMode::kAsPublished) {
    bip_iterate(sh, s, iterations, q, p, scratch, scratch_size, dual);
    bip_route(sh, s, q, experts);
  } else {
    bip_validate(sh, "bip_step");
    bip_route(sh, s, q, experts);
    bip_iterate(sh, s, iterations, q, p, scratch, scratch_size, dual);
  }
}

// NOLINTBEGIN(bugprone-macro-parentheses): T is a type, it cannot be parenthesized.
#define SY_INSTANTIATE(T)                                                                       \
  template void bip_iterate<T>(const BipShape&, const T*, int, T*, T*, T*, int64_t, double*);   \
  template void bip_iterate_transposed<T>(const BipShape&, const T*, int, T*, T*, T*, int64_t); \
  template double bip_dual_objective<T>(const BipShape&, const T*, const T*, const T*);         \
  template double bip_dual_at_prices<T>(const BipShape&, const T*, const T*);                   \
  template void bip_route<T>(const BipShape&, const T*, const T*, int32_t*);                    \
  template void bip_step<T>(BipMode, const BipShape&, const T*, int, T*, T*, T*, int64_t,       \
                            int32_t*, double*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
