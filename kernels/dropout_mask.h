// The dropout mask, one function of (key, element) shared by the CPU and CUDA
// ops so that both drop the same elements, and so that backward (or a
// recomputation) reproduces forward's mask from the key alone: element i is
// dropped when p > 0 and u(key, i) < p, with u uniform in [0, 1) on 24 bits of
// splitmix64 of key + (i + 1) * the golden ratio.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DSINF_HOST_DEVICE __host__ __device__
#else
#define DSINF_HOST_DEVICE
#endif

namespace dsinf::kernels {

DSINF_HOST_DEVICE inline bool dropout_keep(uint64_t key, uint64_t i, float p) {
  if (p <= 0.0f) return true;
  uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float u = static_cast<float>(z >> 40) * 0x1.0p-24f;
  return u >= p;
}

}  // namespace dsinf::kernels
