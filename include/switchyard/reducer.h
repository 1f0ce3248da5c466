// The reducer: the collectives load balancing needs (sums over data-parallel ranks), defined
// below routing so that the routing library does not depend on how ranks talk. dist/'s
// Communicator implements it (MPI or one process); a program that links only the routing library
// passes LocalReducer, or nothing (the balancer then uses one).
//
// Guarantees every implementation keeps (the balancer's global-batch statistics rely on them):
// * sums of integer counts are exact, so the statistics are identical for any layout of ranks;
// * floating-point sums give bit-identical results on every rank;
// * every rank calls the collectives in the same order (the caller's duty).
// Not thread-safe: call from one thread.
#pragma once

#include <cstdint>

namespace sy {

class Reducer {
 public:
  virtual ~Reducer() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: x[i] ← Σ over ranks of x[i].
  virtual void allreduce_sum(int64_t* x, int64_t n) = 0;
  virtual void allreduce_sum(float* x, int64_t n) = 0;
  virtual void allreduce_sum(double* x, int64_t n) = 0;
};

// One rank: every sum is the identity.
class LocalReducer final : public Reducer {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(int64_t* /*x*/, int64_t /*n*/) override {}
  void allreduce_sum(float* /*x*/, int64_t /*n*/) override {}
  void allreduce_sum(double* /*x*/, int64_t /*n*/) override {}
};

}  // namespace sy
