// Internal to src/routing: the dropless dispatch plan shared by routers that pick K experts per
// token without capacity (hash, Sinkhorn). Top-K builds its own, with capacity and in parallel.
#pragma once

#include <algorithm>
#include <cstdint>

namespace sy::detail {

// A counting sort of the slots s = t·K + k by expert, stable (token order within an expert):
// load[E], offsets[E+1] (rows of expert i are [offsets[i], offsets[i+1])), slot_of_row[slots].
// offsets[i+1] starts at expert i's first row and serves as its cursor: after the scatter it
// has advanced to the end of expert i, which is what it must hold. Sequential integer work:
// identical for any thread count.
inline void plan_by_expert(const int32_t* expert, int64_t slots, int64_t n_experts, int64_t* load,
                           int64_t* offsets, int32_t* slot_of_row) {
  std::fill(load, load + n_experts, int64_t(0));
  for (int64_t s = 0; s < slots; ++s) ++load[expert[s]];
  offsets[0] = 0;
  offsets[1] = 0;
  for (int64_t i = 1; i < n_experts; ++i) offsets[i + 1] = offsets[i] + load[i - 1];
  for (int64_t s = 0; s < slots; ++s)
    slot_of_row[offsets[expert[s] + 1]++] = static_cast<int32_t>(s);
}

}  // namespace sy::detail
