// Warp-wide reductions shared by the CUDA kernels (ops.cu, decoder_ops.cu).
#pragma once

#include <cuda_runtime.h>

namespace dsinf::kernels::cuda {

// Butterfly reductions: every lane ends with the same value (fp add and max
// are commutative bit for bit), computed in a fixed order.
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

}  // namespace dsinf::kernels::cuda
