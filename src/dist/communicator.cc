#include "dist/communicator.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/rng.h"
#ifdef SY_HAVE_MPI
#include "dist/mpi_communicator.h"
#endif

namespace sy {

void SingleProcessCommunicator::abort(int code) { std::exit(code); }

int64_t ranks_disagreeing(Communicator& comm, uint64_t digest) {
  // If every rank's value equals the mean over ranks, all ranks hold the same value.
  int64_t d[2] = {static_cast<int64_t>(digest >> 24), static_cast<int64_t>(mix64(digest) >> 24)};
  const int64_t mine[2] = {d[0], d[1]};
  comm.allreduce_sum(d, 2);
  int64_t bad = d[0] != mine[0] * comm.size() || d[1] != mine[1] * comm.size();
  comm.allreduce_sum(&bad, 1);
  return bad;
}

bool mpi_available() {
#ifdef SY_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool launched_by_mpi() {
  constexpr const char* kLauncherVariables[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                                "PMI_SIZE"};
  return std::ranges::any_of(kLauncherVariables,
                             [](const char* v) { return std::getenv(v) != nullptr; });
}

std::unique_ptr<Communicator> make_communicator() {
  if (!launched_by_mpi()) return std::make_unique<SingleProcessCommunicator>();
#ifdef SY_HAVE_MPI
  return std::make_unique<MpiCommunicator>();
#else
  fail(
      "this process was started by an MPI launcher, but this build of switchyard has no MPI "
      "support; install Open MPI (scripts/install-deps.sh installs libopenmpi-dev) and rebuild");
#endif
}

}  // namespace sy
