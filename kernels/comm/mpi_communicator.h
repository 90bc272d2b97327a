// The MPI communicator: MPI_COMM_WORLD over host buffers, with nonblocking
// collectives. Built when CMake finds MPI; otherwise make_mpi_communicator()
// answers kUnavailable (no_mpi.cc).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/comm/communicator.h"

namespace dsinf::kernels::comm {

// Initialises MPI (thread level MPI_THREAD_MULTIPLE, required) on the first
// call; MPI is finalised when the communicator goes. One per process.
absl::StatusOr<std::unique_ptr<Communicator>> make_mpi_communicator();

}  // namespace dsinf::kernels::comm
