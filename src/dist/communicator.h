// The communicator: how ranks share routing statistics and gradients. Passed in, never global.
//
// This build has the single-process communicator (every collective is the identity); the MPI
// communicator implements the same interface. Sums of integer counts are exact, so global-batch
// statistics are identical for any layout of ranks. Not thread-safe: call from one thread.
#pragma once

#include <cstdint>

namespace sy {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: x[i] ← Σ over ranks of x[i].
  virtual void allreduce_sum(int64_t* x, int64_t n) = 0;
  virtual void allreduce_sum(float* x, int64_t n) = 0;
  virtual void allreduce_sum(double* x, int64_t n) = 0;
};

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(int64_t* /*x*/, int64_t /*n*/) override {}
  void allreduce_sum(float* /*x*/, int64_t /*n*/) override {}
  void allreduce_sum(double* /*x*/, int64_t /*n*/) override {}
};

}  // namespace sy
