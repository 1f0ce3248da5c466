// Elementwise math for vectorised loops (kernels, routers). Internal: not part of the public API.
//
// glibc's expf only vectorises under -ffast-math, which we do not use (it would break the
// max-subtracted softmax's handling of -inf and the reproducibility of reductions). exp() is on
// the hot path of softmax, cross-entropy over V and SiLU, so float gets a branch-free version that
// GCC turns into AVX-512 code; double (finite-difference tests only) keeps std::exp.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace sy::detail {

// e^x for float, relative error below 2e-7 on [-87, 88]; returns 0 below -87.3 (where the true
// value is subnormal), saturates at e^88.3 above, and propagates NaN. Ternaries rather than
// std::fmin/fmax because those only become vector min/max instructions under -ffast-math.
inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  // ln 2 split in two so that n·ln2 is subtracted exactly for |n| ≤ 128 (Cody–Waite).
  constexpr float kLn2Hi = 0.693145751953125f;
  constexpr float kLn2Lo = 1.428606765330187e-06f;
  // Adding 1.5·2^23 rounds to the nearest integer without a rounding-mode dependent call.
  constexpr float kRound = 12582912.0f;
  // NaN propagates, decided here: below, converting NaN to an integer would be undefined (and
  // clang's optimiser uses that).
  if (x != x) return x;
  const float hi = x > 88.3f ? 88.3f : x;  // keeps n ≤ 127 so 2^n stays a normal float
  const float xc = hi < -87.3f ? -87.3f : hi;
  // a·b + c: fused where the CPU has FMA, as the vector version always is — explicitly, so the
  // bits do not depend on whether the optimiser contracts (GCC does at -O2 and above, not -O1).
  const auto mul_add = [](float a, float b, float c) {
#if defined(__FMA__)
    return __builtin_fmaf(a, b, c);
#else
    return a * b + c;
#endif
  };
  const float n = mul_add(xc, kLog2e, kRound) - kRound;
  const float r = mul_add(-n, kLn2Lo, mul_add(-n, kLn2Hi, xc));  // |r| ≤ ln2/2
  // Taylor series of e^r to degree 7: truncation error (ln2/2)^8/8! ≈ 5e-9.
  float p = 1.f / 5040.f;
  p = mul_add(p, r, 1.f / 720.f);
  p = mul_add(p, r, 1.f / 120.f);
  p = mul_add(p, r, 1.f / 24.f);
  p = mul_add(p, r, 1.f / 6.f);
  p = mul_add(p, r, 0.5f);
  p = mul_add(p, r, 1.f);
  p = mul_add(p, r, 1.f);
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  const float result = p * std::bit_cast<float>(bits);
  return x < -87.3f ? 0.f : result;
}

inline double fast_exp(double x) { return std::exp(x); }

}  // namespace sy::detail

// AVX-512: fast_exp and fast_log on vectors, and <immintrin.h>.
#if defined(__AVX512F__)
#include "core/avx512/vec_math.h"
#endif
