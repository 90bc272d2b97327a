// Host <-> device bandwidth through the backend's own copy path (the one the
// offload runtime uses), from pinned and from pageable host memory, next to
// its ceiling measured in the same run: a plain loop of cudaMemcpyAsync on
// cudaHostAlloc memory.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace dsinf::bench {

struct DeviceBandwidth {
  std::string device;  // the GPU's name
  size_t bytes = 0;    // one copy
  int copies = 0;      // copies a pass
  int passes = 0;
  double h2d_pinned_gbps = 0, h2d_pageable_gbps = 0;
  double d2h_pinned_gbps = 0, d2h_pageable_gbps = 0;
  double ceiling_h2d_gbps = 0, ceiling_d2h_gbps = 0;
};

// nullopt with *reason set when there is no CUDA device (or no CUDA backend);
// an error when one is there and a copy fails.
absl::StatusOr<std::optional<DeviceBandwidth>> measure_device(size_t bytes, int passes,
                                                              std::string* reason);

}  // namespace dsinf::bench
