// The AVX2 + FMA + F16C path of the CPU Adam (compiled with -mavx2 -mfma -mf16c;
// adam.cc only calls it after cpuid says the CPU has them). FMA is enabled for
// the compiler's sake but never used: -ffp-contract=off keeps every multiply and
// add separately rounded, as on the scalar path.
#include <immintrin.h>

#include "kernels/cpu/adam_impl.h"

namespace dsinf::kernels::cpu::adam_detail {
namespace {

struct Avx2Policy {
  using F = __m256;
  using M = __m256i;  // all-ones lanes
  struct Acc {
    __m256d lo, hi;
  };
  static constexpr size_t kWidth = 8;

  static F load_f32(const float* p) { return _mm256_loadu_ps(p); }
  static void store_f32(float* p, F x) { _mm256_storeu_ps(p, x); }
  static void stream_f32(float* p, F x) { _mm256_stream_ps(p, x); }

  static F load_bf16(const uint16_t* p) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  // float_to_bf16 of half.h, eight lanes at a time.
  static __m128i to_bf16(F x) {
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i abs = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
    const __m256i exponent = _mm256_and_si256(bits, _mm256_set1_epi32(0x7f800000));
    const __m256i is_tiny = _mm256_cmpeq_epi32(exponent, _mm256_setzero_si256());
    const __m256i signed_zero =
        _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x8000));
    __m256i r = _mm256_blendv_epi8(rounded, quiet, is_nan);
    r = _mm256_blendv_epi8(r, signed_zero, is_tiny);
    // Each lane holds at most 0xffff, so the unsigned saturating pack is exact.
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  }
  static void store_bf16(uint16_t* p, F x) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_bf16(x));
  }
  static void stream_bf16(uint16_t* p, F x) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_bf16(x));
  }

  static F load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m128i to_f16(F x) {
    return _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static void store_f16(uint16_t* p, F x) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_f16(x));
  }
  static void stream_f16(uint16_t* p, F x) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_f16(x));
  }

  static void fence() { _mm_sfence(); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F sqrt(F a) { return _mm256_sqrt_ps(a); }

  static M nonfinite(F x) {
    const __m256i exponent = _mm256_set1_epi32(0x7f800000);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(x), exponent), exponent);
  }
  static bool any(M m) { return !_mm256_testz_si256(m, m); }
  static size_t count(M m) {
    return static_cast<size_t>(__builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(m))));
  }
  static F blend(M m, F if_set, F otherwise) {
    return _mm256_blendv_ps(otherwise, if_set, _mm256_castsi256_ps(m));
  }

  static void acc_zero(Acc& acc) {
    acc.lo = _mm256_setzero_pd();
    acc.hi = _mm256_setzero_pd();
  }
  // Elements 0-3 into lanes 0-3, 4-7 into lanes 4-7; each square is exact in double.
  static void acc_add_squares(Acc& acc, F x) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    acc.lo = _mm256_add_pd(acc.lo, _mm256_mul_pd(lo, lo));
    acc.hi = _mm256_add_pd(acc.hi, _mm256_mul_pd(hi, hi));
  }
  static void acc_lanes(const Acc& acc, double* lanes) {
    _mm256_storeu_pd(lanes, acc.lo);
    _mm256_storeu_pd(lanes + 4, acc.hi);
  }
};

}  // namespace

const KernelTable* avx2_kernels() { return kernel_table<Avx2Policy>(); }

}  // namespace dsinf::kernels::cpu::adam_detail
