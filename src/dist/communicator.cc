#include "dist/communicator.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#ifdef SY_HAVE_MPI
#include "dist/mpi_communicator.h"
#endif

namespace sy {

void SingleProcessCommunicator::abort(int code) { std::exit(code); }

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
