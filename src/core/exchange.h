// The exchange: the collectives of expert parallelism, where the ranks of a group hold different
// experts and swap token rows (dispatch and combine, src/moe). Defined in core so that the MoE
// layer does not depend on how ranks talk; dist/'s Communicator implements it over MPI, and
// LocalExchange is the group of one rank.
//
// Every rank of the group calls the same collectives in the same order (the caller's duty).
// Results are exact copies: no arithmetic happens in an exchange. Not thread-safe: call from one
// thread.
#pragma once

#include <algorithm>
#include <cstdint>

namespace sy {

class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual int rank() const = 0;  // within the group, 0 ≤ rank < size
  virtual int size() const = 0;
  // n values to each rank: recv[j·n, (j+1)·n) receives what rank j sent in its
  // send[rank()·n, (rank()+1)·n). send and recv hold size()·n values each.
  virtual void alltoall(const int64_t* send, int64_t* recv, int64_t n) = 0;
  // Blocks of any length: send_counts[j] values from send + send_offsets[j] go to rank j; from
  // rank i, recv_counts[i] values arrive at recv + recv_offsets[i] (the counts must match what
  // rank i sends here, e.g. exchanged first with alltoall). Arrays of size() entries.
  virtual void alltoallv(const float* send, const int64_t* send_counts, const int64_t* send_offsets,
                         float* recv, const int64_t* recv_counts, const int64_t* recv_offsets) = 0;
  virtual void alltoallv(const double* send, const int64_t* send_counts,
                         const int64_t* send_offsets, double* recv, const int64_t* recv_counts,
                         const int64_t* recv_offsets) = 0;
  virtual void alltoallv(const int64_t* send, const int64_t* send_counts,
                         const int64_t* send_offsets, int64_t* recv, const int64_t* recv_counts,
                         const int64_t* recv_offsets) = 0;
};

// A group of one rank: every exchange is a copy to itself.
class LocalExchange final : public Exchange {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void alltoall(const int64_t* send, int64_t* recv, int64_t n) override {
    std::copy(send, send + n, recv);
  }
  void alltoallv(const float* send, const int64_t* sc, const int64_t* so, float* recv,
                 const int64_t* /*rc*/, const int64_t* ro) override {
    std::copy(send + so[0], send + so[0] + sc[0], recv + ro[0]);
  }
  void alltoallv(const double* send, const int64_t* sc, const int64_t* so, double* recv,
                 const int64_t* /*rc*/, const int64_t* ro) override {
    std::copy(send + so[0], send + so[0] + sc[0], recv + ro[0]);
  }
  void alltoallv(const int64_t* send, const int64_t* sc, const int64_t* so, int64_t* recv,
                 const int64_t* /*rc*/, const int64_t* ro) override {
    std::copy(send + so[0], send + so[0] + sc[0], recv + ro[0]);
  }
};

}  // namespace sy
