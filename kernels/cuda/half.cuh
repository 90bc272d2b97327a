// The bf16/fp16 conversions of kernels/cpu/half.h on the device, with the
// same integer operations, so a CUDA kernel rounds exactly as the CPU does.
// Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device.h"

namespace dsinf::kernels::cuda {

__device__ __forceinline__ float bf16_to_float(uint32_t h) { return __uint_as_float(h << 16); }

// Not __float2bfloat16_rn: half.h flushes fp32 subnormals to a signed zero.
__device__ __forceinline__ uint32_t float_to_bf16(float f) {
  const uint32_t x = __float_as_uint(f);
  if ((x & 0x7f800000u) == 0) return (x >> 16) & 0x8000u;                       // 0, subnormal
  if ((x & 0x7fffffffu) > 0x7f800000u) return ((x >> 16) | 0x0040u) & 0xffffu;  // NaN
  return (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
}

__device__ __forceinline__ float f16_to_float(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  if (em >= 0x7c00u) return __uint_as_float(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
  if (em >= 0x0400u) return __uint_as_float(sign | ((em << 13) + (112u << 23)));
  // Zero or subnormal: em * 2^-24 is exact in fp32.
  return __uint_as_float(sign | __float_as_uint(__fmul_rn(__uint2float_rn(em), 0x1p-24f)));
}

// By the bits too, so NaN payloads match half.h (not only the rounding).
__device__ __forceinline__ uint32_t float_to_f16(float f) {
  const uint32_t x = __float_as_uint(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u | ((ax >> 13) & 0x3ffu);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // rounds to infinity
  if (ax >= 0x38800000u) {                       // a normal fp16
    const uint32_t rebiased = ax - (112u << 23);
    return sign | ((rebiased + 0x0fffu + ((rebiased >> 13) & 1u)) >> 13);
  }
  // Subnormal fp16 or zero: the add lines the bits up and rounds to nearest even.
  const float shifted = __fadd_rn(__uint_as_float(ax), 0.5f);
  return sign | (__float_as_uint(shifted) - 0x3f000000u);
}

template <DType D>
__device__ __forceinline__ float from16(uint32_t h) {
  return D == DType::kBF16 ? bf16_to_float(h) : f16_to_float(h);
}
template <DType D>
__device__ __forceinline__ uint32_t to16(float x) {
  return D == DType::kBF16 ? float_to_bf16(x) : float_to_f16(x);
}

}  // namespace dsinf::kernels::cuda
