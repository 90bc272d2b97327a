// Builds without CUDA or NCCL: no device communicator.
#include "kernels/comm/nccl_communicator.h"

#include "absl/strings/str_cat.h"

namespace dsinf::kernels::comm {

bool nccl_built() { return false; }

absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(Communicator&, int) {
  return absl::UnavailableError(
      "this dsinf was built without NCCL (it needs nvcc and NCCL under /usr/local/cuda at "
      "configure time)");
}

absl::StatusOr<std::unique_ptr<Communicator>> make_torchrun_world(const TorchrunEnv& env) {
  return absl::InvalidArgumentError(absl::StrCat(
      "WORLD_SIZE=", env.world,
      " (a torchrun-style launch): such ranks communicate through NCCL, and this dsinf was built "
      "without it (nvcc and NCCL under /usr/local/cuda at configure time); launch ranks under MPI "
      "instead: 'dsinf launch -n N CONFIG' or 'mpirun -n N dsinf train CONFIG'"));
}

}  // namespace dsinf::kernels::comm
