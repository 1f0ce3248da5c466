// Helpers shared by the kernel tests: seeded inputs, float/double conversion, the finite-difference
// check with the tolerances every kernel test uses. Test-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/gradcheck.h"
#include "core/rng.h"

namespace sy::testing {

inline std::vector<double> randn(std::size_t n, uint64_t seed, double scale = 1.0) {
  std::vector<double> v(n);
  fill_normal(v, seed, scale);
  return v;
}

inline std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// max |got − want| / max |want|: a norm-wise relative error, so that entries near zero do not
// dominate the comparison.
inline double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / std::max(scale, 1e-30);
}

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// Finite differences with eps = 1e-5: truncation error ~1e-10, round-off ~2e-10 for losses of
// order 10–100. Gradients below 1e-3 are compared absolutely (to 1e-9), so that exact or near
// zeros (e.g. the first query of a causal attention) do not turn round-off into a large relative
// error.
constexpr double kGradTolerance = 1e-6;

inline void expect_gradient(const std::string& what, const std::function<double()>& loss,
                            std::vector<double>& x, const std::vector<double>& grad,
                            std::size_t max_checks = 400) {
  const GradcheckResult r =
      check_gradient(loss, x.data(), x.size(), grad.data(), 1e-5, max_checks, 1e-3);
  EXPECT_LT(r.max_error, kGradTolerance) << what << ": " << describe(r);
}

// Backward functions accumulate: a second call from the same inputs must double the gradient.
inline void expect_doubled(const std::string& what, const std::vector<double>& once,
                           const std::vector<double>& twice) {
  for (std::size_t i = 0; i < once.size(); ++i) {
    ASSERT_NEAR(twice[i], 2 * once[i], 1e-12 * (1 + std::abs(once[i]))) << what << " at " << i;
  }
}

}  // namespace sy::testing
