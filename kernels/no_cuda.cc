// The CUDA entry points of backend.h in a build without nvcc: every one says
// so, and the CPU backend runs.
#include "kernels/backend.h"

namespace dsinf::kernels {

namespace {
constexpr const char* kNotBuilt =
    "this dsinf was built without the CUDA backend (nvcc was not found at configure time)";
}  // namespace

bool cuda_built() { return false; }

absl::StatusOr<CudaDeviceInfo> cuda_device_info(int) { return absl::UnavailableError(kNotBuilt); }

absl::StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const BackendOptions&) {
  return absl::UnavailableError(kNotBuilt);
}

absl::StatusOr<double> cuda_copy_ceiling_gbps(int, size_t, int, bool) {
  return absl::UnavailableError(kNotBuilt);
}

}  // namespace dsinf::kernels
