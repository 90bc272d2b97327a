// Builds without MPI: a process launched by mpirun cannot join its ranks.
#include "kernels/comm/mpi_communicator.h"

namespace dsinf::kernels::comm {

absl::StatusOr<std::unique_ptr<Communicator>> make_mpi_communicator() {
  return absl::UnavailableError(
      "launched by an MPI launcher, but this dsinf was built without MPI (install libopenmpi-dev "
      "and reconfigure)");
}

}  // namespace dsinf::kernels::comm
