// The one place that turns a run's device request into a backend: "auto"
// takes CUDA when this build has it and the device is usable, else the CPU.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "actors/runtime/spec.h"
#include "kernels/backend.h"

namespace dsinf::actors {

struct BackendChoice {
  std::unique_ptr<kernels::Backend> backend;
  std::string description;                             // e.g. "cuda:0 NVIDIA H100 ... (auto; ...)"
  std::optional<kernels::CudaDeviceInfo> cuda_device;  // the GPU it runs on
};

// kInvalidArgument naming the request's origin when "cuda" is asked for and
// there is none.
absl::StatusOr<BackendChoice> make_backend(const DeviceRequest& device,
                                           const kernels::BackendOptions& options);

// Whether a run with this request would compute on a CUDA device.
bool runs_on_cuda(const DeviceRequest& device);

}  // namespace dsinf::actors
