// The MPI communicator (Open MPI): collectives over MPI_COMM_WORLD, or over a sub-group of it
// (split()).
//
// Floating-point sums are computed so that every rank gets the same bits: the vector is cut into
// R blocks, block r is reduced on rank r alone (MPI_Reduce_scatter_block) and the reduced blocks
// are gathered back (MPI_Allgather); a remainder of fewer than R elements is reduced on rank 0
// and broadcast. Integer sums are exact (MPI_Allreduce). Large vectors go in chunks of at most
// 2^28 elements (MPI counts are int).
//
// Exchanges (alltoall, alltoallv) are MPI_Alltoall / MPI_Alltoallv; a block of more than 2^31 − 1
// values is an error (MPI counts are int).
//
// Ownership: the world communicator's constructor calls MPI_Init_thread (MPI_THREAD_FUNNELED:
// OpenMP threads exist but only the calling thread uses MPI) and its destructor MPI_Finalize: one
// per process, created by make_communicator(). A sub-group (split) frees its MPI communicator
// when destroyed, which must happen before the world's. Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace sy {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator();  // MPI_COMM_WORLD
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(int64_t* x, int64_t n) override;
  void allreduce_sum(float* x, int64_t n) override;
  void allreduce_sum(double* x, int64_t n) override;
  void alltoall(const int64_t* send, int64_t* recv, int64_t n) override;
  void alltoallv(const float* send, const int64_t* sc, const int64_t* so, float* recv,
                 const int64_t* rc, const int64_t* ro) override;
  void alltoallv(const double* send, const int64_t* sc, const int64_t* so, double* recv,
                 const int64_t* rc, const int64_t* ro) override;
  void alltoallv(const int64_t* send, const int64_t* sc, const int64_t* so, int64_t* recv,
                 const int64_t* rc, const int64_t* ro) override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void barrier() override;
  [[noreturn]] void abort(int code) override;
  std::string describe() const override;

 private:
  struct Handle;  // the MPI_Comm (defined in the .cc: keeps <mpi.h> out of this header)
  MpiCommunicator(std::unique_ptr<Handle> comm, std::string host);
  template <typename T>
  void same_bits_sum(T* x, int64_t n);
  template <typename T>
  void exchange(const T* send, const int64_t* sc, const int64_t* so, T* recv, const int64_t* rc,
                const int64_t* ro);

  std::unique_ptr<Handle> comm_;
  bool world_ = true;  // owns MPI's lifetime (else frees its MPI communicator)
  int rank_ = 0, size_ = 1;
  std::string host_;
  std::vector<char> scratch_;  // one block of a reduce-scatter, grown on demand
};

}  // namespace sy
