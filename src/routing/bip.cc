// BIP dual coordinate minimisation and routing by expert prices. The math is in bip.h.
#include "routing/bip.h"

#include <omp.h>

#include <algorithm>
#include <functional>

#include "core/error.h"

namespace sy {

BipMode parse_bip_mode(const std::string& s) {
  if (s == "as-published") return BipMode::kAsPublished;
  if (s == "causal") return BipMode::kCausal;
  fail(fmt::format("router.bip_mode must be one of \"as-published\", \"causal\", got \"{}\"", s));
}

int64_t bip_capacity(int64_t n, int64_t m, int64_t k) {
  SY_CHECK(m >= 1 && k >= 1 && n >= 0,
           "bip_capacity: need n ≥ 0, m ≥ 1, k ≥ 1, got n={}, m={}, k={}", n, m, k);
  return (k * n + m - 1) / m;
}

int64_t bip_scratch_size(int64_t n, int64_t m, int threads) {
  return static_cast<int64_t>(std::max(threads, 1)) * std::max(n, m);
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

template <typename T>
int usable_threads(const BipShape& sh, int64_t scratch_size) {
  const int64_t per = std::max(sh.n, sh.m);
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), scratch_size / per)));
}

}  // namespace

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
void bip_iterate(const BipShape& sh, const T* s, int iterations, T* q, T* p, T* scratch,
                 int64_t scratch_size, double* dual) {
  bip_validate(sh, "bip_iterate");
  SY_CHECK(iterations >= 1, "bip_iterate: iterations must be ≥ 1, got {}", iterations);
  SY_CHECK(scratch_size >= bip_scratch_size(sh.n, sh.m, 1),
           "bip_iterate: scratch_size must be ≥ bip_scratch_size(n, m, 1) = {}, got {}",
           bip_scratch_size(sh.n, sh.m, 1), scratch_size);
  const int64_t n = sh.n, m = sh.m, K = sh.k, c = sh.capacity;
  const int64_t stride = std::max(n, m);
  const int threads = usable_threads<T>(sh, scratch_size);
  for (int it = 0; it < iterations; ++it) {
#pragma omp parallel num_threads(threads)
    {
      T* v = scratch + static_cast<int64_t>(omp_get_thread_num()) * stride;
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
#define SY_INSTANTIATE(T)                                                                     \
  template void bip_iterate<T>(const BipShape&, const T*, int, T*, T*, T*, int64_t, double*); \
  template double bip_dual_objective<T>(const BipShape&, const T*, const T*, const T*);       \
  template void bip_route<T>(const BipShape&, const T*, const T*, int32_t*);                  \
  template void bip_step<T>(BipMode, const BipShape&, const T*, int, T*, T*, T*, int64_t,     \
                            int32_t*, double*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace sy
