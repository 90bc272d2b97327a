// The AVX-512 vector policy of the CPU Adam, shared by adam_avx512.cc (bf16
// rounding with integer operations) and adam_avx512bf16.cc (vcvtneps2bf16).
// Only include this from those two files: they are compiled with the AVX-512
// flags, and everything here has internal linkage.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace dsinf::kernels::cpu::adam_detail {
namespace {

template <bool kNativeBf16>
struct Avx512Policy {
  using F = __m512;
  using M = __mmask16;
  using Acc = __m512d;
  static constexpr size_t kWidth = 16;

  static F load_f32(const float* p) { return _mm512_loadu_ps(p); }
  static void store_f32(float* p, F x) { _mm512_storeu_ps(p, x); }
  static void stream_f32(float* p, F x) { _mm512_stream_ps(p, x); }

  static F load_bf16(const uint16_t* p) {
    const __m512i h =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  }
  // float_to_bf16 of half.h: vcvtneps2bf16 computes exactly that; without it the
  // same rounding is done on the integer bits.
  static __m256i to_bf16(F x) {
    if constexpr (kNativeBf16) {
      return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
    } else {
      const __m512i bits = _mm512_castps_si512(x);
      const __m512i high = _mm512_srli_epi32(bits, 16);
      const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
      __m512i r = _mm512_srli_epi32(
          _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), lsb), 16);
      const __m512i abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
      const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
      const __mmask16 is_tiny =
          _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f800000));  // zero exponent
      r = _mm512_mask_or_epi32(r, is_nan, high, _mm512_set1_epi32(0x40));
      r = _mm512_mask_and_epi32(r, is_tiny, high, _mm512_set1_epi32(0x8000));
      return _mm512_cvtepi32_epi16(r);
    }
  }
  static void store_bf16(uint16_t* p, F x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16(x));
  }
  static void stream_bf16(uint16_t* p, F x) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_bf16(x));
  }

  static F load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m256i to_f16(F x) {
    return _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static void store_f16(uint16_t* p, F x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_f16(x));
  }
  static void stream_f16(uint16_t* p, F x) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_f16(x));
  }

  static void fence() { _mm_sfence(); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F sqrt(F a) { return _mm512_sqrt_ps(a); }

  static M nonfinite(F x) {
    const __m512i exponent = _mm512_set1_epi32(0x7f800000);
    return _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x), exponent), exponent);
  }
  static bool any(M m) { return m != 0; }
  static size_t count(M m) { return static_cast<size_t>(__builtin_popcount(m)); }
  static F blend(M m, F if_set, F otherwise) { return _mm512_mask_blend_ps(m, otherwise, if_set); }

  static void acc_zero(Acc& acc) { acc = _mm512_setzero_pd(); }
  // Elements 0-7, then 8-15, into lanes 0-7: lane j sees j before j + 8, as on
  // the scalar path; each square is exact in double.
  static void acc_add_squares(Acc& acc, F x) {
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
    const __m512d hi =
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    acc = _mm512_add_pd(acc, _mm512_mul_pd(lo, lo));
    acc = _mm512_add_pd(acc, _mm512_mul_pd(hi, hi));
  }
  static void acc_lanes(const Acc& acc, double* lanes) { _mm512_storeu_pd(lanes, acc); }
};

}  // namespace
}  // namespace dsinf::kernels::cpu::adam_detail
