#include "dist/mpi_communicator.h"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <cstring>

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

}  // namespace

MpiCommunicator::MpiCommunicator() {
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

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void MpiCommunicator::allreduce_sum(int64_t* x, int64_t n) {
  for (int64_t off = 0; off < n; off += kMaxChunk) {
    const int c = static_cast<int>(std::min(kMaxChunk, n - off));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, x + off, c, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD),
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
                                       MPI_COMM_WORLD),
              "MPI_Reduce_scatter_block");
    check_mpi(MPI_Allgather(mine, static_cast<int>(block), type, x + off, static_cast<int>(block),
                            type, MPI_COMM_WORLD),
              "MPI_Allgather");
    off += block * R;
  }
  // The remainder (< R elements): reduced on rank 0, then broadcast.
  const int rest = static_cast<int>(n - whole);
  if (rest > 0) {
    if (rank_ == 0) {
      check_mpi(MPI_Reduce(MPI_IN_PLACE, x + whole, rest, type, MPI_SUM, 0, MPI_COMM_WORLD),
                "MPI_Reduce");
    } else {
      check_mpi(MPI_Reduce(x + whole, nullptr, rest, type, MPI_SUM, 0, MPI_COMM_WORLD),
                "MPI_Reduce");
    }
    check_mpi(MPI_Bcast(x + whole, rest, type, 0, MPI_COMM_WORLD), "MPI_Bcast");
  }
}

void MpiCommunicator::barrier() { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);  // not reached
}

std::string MpiCommunicator::describe() const {
  return fmt::format("MPI, {} ranks (rank {} on {})", size_, rank_, host_);
}

}  // namespace sy
