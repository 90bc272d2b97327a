#include "bench/device_bandwidth.h"

#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/timing.h"
#include "kernels/backend.h"

namespace dsinf::bench {
namespace {

constexpr int kCopies = 8;  // a pass: this many back-to-back copies, then one wait

// GB/s of kCopies back-to-back copies through `copy` on `stream` and one wait,
// from the median pass of `passes` after an untimed one (bench/timing.h).
template <typename Copy>
absl::StatusOr<double> backend_gbps(kernels::Backend& backend, kernels::Stream stream, size_t bytes,
                                    int passes, Copy&& copy) {
  absl::Status status;
  absl::StatusOr<double> seconds = median_seconds(passes, [&] {
    for (int i = 0; i < kCopies && status.ok(); ++i) status.Update(copy());
    if (status.ok()) status.Update(backend.wait(backend.record(stream)));
  });
  if (!seconds.ok()) return seconds.status();
  if (!status.ok()) return status;
  return static_cast<double>(bytes) * kCopies / *seconds / 1e9;
}

}  // namespace

absl::StatusOr<std::optional<DeviceBandwidth>> measure_device(size_t bytes, int passes,
                                                              std::string* reason) {
  absl::StatusOr<kernels::CudaDeviceInfo> info = kernels::cuda_device_info(0);
  if (!info.ok()) {
    *reason = absl::StrCat("n/a (", info.status().message(), ")");
    return std::nullopt;
  }
  kernels::BackendOptions options;
  options.device_budget_bytes = bytes + (size_t{4} << 20);
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend = kernels::make_cuda_backend(options);
  if (!backend.ok()) return backend.status();
  kernels::Backend& b = **backend;
  absl::StatusOr<void*> device = b.allocate(bytes);
  if (!device.ok()) return device.status();
  absl::StatusOr<void*> pinned = b.allocate_pinned_host(bytes);
  if (!pinned.ok()) {
    b.release(*device);
    return pinned.status();
  }
  std::memset(*pinned, 1, bytes);
  // Pageable: ordinary heap memory, touched so no first-use page faults are timed.
  std::vector<std::byte> pageable(bytes, std::byte{1});

  DeviceBandwidth r;
  r.device = info->name;
  r.bytes = bytes;
  r.copies = kCopies;
  r.passes = passes;
  absl::Status status;
  auto measure = [&](double* out, kernels::Stream stream, bool to_device, void* host) {
    if (!status.ok()) return;
    absl::StatusOr<double> gbps = backend_gbps(b, stream, bytes, passes, [&]() {
      return to_device ? b.copy_to_device(*device, host, bytes, stream)
                       : b.copy_to_host(host, *device, bytes, stream);
    });
    if (gbps.ok())
      *out = *gbps;
    else
      status = gbps.status();
  };
  measure(&r.h2d_pinned_gbps, kernels::Stream::kUpload, true, *pinned);
  measure(&r.d2h_pinned_gbps, kernels::Stream::kDownload, false, *pinned);
  measure(&r.h2d_pageable_gbps, kernels::Stream::kUpload, true, pageable.data());
  measure(&r.d2h_pageable_gbps, kernels::Stream::kDownload, false, pageable.data());
  b.release_pinned_host(*pinned);
  b.release(*device);
  if (!status.ok()) return status;
  // The ceiling, pass by pass like the rows above.
  for (const bool to_device : {true, false}) {
    std::vector<double> gbps;
    for (int pass = 0; pass < passes; ++pass) {
      if (interrupted()) return absl::CancelledError("interrupted");
      absl::StatusOr<double> g = kernels::cuda_copy_ceiling_gbps(0, bytes, kCopies, to_device);
      if (!g.ok()) return g.status();
      gbps.push_back(*g);
    }
    (to_device ? r.ceiling_h2d_gbps : r.ceiling_d2h_gbps) = median(gbps);
  }
  return r;
}

}  // namespace dsinf::bench
