// Element-type conversions of device buffers (Device::convert and
// Device::accumulate of the CUDA backend), rounding as kernels/cpu/half.h
// does, so their results equal the CPU backend's bit for bit. They only
// queue work on `stream` (a cudaStream_t passed as void*).
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "kernels/device.h"

namespace dsinf::kernels::cuda {

// dst[i] = src[i] as dst_type, for i < n.
absl::Status convert(const void* src, DType src_type, void* dst, DType dst_type, size_t n,
                     void* stream);
// acc[i] = acc[i] + float(src[i]), for i < n.
absl::Status accumulate(float* acc, const void* src, DType src_type, size_t n, void* stream);

}  // namespace dsinf::kernels::cuda
