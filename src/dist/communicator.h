// The communicator: how data-parallel ranks share routing statistics and gradients. Passed in,
// never global.
//
// Two implementations: SingleProcessCommunicator (every collective is the identity) and, when
// the build found Open MPI, MpiCommunicator (dist/mpi_communicator.h). make_communicator() picks
// MPI when the process was started by an MPI launcher (`mpirun -np R switchyard train ...`).
//
// Guarantees every implementation keeps:
// * sums of integer counts are exact, so global-batch statistics are identical for any layout of
//   ranks;
// * floating-point sums give bit-identical results on every rank (so replicas never drift);
// * collectives are called by every rank in the same order (the caller's duty).
// Not thread-safe: call from one thread (the trainer's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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
  // Every rank waits until all have arrived.
  virtual void barrier() = 0;
  // Ends every rank of the job at once (after an error on one rank, so the others do not wait
  // forever in a collective). Does not return.
  [[noreturn]] virtual void abort(int code) = 0;
  // "1 process" or "MPI, 4 ranks (rank 0 on host x)".
  virtual std::string describe() const = 0;
};

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(int64_t* /*x*/, int64_t /*n*/) override {}
  void allreduce_sum(float* /*x*/, int64_t /*n*/) override {}
  void allreduce_sum(double* /*x*/, int64_t /*n*/) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
  std::string describe() const override { return "1 process"; }
};

// A collective: how many ranks see their digest differ from the others' (0 when every rank holds
// the same value). Compares two 40-bit hashes of the digest through one exact integer sum.
int64_t ranks_disagreeing(Communicator& comm, uint64_t digest);

// True when this build has the MPI communicator.
bool mpi_available();
// True when the process was started by an MPI launcher (Open MPI's or a PMI/PMIx one).
bool launched_by_mpi();
// The MPI communicator when launched by mpirun (initialising MPI), else the single-process one.
// Launched by mpirun in a build without MPI is an error naming the fix. Call once per process.
std::unique_ptr<Communicator> make_communicator();

}  // namespace sy
