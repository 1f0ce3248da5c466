// Random instances for the BIP and oracle tests: scores = softmax of standard normal logits.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace sy::bip_testing {

// Row-wise softmax of logits[N,E] (in place).
inline void softmax_rows(std::vector<double>& x, int64_t n, int64_t m) {
  for (int64_t t = 0; t < n; ++t) {
    double* r = x.data() + t * m;
    double mx = r[0], sum = 0;
    for (int64_t i = 1; i < m; ++i) mx = std::max(mx, r[i]);
    for (int64_t i = 0; i < m; ++i) sum += (r[i] = std::exp(r[i] - mx));
    for (int64_t i = 0; i < m; ++i) r[i] /= sum;
  }
}

inline std::vector<double> normal_logits(int64_t n, int64_t m, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> z(n * m);
  for (double& v : z) v = rng.normal();
  return z;
}

inline std::vector<double> random_scores(int64_t n, int64_t m, uint64_t seed) {
  std::vector<double> s = normal_logits(n, m, seed);
  softmax_rows(s, n, m);
  return s;
}

}  // namespace sy::bip_testing
