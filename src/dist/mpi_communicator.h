// The MPI communicator (Open MPI): data-parallel collectives over MPI_COMM_WORLD.
//
// Floating-point sums are computed so that every rank gets the same bits: the vector is cut into
// R blocks, block r is reduced on rank r alone (MPI_Reduce_scatter_block) and the reduced blocks
// are gathered back (MPI_Allgather); a remainder of fewer than R elements is reduced on rank 0
// and broadcast. Integer sums are exact (MPI_Allreduce). Large vectors go in chunks of at most
// 2^28 elements (MPI counts are int).
//
// Ownership: the constructor calls MPI_Init_thread (MPI_THREAD_FUNNELED: OpenMP threads exist but
// only the calling thread uses MPI) and the destructor MPI_Finalize: one per process, created by
// make_communicator(). Not thread-safe.
#pragma once

#include <string>
#include <vector>

#include "dist/communicator.h"

namespace sy {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator();
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(int64_t* x, int64_t n) override;
  void allreduce_sum(float* x, int64_t n) override;
  void allreduce_sum(double* x, int64_t n) override;
  void barrier() override;
  [[noreturn]] void abort(int code) override;
  std::string describe() const override;

 private:
  template <typename T>
  void same_bits_sum(T* x, int64_t n);

  int rank_ = 0, size_ = 1;
  std::string host_;
  std::vector<char> scratch_;  // one block of a reduce-scatter, grown on demand
};

}  // namespace sy
