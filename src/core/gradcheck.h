// Finite-difference gradient checking, for tests. Double precision throughout.
//
// check_gradient(f, x, g) perturbs x[i] by ±eps, takes the central difference of the scalar f,
// and compares it with g[i]. Returns the worst error, measured as |g - fd| / max(|g| + |fd|, floor)
// so that tiny gradients are compared absolutely. The default floor (negative) is 1e-3 of the
// largest |g|: coordinates whose gradient is a thousand times below the largest are dominated
// by the central difference's own rounding noise (≈ 1e-16·|f| / eps). Not thread-safe (mutates x,
// restores it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"

namespace sy {

struct GradcheckResult {
  double max_error = 0;  // worst normalised error over checked coordinates
  std::size_t worst_index = 0;
  double worst_analytic = 0, worst_numeric = 0;
  std::size_t checked = 0;
};

// f must be a pure function of x (same x → same value). Checks every coordinate, or a seeded
// sample of max_checks of them when x is larger.
inline GradcheckResult check_gradient(const std::function<double()>& f, double* x, std::size_t n,
                                      const double* grad, double eps = 1e-6,
                                      std::size_t max_checks = 400, double floor = -1) {
  std::vector<std::size_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  if (n > max_checks) {
    Rng rng(1234);
    for (std::size_t i = 0; i < max_checks; ++i) std::swap(idx[i], idx[i + rng.below(n - i)]);
    idx.resize(max_checks);
  }
  if (floor < 0) {
    double gmax = 0;
    for (std::size_t i = 0; i < n; ++i) gmax = std::max(gmax, std::abs(grad[i]));
    floor = std::max(1e-3 * gmax, 1e-10);
  }
  GradcheckResult r;
  for (std::size_t i : idx) {
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double fp = f();
    x[i] = x0 - eps;
    const double fm = f();
    x[i] = x0;
    const double fd = (fp - fm) / (2 * eps);
    const double err = std::abs(grad[i] - fd) / std::max(std::abs(grad[i]) + std::abs(fd), floor);
    if (err > r.max_error) {
      r.max_error = err;
      r.worst_index = i;
      r.worst_analytic = grad[i];
      r.worst_numeric = fd;
    }
    ++r.checked;
  }
  return r;
}

inline std::string describe(const GradcheckResult& r) {
  return "max error " + std::to_string(r.max_error) + " at index " + std::to_string(r.worst_index) +
         " (analytic " + std::to_string(r.worst_analytic) + ", numeric " +
         std::to_string(r.worst_numeric) + ", " + std::to_string(r.checked) + " checked)";
}

// Fills v with seeded standard normals times scale.
inline void fill_normal(std::vector<double>& v, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  for (auto& x : v) x = rng.normal() * scale;
}

}  // namespace sy
