// Conversions between fp32 and the 16-bit formats (bf16, IEEE fp16), one
// element at a time. These are the definitions every vector path of the CPU
// Adam reproduces bit for bit:
//   - fp32 -> bf16 rounds to nearest even, turns fp32 subnormals into a zero of
//     the same sign (what AVX-512 BF16's vcvtneps2bf16 does) and NaN into a
//     quiet NaN;
//   - fp32 -> fp16 rounds to nearest even with IEEE subnormals, overflow to
//     infinity, NaN to a quiet NaN (what F16C's vcvtps2ph does);
//   - bf16 -> fp32 and fp16 -> fp32 are exact.
#pragma once

#include <bit>
#include <cstdint>

namespace dsinf::kernels::cpu {

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7f800000u) == 0) return static_cast<uint16_t>((x >> 16) & 0x8000u);  // 0, subnormal
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t em = h & 0x7fffu;
  if (em >= 0x7c00u) return std::bit_cast<float>(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
  if (em >= 0x0400u) return std::bit_cast<float>(sign | ((em << 13) + (112u << 23)));
  // Zero or subnormal: em * 2^-24 is exact in fp32.
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(static_cast<float>(em) * 0x1p-24f));
}

inline uint16_t float_to_f16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to infinity
  if (ax >= 0x38800000u) {                                              // a normal fp16
    const uint32_t rebiased = ax - (112u << 23);
    return static_cast<uint16_t>(sign | ((rebiased + 0x0fffu + ((rebiased >> 13) & 1u)) >> 13));
  }
  // Subnormal fp16 or zero: adding 0.5 lines the fp16 subnormal's bits up at the
  // bottom of the fp32 mantissa, and the add itself rounds to nearest even.
  const float shifted = std::bit_cast<float>(ax) + 0.5f;
  return static_cast<uint16_t>(sign | (std::bit_cast<uint32_t>(shifted) - 0x3f000000u));
}

}  // namespace dsinf::kernels::cpu
