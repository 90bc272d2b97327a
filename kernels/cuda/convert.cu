// Device::convert and Device::accumulate on the GPU: one thread an element,
// the conversions of half.cuh, and an explicitly rounded fp32 add (never
// contracted), so both equal the CPU backend's results bit for bit.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/half.cuh"

namespace dsinf::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 65535;

__device__ __forceinline__ float load_as_float(const void* base, DType type, size_t i) {
  switch (type) {
    case DType::kF32:
      return static_cast<const float*>(base)[i];
    case DType::kBF16:
      return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::kF16:
      return f16_to_float(static_cast<const uint16_t*>(base)[i]);
  }
  return 0.0f;
}

__device__ __forceinline__ void store_float(void* base, DType type, size_t i, float x) {
  switch (type) {
    case DType::kF32:
      static_cast<float*>(base)[i] = x;
      return;
    case DType::kBF16:
      static_cast<uint16_t*>(base)[i] = static_cast<uint16_t>(float_to_bf16(x));
      return;
    case DType::kF16:
      static_cast<uint16_t*>(base)[i] = static_cast<uint16_t>(float_to_f16(x));
      return;
  }
}

__global__ void convert_kernel(const void* src, DType src_type, void* dst, DType dst_type,
                               size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    store_float(dst, dst_type, i, load_as_float(src, src_type, i));
  }
}

__global__ void accumulate_kernel(float* acc, const void* src, DType src_type, size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    acc[i] = __fadd_rn(acc[i], load_as_float(src, src_type, i));
  }
}

unsigned blocks_for(size_t n) {
  return static_cast<unsigned>(std::min(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

bool valid(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

}  // namespace

absl::Status convert(const void* src, DType src_type, void* dst, DType dst_type, size_t n,
                     void* stream) {
  if (n == 0) return absl::OkStatus();
  if (src == nullptr || dst == nullptr) return absl::InvalidArgumentError("convert of a null pointer");
  if (!valid(src_type) || !valid(dst_type)) return absl::InvalidArgumentError("convert: bad dtype");
  convert_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      src, src_type, dst, dst_type, n);
  return launch_status("launch of convert_kernel");
}

absl::Status accumulate(float* acc, const void* src, DType src_type, size_t n, void* stream) {
  if (n == 0) return absl::OkStatus();
  if (acc == nullptr || src == nullptr) {
    return absl::InvalidArgumentError("accumulate of a null pointer");
  }
  if (!valid(src_type)) return absl::InvalidArgumentError("accumulate: bad dtype");
  accumulate_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      acc, src, src_type, n);
  return launch_status("launch of accumulate_kernel");
}

}  // namespace dsinf::kernels::cuda
