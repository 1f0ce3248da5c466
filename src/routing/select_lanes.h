// Internal to src/routing: top-K selection for 16 tokens at once, one token per float lane, over
// values in the transposed layout (one vector per expert, experts fed in ascending index order),
// and the token-major store of the selected slots. Used by the top-K router and by Sinkhorn (on
// its double values rounded to float).
//
// The selection keeps the K largest of each lane as packed integer keys (value and expert in one
// int32), so that an insertion is K integer max/min pairs; the keys drop the values' lowest bits,
// and a per-lane check (exact()) says where the result is nonetheless exactly that of
// detail::select_top_k (routing/select.h): the same experts in the same order, ties to the lower
// index. Callers re-select the other lanes (ties, near-ties, NaN) with select_top_k.
//
// Threading: values on the stack of the caller; any thread.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

// AVX-512: LaneTopKeys16 and store_token_major.
#if defined(__AVX512F__)
#include "routing/avx512/select_lanes.h"
#endif

namespace sy::detail {

// The lane kernels are templates on K (their per-lane lists live in registers): calls
// f(std::integral_constant<int, K>{}) for 1 ≤ K ≤ kLaneMaxK and returns true, else false.
constexpr int kLaneMaxK = 8;

template <int KK = 1, typename F>
inline bool with_lane_k(int64_t K, F&& f) {
  if constexpr (KK > kLaneMaxK) {
    return false;
  } else {
    if (K == KK) {
      f(std::integral_constant<int, KK>{});
      return true;
    }
    return with_lane_k<KK + 1>(K, std::forward<F>(f));
  }
}

}  // namespace sy::detail
