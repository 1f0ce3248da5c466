// Internal to src/routing: the reference softmax of one row of router logits, the order every
// router's scalar path and the 16-lane kernels (routing/transposed.h, the top-K lane kernel)
// reproduce float for float: m = max_i z_i; e_i = fast_exp(z_i − m); sum = Σ_i e_i with i
// ascending; s_i = e_i · (1/sum).
//
// Threading: a plain function on caller-owned rows; any thread.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/vec_math.h"

namespace sy::detail {

// The row's maximum and sum of exponentials: lse = max + log(sum).
template <typename T>
struct RowSoftmax {
  T max;
  T sum;
};

// s[0..E) = softmax(z[0..E)); s may not alias z.
template <typename T>
inline RowSoftmax<T> softmax_row(const T* z, int64_t E, T* s) {
  T m = z[0];
  for (int64_t i = 1; i < E; ++i) m = std::max(m, z[i]);
  T sum = 0;
  for (int64_t i = 0; i < E; ++i) sum += (s[i] = fast_exp(z[i] - m));
  const T inv = T(1) / sum;
  for (int64_t i = 0; i < E; ++i) s[i] *= inv;
  return {m, sum};
}

}  // namespace sy::detail
