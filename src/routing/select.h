// Internal to src/routing: top-K selection over one token's E values, shared by the routers that
// select per token (top-K, Sinkhorn, BIP).
#pragma once

#include <cstdint>

namespace sy::detail {

// Selection in one pass over the E experts: et[0..K) and vals[0..K) hold the best so far in
// descending order. A later expert displaces only on a strictly greater value, so ties go to the
// lower index: the same experts, in the same order, as K repeated arg-max scans, in O(E·K) worst
// case but usually O(E) (most experts fail the first comparison).
constexpr int64_t kMaxInsertK = 32;  // beyond it, repeated arg-max (vals lives on the stack)

template <typename T, typename Value>
inline void select_top_k(int64_t E, int64_t K, const Value& value, int32_t* et) {
  if (K > kMaxInsertK) {
    for (int64_t k = 0; k < K; ++k) {
      int32_t best = -1;
      T best_v = 0;
      for (int64_t i = 0; i < E; ++i) {
        bool taken = false;
        for (int64_t j = 0; j < k; ++j) taken |= (et[j] == i);
        if (taken) continue;
        const T v = value(i);
        if (best < 0 || v > best_v) {
          best = static_cast<int32_t>(i);
          best_v = v;
        }
      }
      et[k] = best;
    }
    return;
  }
  T vals[kMaxInsertK];
  int64_t cnt = 0;
  for (int64_t i = 0; i < E; ++i) {
    const T v = value(i);
    // vals[K-1] is written before it is read: cnt == K means vals[0..K-1] are filled.
    // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
    if (cnt == K && !(v > vals[K - 1])) continue;
    int64_t j = cnt < K ? cnt++ : K - 1;
    for (; j > 0 && v > vals[j - 1]; --j) {
      vals[j] = vals[j - 1];
      et[j] = et[j - 1];
    }
    vals[j] = v;
    et[j] = static_cast<int32_t>(i);
  }
}

}  // namespace sy::detail
