// fp32 rounded to the nearest bf16 or IEEE half (ties to an even mantissa),
// computed from the definitions -- the two representable neighbours of x and
// their distances -- so that the writer's bit tricks are checked against
// something that does not share them.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace dsinf::testing {

// x rounded to the nearest bf16, as fp32 (NaN and inf kept).
inline float nearest_bf16(float x) {
  if (std::isnan(x) || std::isinf(x)) return x;
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const float toward_zero = std::bit_cast<float>(bits & 0xFFFF0000u);
  if (toward_zero == x) return x;
  const float away = std::bit_cast<float>((bits & 0xFFFF0000u) + 0x10000u);
  // Past the largest bf16 the next step would be 2^128, which rounds to inf.
  const double away_value = std::isinf(away) ? std::copysign(std::ldexp(1.0, 128), x) : away;
  const double d_zero = std::abs(static_cast<double>(x) - toward_zero);
  const double d_away = std::abs(away_value - x);
  if (d_zero != d_away) return d_zero < d_away ? toward_zero : away;
  return ((bits >> 16) & 1u) == 0 ? toward_zero : away;
}

// The value of the non-negative half with code c (0 <= c <= 0x7C00) from the
// definition: subnormal mant * 2^-24, normal (1024 + mant) * 2^(exp - 25).
// 0x7C00 stands for 2^16, the step after the largest finite half (65504).
inline double half_value(uint32_t c) {
  const int exp = static_cast<int>(c >> 10);
  const int mant = static_cast<int>(c & 0x3FFu);
  if (exp == 0) return std::ldexp(static_cast<double>(mant), -24);
  return std::ldexp(static_cast<double>(1024 + mant), exp - 25);
}

// x rounded to the nearest IEEE half, as fp32 (overflow to inf, NaN kept).
inline float nearest_f16(float x) {
  if (std::isnan(x)) return x;
  const double a = std::abs(static_cast<double>(x));
  if (a >= 65536.0) return std::copysign(INFINITY, x);
  uint32_t lo = 0, hi = 0x7C00;  // the least code whose value is >= a
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (half_value(mid) < a) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  uint32_t c = lo;
  if (half_value(c) != a && c > 0) {
    const double d_up = half_value(c) - a, d_down = a - half_value(c - 1);
    if (d_down < d_up || (d_down == d_up && ((c - 1) & 1u) == 0)) c = c - 1;
  }
  const float v = c == 0x7C00 ? INFINITY : static_cast<float>(half_value(c));
  return std::copysign(v, x);
}

}  // namespace dsinf::testing
