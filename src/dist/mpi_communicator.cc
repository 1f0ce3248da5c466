#include "dist/mpi_communicator.h"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "core/error.h"

namespace sy {

namespace {

constexpr int64_t kMaxChunk = int64_t{1} << 28;  // elements per MPI call (counts are int)

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail(fmt::format("MPI: {} failed: {}", what, std::string(msg, static_cast<size_t>(len))));
}

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<int64_t>() {
  return MPI_INT64_T;
}

int count_of(int64_t n, const char* what) {
  SY_CHECK(n >= 0 && n <= std::numeric_limits<int>::max(),
           "MPI: {} of {} values is more than one MPI call can carry (2^31 - 1); use fewer tokens "
           "per micro-batch",
           what, n);
  return static_cast<int>(n);
}

}  // namespace

struct MpiCommunicator::Handle {
  MPI_Comm comm = MPI_COMM_WORLD;
};

MpiCommunicator::MpiCommunicator() : comm_(std::make_unique<Handle>()) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  SY_CHECK(!initialized, "MPI: one MpiCommunicator per process (MPI is already initialised)");
  int provided = 0;
  check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  host_.assign(name, static_cast<size_t>(len));
}

MpiCommunicator::MpiCommunicator(std::unique_ptr<Handle> comm, std::string host)
    : comm_(std::move(comm)), world_(false), host_(std::move(host)) {
  MPI_Comm_set_errhandler(comm_->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_->comm, &rank_);
  MPI_Comm_size(comm_->comm, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  if (!world_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_->comm);
    return;
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void MpiCommunicator::allreduce_sum(int64_t* x, int64_t n) {
  for (int64_t off = 0; off < n; off += kMaxChunk) {
    const int c = static_cast<int>(std::min(kMaxChunk, n - off));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, x + off, c, MPI_INT64_T, MPI_SUM, comm_->comm),
              "MPI_Allreduce(int64)");
  }
}

void MpiCommunicator::allreduce_sum(float* x, int64_t n) { same_bits_sum(x, n); }
void MpiCommunicator::allreduce_sum(double* x, int64_t n) { same_bits_sum(x, n); }

template <typename T>
void MpiCommunicator::same_bits_sum(T* x, int64_t n) {
  if (size_ == 1 || n == 0) return;
  MPI_Datatype type = mpi_type<T>();
  const int64_t R = size_;
  // Whole blocks: rank r reduces block r, then everyone gathers the reduced blocks.
  const int64_t per_rank_chunk = std::max<int64_t>(1, kMaxChunk / R);
  const int64_t whole = n / R * R;
  for (int64_t off = 0; off < whole;) {
    const int64_t block = std::min(per_rank_chunk, (whole - off) / R);
    scratch_.resize(static_cast<size_t>(block) * sizeof(T));
    T* mine = reinterpret_cast<T*>(scratch_.data());
    check_mpi(MPI_Reduce_scatter_block(x + off, mine, static_cast<int>(block), type, MPI_SUM,
                                       comm_->comm),
              "MPI_Reduce_scatter_block");
    check_mpi(MPI_Allgather(mine, static_cast<int>(block), type, x + off, static_cast<int>(block),
                            type, comm_->comm),
              "MPI_Allgather");
    off += block * R;
  }
  // The remainder (< R elements): reduced on rank 0, then broadcast.
  const int rest = static_cast<int>(n - whole);
  if (rest > 0) {
    if (rank_ == 0) {
      check_mpi(MPI_Reduce(MPI_IN_PLACE, x + whole, rest, type, MPI_SUM, 0, comm_->comm),
                "MPI_Reduce");
    } else {
      check_mpi(MPI_Reduce(x + whole, nullptr, rest, type, MPI_SUM, 0, comm_->comm), "MPI_Reduce");
    }
    check_mpi(MPI_Bcast(x + whole, rest, type, 0, comm_->comm), "MPI_Bcast");
  }
}

void MpiCommunicator::alltoall(const int64_t* send, int64_t* recv, int64_t n) {
  const int c = count_of(n, "alltoall block");
  check_mpi(MPI_Alltoall(send, c, MPI_INT64_T, recv, c, MPI_INT64_T, comm_->comm), "MPI_Alltoall");
}

template <typename T>
void MpiCommunicator::exchange(const T* send, const int64_t* sc, const int64_t* so, T* recv,
                               const int64_t* rc, const int64_t* ro) {
  std::vector<int> c(4 * static_cast<size_t>(size_));
  int* send_counts = c.data();
  int* send_offsets = send_counts + size_;
  int* recv_counts = send_offsets + size_;
  int* recv_offsets = recv_counts + size_;
  for (int j = 0; j < size_; ++j) {
    send_counts[j] = count_of(sc[j], "an alltoallv block");
    send_offsets[j] = count_of(so[j], "an alltoallv offset");
    recv_counts[j] = count_of(rc[j], "an alltoallv block");
    recv_offsets[j] = count_of(ro[j], "an alltoallv offset");
  }
  check_mpi(MPI_Alltoallv(send, send_counts, send_offsets, mpi_type<T>(), recv, recv_counts,
                          recv_offsets, mpi_type<T>(), comm_->comm),
            "MPI_Alltoallv");
}

void MpiCommunicator::alltoallv(const float* send, const int64_t* sc, const int64_t* so,
                                float* recv, const int64_t* rc, const int64_t* ro) {
  exchange(send, sc, so, recv, rc, ro);
}
void MpiCommunicator::alltoallv(const double* send, const int64_t* sc, const int64_t* so,
                                double* recv, const int64_t* rc, const int64_t* ro) {
  exchange(send, sc, so, recv, rc, ro);
}
void MpiCommunicator::alltoallv(const int64_t* send, const int64_t* sc, const int64_t* so,
                                int64_t* recv, const int64_t* rc, const int64_t* ro) {
  exchange(send, sc, so, recv, rc, ro);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  auto h = std::make_unique<Handle>();
  check_mpi(MPI_Comm_split(comm_->comm, color, key, &h->comm), "MPI_Comm_split");
  return std::unique_ptr<Communicator>(new MpiCommunicator(std::move(h), host_));
}

void MpiCommunicator::barrier() { check_mpi(MPI_Barrier(comm_->comm), "MPI_Barrier"); }

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);  // not reached
}

std::string MpiCommunicator::describe() const {
  return fmt::format("MPI, {} ranks (rank {} on {})", size_, rank_, host_);
}

}  // namespace sy
