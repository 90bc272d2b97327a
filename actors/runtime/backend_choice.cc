#include "actors/runtime/backend_choice.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsinf::actors {

absl::StatusOr<BackendChoice> make_backend(const DeviceRequest& device,
                                           const kernels::BackendOptions& options) {
  using Kind = DeviceRequest::Kind;
  const std::string precision = kernels::precision_name(options.matmul_precision);
  BackendChoice choice;
  auto use_cpu = [&](const std::string& why) {
    choice.backend = kernels::make_cpu_backend(options);
    choice.description = absl::StrCat("cpu (", why, "; matmul operands ", precision,
                                      options.defer_copies ? "; copies deferred" : "", ")");
  };
  if (device.kind == Kind::kCpu) {
    use_cpu(absl::StrCat("device \"cpu\" from ",
                         device.origin == "DSINF_DEVICE" ? device.origin : "the config"));
    return choice;
  }
  absl::StatusOr<kernels::CudaDeviceInfo> info = kernels::cuda_device_info(device.index);
  if (!info.ok()) {
    if (device.kind == Kind::kCuda) {
      return absl::InvalidArgumentError(absl::StrCat(device.origin, ": \"", device.name,
                                                     "\" asks for a CUDA device, but ",
                                                     info.status().message()));
    }
    use_cpu(absl::StrCat("auto: ", info.status().message()));
    return choice;
  }
  absl::StatusOr<std::unique_ptr<kernels::Backend>> cuda = kernels::make_cuda_backend(options);
  if (!cuda.ok()) {
    return absl::Status(cuda.status().code(), absl::StrCat(device.origin, ": ", device.name, ": ",
                                                           cuda.status().message()));
  }
  choice.backend = *std::move(cuda);
  choice.cuda_device = *info;
  const bool automatic = device.kind == Kind::kAuto;
  choice.description = absl::StrFormat(
      "cuda:%d %s (sm_%d%d, %d SMs, %.1f GiB; %s%s; matmul operands %s)", info->index, info->name,
      info->sm_major, info->sm_minor, info->multiprocessors,
      static_cast<double>(info->total_bytes) / (1 << 30), automatic ? "auto" : "asked for by ",
      automatic ? "" : device.origin, precision);
  return choice;
}

bool runs_on_cuda(const DeviceRequest& device) {
  return device.kind == DeviceRequest::Kind::kCuda ||
         (device.kind == DeviceRequest::Kind::kAuto &&
          kernels::cuda_device_info(device.index).ok());
}

}  // namespace dsinf::actors
