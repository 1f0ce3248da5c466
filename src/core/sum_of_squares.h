// Σ x² of one array on the calling thread, in double. Header-only; no state, any thread.
#pragma once

#include <array>
#include <cstdint>

namespace sy {

// Σ x[i]² over [0, n), accumulated in double. Read as kStreams interleaved sequential streams
// (one stream per core reads ≈ 15 GB/s from memory on the machines measured, four ≈ 25), each
// with 16 running sums, so the loop is not one chain of dependent additions (it would run at
// the adder's latency); the sums are added in a fixed order, so the result depends only on x and
// n. The same code serves arrays in cache (an expert's gradient right after its GEMM) and the
// per-thread shares of a parallel pass (train/optimizer.h: sum_of_squares).
template <typename T>
double sum_of_squares_serial(const T* x, int64_t n) {
  constexpr int kStreams = 4, kLanes = 16;
  const int64_t len = n / (kStreams * kLanes) * kLanes;  // per stream
  std::array<std::array<double, kLanes>, kStreams> acc{};
  for (int64_t i = 0; i < len; i += kLanes)
    for (int k = 0; k < kStreams; ++k) {
      const T* p = x + k * len + i;
      for (int j = 0; j < kLanes; ++j) acc[k][j] += static_cast<double>(p[j]) * p[j];
    }
  double s = 0;
  for (int64_t i = kStreams * len; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  for (const auto& a : acc)
    for (double v : a) s += v;
  return s;
}

}  // namespace sy
