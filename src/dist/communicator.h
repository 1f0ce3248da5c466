// The communicator: how ranks share routing statistics, gradients and (expert parallelism) token
// rows. Passed in, never global. It is the Reducer (switchyard/reducer.h) the balancer sums its
// statistics through and the Exchange (core/exchange.h) the MoE layer swaps rows through, plus
// what the trainer needs besides: sub-groups (split), a barrier, a job-wide abort, a description.
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

#include "core/exchange.h"
#include "switchyard/reducer.h"

namespace sy {

class Communicator : public Reducer, public Exchange {
 public:
  int rank() const override = 0;  // one rank and size for both interfaces
  int size() const override = 0;
  // The sub-group of the ranks that pass the same color, ordered by key (then by rank): a
  // collective; every rank calls it. The result is independent of this communicator's lifetime
  // only for MPI's bookkeeping: destroy sub-groups before their parent.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
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
  void alltoall(const int64_t* send, int64_t* recv, int64_t n) override {
    local_.alltoall(send, recv, n);
  }
  void alltoallv(const float* send, const int64_t* sc, const int64_t* so, float* recv,
                 const int64_t* rc, const int64_t* ro) override {
    local_.alltoallv(send, sc, so, recv, rc, ro);
  }
  void alltoallv(const double* send, const int64_t* sc, const int64_t* so, double* recv,
                 const int64_t* rc, const int64_t* ro) override {
    local_.alltoallv(send, sc, so, recv, rc, ro);
  }
  void alltoallv(const int64_t* send, const int64_t* sc, const int64_t* so, int64_t* recv,
                 const int64_t* rc, const int64_t* ro) override {
    local_.alltoallv(send, sc, so, recv, rc, ro);
  }
  std::unique_ptr<Communicator> split(int /*color*/, int /*key*/) override {
    return std::make_unique<SingleProcessCommunicator>();
  }
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
  std::string describe() const override { return "1 process"; }

 private:
  LocalExchange local_;
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
