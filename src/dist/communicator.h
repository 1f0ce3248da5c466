// The communicator: how data-parallel ranks share routing statistics and gradients. Passed in,
// never global. It is the Reducer (switchyard/reducer.h) the balancer sums its statistics through,
// plus what the trainer needs besides: a barrier, a job-wide abort, a description.
//
// Two implementations: SingleProcessCommunicator (every collective is the identity) and, when
// the build found Open MPI, MpiCommunicator (dist/mpi_communicator.h). make_communicator() picks
// MPI when the process was started by an MPI launcher (`mpirun -np R switchyard train ...`).
//
// Guarantees: the Reducer's (exact integer sums, bit-identical float sums on every rank, so
// replicas never drift; collectives in the same order on every rank).
// Not thread-safe: call from one thread (the trainer's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "switchyard/reducer.h"

namespace sy {

class Communicator : public Reducer {
 public:
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
