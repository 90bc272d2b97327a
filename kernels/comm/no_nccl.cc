// Builds without CUDA or NCCL: no device communicator.
#include "kernels/comm/nccl_communicator.h"

namespace dsinf::kernels::comm {

bool nccl_built() { return false; }

absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(Communicator&, int) {
  return absl::UnavailableError(
      "this dsinf was built without NCCL (it needs nvcc and NCCL under /usr/local/cuda at "
      "configure time)");
}

}  // namespace dsinf::kernels::comm
